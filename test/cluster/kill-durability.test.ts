// Nothing acked is lost in a cluster: a client streams updates with acks to one Colloquy node while
// the test kills (SIGKILL) that Colloquy node, the JetStream leader of the session log, a follower,
// or a Colloquy node and the leader together, at a seeded random moment. After the dead come back,
// a fresh client on every node must find every acknowledged update. Seed printed; rounds bounded.

import { connect } from '@nats-io/transport-node'
import * as prng from 'lib0/prng'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore } from '../../server/cluster/jetstream-store.js'
import {
  type ColloquyCluster,
  type ColloquyNode,
  startColloquyCluster,
  streamLeader,
} from '../helpers/colloquy-cluster.js'
import { hasNatsServer, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
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

  // Regressions (issue 15): "45 s without an ack" was this test waiting on a socket closed with
  // 4505 (connectReady reconnects). "Acked keys missing on one node while JetStream held them"
  // (4 runs in 13): a node whose NATS connection dropped with a killed nats-server lost relayed
  // updates, its gap repair's read failed, and the relay dropped the ranges; it now keeps them
  // pending and retries them (nats-distribution.ts, repair()).
  it('keeps every acknowledged update whichever process dies', async () => {
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
  }, 110_000)
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
  const client = await connectReady(node, label)
  const map = client.peer.doc.getMap<number>('m')
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
 * A client of `node` whose write was acked: the cluster has recovered from the last round (a new
 * leader, a caught-up stream) before the clock of this round starts. Regression (issue 15, "the
 * writer's node acked nothing for 45 s"): a node whose write queue still fails after the last kill
 * refuses a write by closing the socket with 4505 `storage-unavailable`, and the test waited out
 * 45 s on that closed socket. A provider reconnects; so does this, bounded (45 s in all).
 */
async function connectReady(node: ColloquyNode, label: string): Promise<WsPeer> {
  const deadline = Date.now() + 45_000
  for (let attempt = 0; ; attempt++) {
    const client = await connectSynced(node)
    client.peer.doc.getMap<number>('m').set(`${label}-ready-${attempt}`, -1)
    const outcome = await Promise.race([
      client.peer.whenAcked(client.peer.requestAck(), Math.max(1, deadline - Date.now())).then(
        () => 'acked' as const,
        (error: unknown) => error,
      ),
      client.closed.then((code) => code),
    ])
    if (outcome === 'acked') return client
    client.close()
    if (typeof outcome === 'number' && outcome >= 4500 && outcome < 4600 && Date.now() < deadline) {
      console.log(`${label}: ${node.name} refused the ready write with ${outcome}; reconnecting`)
      await new Promise((resolve) => setTimeout(resolve, 250))
      continue
    }
    throw new Error(`${String(outcome)} on ${node.name}:\n${node.process?.output().slice(-6_000)}`)
  }
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
      const missing = acknowledged.filter((key) => !map.has(key))
      if (missing.length > 0) console.log(await diagnose(cluster, node, missing))
      expect(missing, `${label}, on ${node.name}`).toEqual([])
    } finally {
      reader.close()
    }
  }
}

/**
 * What JetStream holds of `missing` (read through a store of the test's own, as a node loading
 * the session would), and the node's warnings: tells a lost acked write from a node that did not
 * apply what was stored.
 */
async function diagnose(cluster: ColloquyCluster, node: ColloquyNode, missing: readonly string[]) {
  const nc = await connect({ servers: [...cluster.nats.urls], timeout: 5_000 })
  try {
    const store = createJetStreamStore({ resources: await openJetStreamResources({ nc }) })
    const stored = await store.load('durable')
    const doc = new Y.Doc()
    if (stored.checkpoint !== undefined) Y.applyUpdate(doc, stored.checkpoint.state)
    for (const entry of stored.log) Y.applyUpdate(doc, entry.update)
    const held = missing.filter((key) => doc.getMap('m').has(key)).length
    const lines = (node.process?.output() ?? '')
      .split('\n')
      .filter((line) => /"level":[4-6]0|repair|relay|lost/.test(line))
      .slice(-40)
      .map((line) => line.slice(0, 2_000))
    return [
      `${missing.length} acked keys missing on ${node.name} (first ${missing[0]}, last ${missing.at(-1)});`,
      `JetStream holds ${held} of them (log: ${stored.log.length} entries through seq ${stored.meta?.lastSeq},`,
      `checkpoint ${stored.checkpoint?.seq ?? 'none'}). ${node.name} said:`,
      ...lines,
    ].join('\n')
  } finally {
    await nc.close()
  }
}
