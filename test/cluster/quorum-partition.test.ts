// No false ack in a cluster: while JetStream has no quorum (2 of 3 nats-servers killed) writes are
// refused with a transient 45xx close code or never acked, and reads keep working; while one
// nats-server is cut off from the others by a partition, the Colloquy node that reaches only it
// never acks, the others do, and once healed nothing is lost or duplicated.

import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { jetstream } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { afterEach, describe, expect, it } from 'vitest'
import { openJetStreamResources, scanSubject } from '../../server/cluster/jetstream-log.js'
import {
  type ColloquyCluster,
  type ColloquyNode,
  startColloquyCluster,
  waitForFullMesh,
} from '../helpers/colloquy-cluster.js'
import { moveStreamLeader } from '../helpers/diverged-replica.js'
import { hasNatsServer, jszStreams, type NatsCluster, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { type PartitionProxies, startPartitionedNatsCluster } from '../helpers/partition-proxy.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

warnIfNoNatsServer(import.meta.url)

/** Sends `count` items on `client`, asks for an ack; resolves true if acked within `ms`. */
async function pushAndAsk(client: WsPeer, items: readonly string[], ms: number): Promise<boolean> {
  client.peer.doc.getArray<string>('items').push([...items])
  const counter = client.peer.requestAck()
  return client.peer.whenAcked(counter, ms).then(
    () => true,
    () => false,
  )
}

/** Waits for the handshake; a failure shows the end of the node's log. */
async function synced(peer: WsPeer, node: ColloquyNode): Promise<void> {
  await peer.whenSynced(15_000).catch((error: unknown) => {
    throw new Error(`${String(error)} on ${node.name}:\n${node.process?.output().slice(-4_000)}`)
  })
}

/** Connects to `node` until a handshake completes (each try 15 s, 60 s in all). */
async function readerAfterHeal(node: ColloquyNode): Promise<WsPeer> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const peer = await connectWsPeer(node.url, 'split')
    try {
      await peer.whenSynced(15_000)
      return peer
    } catch (error) {
      peer.close()
      if (Date.now() > deadline) throw error
    }
  }
}

/**
 * Whether nats-server `node` holds `text` in the message blocks of `stream` (its own copy), asked
 * until it does or `ms` passed (the server writes its blocks a moment after it stores).
 */
async function storeHolds(
  node: NatsCluster['nodes'][number],
  stream: string,
  text: string,
  ms = 10_000,
): Promise<boolean> {
  const dir = path.join(node.storeDir, 'jetstream', '$G', 'streams', stream, 'msgs')
  const deadline = Date.now() + ms
  for (;;) {
    const blocks = (await readdir(dir).catch(() => [])).filter((file) => file.endsWith('.blk'))
    for (const block of blocks) if ((await readFile(path.join(dir, block))).includes(text)) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** What each running server's `/jsz` says of `stream`'s leader and its last seq (for a failure message). */
async function leaderViews(cluster: NatsCluster, stream: string): Promise<string> {
  const views = await Promise.all(
    cluster.nodes
      .filter((node) => node.isRunning())
      .map(async (node) => {
        try {
          const { streams } = await jszStreams(node, 2_000)
          const found = streams.find((detail) => detail.name === stream)
          return `${node.name}: leader ${found?.cluster?.leader ?? '-'}, last seq ${found?.state?.last_seq ?? '-'}`
        } catch {
          return `${node.name}: no answer`
        }
      }),
  )
  return views.join('; ')
}

describe.skipIf(!hasNatsServer)('reads after a partition healed', () => {
  let cluster: NatsCluster | undefined
  let proxies: PartitionProxies | undefined
  afterEach(async () => {
    await cluster?.stop()
    await proxies?.close()
    cluster = undefined
    proxies = undefined
  })

  // Regression (issue 15, the partition test's lost updates, 3 runs in 8 here): nats-server 2.9.10
  // lets a stream leader that a partition cut off store what its clients publish (never acked), and
  // after the heal it keeps those messages at the seqs where the majority acked others. A read
  // through a consumer placed on that server returned the never-acked messages instead of the
  // acked ones (4 reads in 12 in one run). Reads now go through the stream leader (scanSubject).
  // Regression (issue 15, again: 8 runs of 20 with --retry=0): right after the heal, n3 still
  // believed it led and answered a read's leader requests alone (the others gave no answer within
  // 50 ms), so a read was `[before]` or `[before, minority-0]`. A read now gathers every answer and
  // refuses a leader that heard from no majority of its replicas lately (checkedLeaderView; the
  // exact cases in stale-leader.test.ts): the refusals are printed, and retried.
  it('return what the majority acked, never what the cut-off leader stored without quorum', async () => {
    ;({ cluster, proxies } = await startPartitionedNatsCluster())
    const [n1, , n3] = cluster.nodes
    const nc = await connect({ servers: [n1!.url], timeout: 5_000 })
    const cut = await connect({ servers: [n3!.url], timeout: 5_000, maxReconnectAttempts: -1 })
    try {
      const resources = await openJetStreamResources({ nc, namespace: 'diverge' })
      const { stream, subjectPrefix } = resources.names
      const subject = `${subjectPrefix}.s`
      const js = jetstream(nc, { timeout: 1_000 })
      await js.publish(subject, 'before', { timeout: 10_000 })
      // A longer subject, read back below with gets only (a read whose consumers all miss the leader).
      const long = `${subjectPrefix}.long`
      const longTexts = Array.from({ length: 150 }, (_, i) => `long-${i}`)
      await Promise.all(longTexts.map((text) => js.publish(long, text, { timeout: 10_000 })))
      await moveStreamLeader(cluster, nc, stream, 'n3')

      proxies.isolate(2)
      // n3 still leads on its side for a few seconds: it stores these without a quorum.
      const minority = jetstream(cut, { timeout: 2_000 })
      const minorityAcks = (async () => {
        let acks = 0
        for (const text of ['minority-0', 'minority-1']) {
          acks += await minority.publish(subject, text).then(
            () => 1,
            () => 0,
          )
        }
        return acks
      })()
      let majoritySeq = 0
      const deadline = Date.now() + 30_000
      while (majoritySeq === 0 && Date.now() < deadline) {
        majoritySeq = await js.publish(subject, 'majority').then(
          (ack) => ack.seq,
          () => 0,
        )
      }
      expect(majoritySeq, 'the majority acks once it has elected a leader').toBeGreaterThan(0)
      console.info(
        `partition: the majority acked seq ${majoritySeq} ${Date.now() - deadline + 30_000} ms after the cut`,
      )
      expect(await minorityAcks, 'acks from the cut-off side').toBe(0)

      proxies.heal()
      await waitForFullMesh(cluster, 20_000)
      await cluster.waitForStreamLeader(stream, 30_000)
      // Right after the heal JetStream may answer "temporarily unavailable" (a meta election): a
      // caller retries such a read, as the store's callers do (bounded).
      const refused: string[] = []
      const readAll = async (from = subject, placementAttempts?: number): Promise<string[]> => {
        const until = Date.now() + 30_000
        for (;;) {
          try {
            const messages = await scanSubject(
              resources,
              from,
              { fromSeq: 1, toSeq: Number.MAX_SAFE_INTEGER, limit: 1_000, headersOnly: false },
              placementAttempts === undefined ? {} : { placementAttempts },
            )
            return messages.map((message) => new TextDecoder().decode(message.data))
          } catch (error) {
            // What the guard against a stale leader refused, and what else failed (printed below).
            refused.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error))
            if (Date.now() > until) throw error
            await new Promise((resolve) => setTimeout(resolve, 250))
          }
        }
      }
      const texts: string[][] = []
      // Each read with what every server said of the stream's leader just before it (a failure names
      // which server led, or believed it led, when a read returned something else).
      const views: string[] = []
      for (let read = 0; read < 15; read++) {
        views.push(`read ${read}: ${await leaderViews(cluster, stream)}`)
        texts.push(await readAll(subject, read < 10 ? undefined : 0))
      }
      console.info(`reads refused after the heal (then retried): ${refused.length}\n${refused.join('\n')}`)
      const described = texts.map((read, i) => `${views[i]} → ${JSON.stringify(read)}`).join('\n')
      const sorted = (texts: string[]) => [...texts].sort()
      expect(sorted(await readAll(long, 0)), 'the long subject, read with gets').toEqual(sorted(longTexts))
      expect(sorted(await readAll(long)), 'the long subject, read with a consumer').toEqual(sorted(longTexts))
      // The provocation worked: the cut-off leader stored a message the majority never acked, and
      // kept it after the heal (the divergence is nats-server's); yet every read is the majority's.
      expect(await storeHolds(n3!, stream, 'minority-0')).toBe(true)
      expect(await storeHolds(n1!, stream, 'minority-0', 0)).toBe(false)
      for (const read of texts) expect(read, described).toEqual(['before', 'majority'])
    } finally {
      await cut.close()
      await nc.close()
    }
  }, 150_000)
})

describe.skipIf(!hasNatsServer)('a Colloquy cluster without JetStream quorum', () => {
  let cluster: ColloquyCluster | undefined
  afterEach(async () => {
    await cluster?.stop()
    cluster = undefined
  })

  it('never acks a write while 2 of 3 nats-servers are down, and still serves reads', async () => {
    cluster = await startColloquyCluster()
    const node = cluster.nodes[0]!
    const writer = await connectWsPeer(node.url, 'quorum')
    await writer.whenSynced(15_000)
    expect(await pushAndAsk(writer, ['before'], 10_000)).toBe(true)

    await cluster.nats.nodes[1]!.kill()
    await cluster.nats.nodes[2]!.kill()
    // Refused with a transient code (45xx), or left unacknowledged: never a false ack.
    const acked = await pushAndAsk(writer, ['without quorum'], 6_000)
    const closeCode = await withTimeout(writer.closed, 1, 'closed').catch(() => undefined)
    expect(acked, 'an ack without quorum').toBe(false)
    if (closeCode !== undefined) expect(closeCode).toBeGreaterThanOrEqual(4500)
    if (closeCode !== undefined) expect(closeCode).toBeLessThan(4600)

    // Reads: a new client on the same node syncs what was acked.
    const reader = await connectWsPeer(node.url, 'quorum')
    await reader.whenSynced(15_000)
    expect(reader.peer.doc.getArray<string>('items').toArray()).toContain('before')
    reader.close()
    writer.close()
  }, 60_000)

  // Regression (issue 15): a reader on another node, 30 s after the heal, had none of the 20 updates
  // the majority acked during the partition (1 run in 4 here). Its node loaded the session through
  // an ordered consumer that nats-server had placed on the healed replica, still catching up, and
  // the scan stopped where that replica counted nothing pending (see scanSubject).
  // Regression (issue 15, again after that fix: a clean-clone CI run, and 3 runs in 8 here under
  // load): the reader on c2 had m-before and every b- item but none of the a- items. When n3 led
  // the log stream at the cut, it stored the b- items without quorum at the seq where the majority
  // acked the a- items, and kept them after the heal; c2 loaded the session through a consumer on
  // n3's diverged copy. Reads now use the leader's copy (see the test above). Since: 10 runs in a
  // row under load (8–15 on 2 cores), 7 of 8, 10/10, 9/10, then 8/8 after reads fell back to
  // leader gets on "temporarily unavailable". The 2 failures: the reader lacked the b- items (gap
  // repairs failing 15 s+ after the heal; docs/cluster.md "Open failures").
  it('never acks on the cut-off side of a partition, and loses or duplicates nothing once healed', async () => {
    // Colloquy node c3 reaches only nats-server n3; n3 is the one the partition isolates.
    cluster = await startColloquyCluster({
      partitionable: true,
      natsOf: (i) => (i === 2 ? [2] : [i, (i + 1) % 2]),
    })
    const [c1, , c3] = cluster.nodes
    const majority = await connectWsPeer(c1!.url, 'split')
    const minority = await connectWsPeer(c3!.url, 'split')
    await synced(majority, c1!)
    await synced(minority, c3!)
    expect(await pushAndAsk(minority, ['m-before'], 10_000)).toBe(true)

    cluster.proxies!.isolate(2)
    const majorityItems = Array.from({ length: 20 }, (_, i) => `a-${i}`)
    const minorityItems = Array.from({ length: 20 }, (_, i) => `b-${i}`)
    const minorityAcked = pushAndAsk(minority, minorityItems, 8_000)
    // The majority may wait for a new stream leader (if n3 led it) before it acks.
    const majorityAcked = await pushAndAsk(majority, majorityItems, 20_000)
    expect(majorityAcked, 'the majority acks').toBe(true)
    expect(await minorityAcked, 'an ack from the cut-off side').toBe(false)

    cluster.proxies!.heal()
    // After healing the minority's writes reach the log (acked now or re-sent on reconnect).
    const everything = ['m-before', ...majorityItems, ...minorityItems]
    // A node may fail to load the session while JetStream settles after the heal (its API times
    // out): the client reconnects, as providers do, bounded.
    const reader = await readerAfterHeal(cluster.nodes[1]!)
    const items = reader.peer.doc.getArray<string>('items')
    await until(() => everything.every((item) => items.toArray().includes(item)), 30_000, 'every item').catch(
      () => undefined, // the assertion names what is missing
    )
    const missing = everything.filter((item) => !items.toArray().includes(item))
    // What each node's reads answered after the heal (the store logs each failed read's error, once
    // per kind, with the server; the relay each failed gap repair): the evidence of a failure.
    const readFailures = cluster.nodes
      .map((node) => {
        const lines = (node.process?.output() ?? '')
          .split('\n')
          .filter((line) => /JetStream read failed|gap repair failed/.test(line))
        return `${node.name}:\n${lines.slice(-12).join('\n')}`
      })
      .join('\n')
    if (process.env.COLLOQUY_PRINT_READS) console.log(`reads after the heal:\n${readFailures}`)
    expect(missing, `missing after the heal; the nodes' failed reads:\n${readFailures}`).toEqual([])
    expect(items.length, 'no item twice').toBe(new Set(items.toArray()).size)
    expect(items.length).toBe(everything.length)
    for (const client of [reader, majority, minority]) client.close()
  }, 90_000)
})
