// Nothing acked is lost in a cluster: a client streams updates with acks to one Colloquy node while
// the test kills (SIGKILL) that Colloquy node, the JetStream leader of the session log, a follower,
// or a Colloquy node and the leader together, at a seeded random moment. After the dead come back,
// a fresh client on every node must find every acknowledged update. Seed printed; rounds bounded.

import * as prng from 'lib0/prng'
import { afterAll, beforeAll, describe, expect } from 'vitest'
import {
  type ColloquyCluster,
  type ColloquyNode,
  startColloquyCluster,
  streamLeader,
} from '../helpers/colloquy-cluster.js'
import { hasNatsServer, unstableIt, warnIfNoNatsServer } from '../helpers/nats-cluster.js'

const unstable = unstableIt('kill-durability.test.ts')

import { until } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

warnIfNoNatsServer(import.meta.url)

const KINDS = ['colloquy node', 'JetStream leader', 'JetStream follower', 'colloquy node and leader'] as const
type Kind = (typeof KINDS)[number]

describe.skipIf(!hasNatsServer)('kill -9 in a Colloquy cluster', () => {
  let cluster: ColloquyCluster
  beforeAll(async () => {
    cluster = await startColloquyCluster()
  }, 90_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  // Open (issue 15): 1 run in 6 this session, the writer's node acked nothing for 45 s after a
  // JetStream leader kill and restart (the publisher fix shortened that stall; not yet re-proven).
  unstable(
    'keeps every acknowledged update whichever process dies',
    async () => {
      const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
      console.log(`cluster kill -9 seed: ${seed}`)
      const gen = prng.create(seed)
      const acknowledged: string[] = []
      const rounds = Number(process.env.CLUSTER_KILL_ROUNDS ?? 1)
      for (let repetition = 0; repetition < rounds; repetition++) {
        for (const kind of KINDS) {
          const writerNode = prng.int32(gen, 0, 2)
          const killAfterMs = prng.int32(gen, 100, 500)
          acknowledged.push(
            ...(await killRound(cluster, kind, writerNode, killAfterMs, `${repetition}-${kind}`)),
          )
          await checkEveryNode(cluster, acknowledged, `seed ${seed}, after killing the ${kind}`)
        }
      }
      expect(acknowledged.length, 'some updates were acknowledged').toBeGreaterThan(0)
    },
    110_000,
  )
})

/** One round: stream acked updates to `writerNode`, kill the `kind`, bring it back; the acked keys. */
async function killRound(
  cluster: ColloquyCluster,
  kind: Kind,
  writerNode: number,
  killAfterMs: number,
  label: string,
): Promise<string[]> {
  const node = cluster.nodes[writerNode]!
  const client = await connectSynced(node)
  const map = client.peer.doc.getMap<number>('m')
  // The cluster has recovered from the last round: this node acks again (a new leader, a caught-up
  // stream) before the clock of this round starts.
  map.set(`${label}-ready`, -1)
  await client.peer.whenAcked(client.peer.requestAck(), 45_000).catch((error: unknown) => {
    throw new Error(`${String(error)} on ${node.name}:\n${node.process?.output().slice(-6_000)}`)
  })
  let isStopped = false
  void client.closed.then(() => {
    isStopped = true
  })
  const leaderName = await streamLeader(cluster.nats)
  const leader = cluster.nats.nodes.find((n) => n.name === leaderName)
  const follower = cluster.nats.nodes.find((n) => n.name !== leaderName && n.isRunning())
  const victims = {
    'colloquy node': [() => node.kill()],
    'JetStream leader': [() => leader?.kill()],
    'JetStream follower': [() => follower?.kill()],
    'colloquy node and leader': [() => node.kill(), () => leader?.kill()],
  }[kind]
  const killed = new Promise<void>((resolve) =>
    setTimeout(() => void Promise.all(victims.map((kill) => kill())).then(() => resolve()), killAfterMs),
  )
  const keyOfCounter = new Map<number, number>()
  const keys: string[] = []
  const deadline = Date.now() + killAfterMs + 2_000
  // Bounded: at most 5,000 updates, and 2 s past the kill.
  for (let i = 0; i < 5_000 && !isStopped && Date.now() < deadline; i++) {
    const key = `${label}-${i}`
    map.set(key, i)
    keys.push(key)
    keyOfCounter.set(client.peer.requestAck(), i)
    if (i % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await killed
  client.close()
  const highestAcked = Math.max(0, ...client.peer.acks)
  const acked = keys.slice(0, (keyOfCounter.get(highestAcked) ?? -1) + 1)
  console.log(`${kind}: killed after ${killAfterMs} ms, ${keys.length} sent, ${acked.length} acked`)
  // Bring the dead back (a nats-server on its store dir, a Colloquy node on its data dir).
  for (const nats of cluster.nats.nodes) if (!nats.isRunning()) await nats.restart()
  await cluster.nats.waitForMetaLeader(30_000)
  if (node.process === undefined) await node.restart()
  return acked
}

/**
 * A client synced with `node`, reconnecting as providers do (bounded: 60 s) while the node cannot
 * load the session yet (JetStream still electing or catching up); a failure shows the node's log.
 */
async function connectSynced(node: ColloquyNode): Promise<WsPeer> {
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      const peer = await connectWsPeer(node.url, 'durable')
      try {
        await peer.whenSynced(15_000)
        return peer
      } catch (error) {
        peer.close()
        throw error
      }
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`${String(error)} on ${node.name}:\n${node.process?.output().slice(-4_000)}`)
    }
  }
}

/** A fresh client on every node finds every key of `acknowledged`. */
async function checkEveryNode(cluster: ColloquyCluster, acknowledged: readonly string[], label: string) {
  for (const node of cluster.nodes) {
    const reader = await connectSynced(node)
    try {
      const map = reader.peer.doc.getMap<number>('m')
      await until(
        () => acknowledged.every((key) => map.has(key)),
        15_000,
        `${label}: acked keys on ${node.name}`,
      ).catch(
        () => undefined, // the assertion below names what is missing
      )
      expect(
        acknowledged.filter((key) => !map.has(key)),
        `${label}, on ${node.name}`,
      ).toEqual([])
    } finally {
      reader.close()
    }
  }
}
