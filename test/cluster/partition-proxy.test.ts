// The partition proxies themselves: an isolated nats-server loses its routes (a stream on the
// majority keeps acking, the minority never does) and rejoins once healed.

import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type JetStreamResources,
  jetStreamNames,
  openJetStreamResources,
} from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore } from '../../server/cluster/jetstream-store.js'
import { hasNatsServer, jszStreams, type NatsCluster, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { type PartitionProxies, startPartitionedNatsCluster } from '../helpers/partition-proxy.js'

warnIfNoNatsServer(import.meta.url)

interface Routez {
  routes?: { remote_id: string; port: number; did_solicit: boolean }[]
}

async function routeCount(monitorPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${monitorPort}/routez`, {
    signal: AbortSignal.timeout(2_000),
  })
  return ((await response.json()) as Routez).routes?.length ?? 0
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe.skipIf(!hasNatsServer)('the partition proxies', () => {
  let proxies: PartitionProxies
  let cluster: NatsCluster
  beforeAll(async () => {
    ;({ cluster, proxies } = await startPartitionedNatsCluster())
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
    await proxies?.close()
  })

  it('carry every route, cut one node off from the others and let it rejoin when healed', async () => {
    const [n1, , n3] = cluster.nodes
    // One route per pair, each through a proxy (none dialled directly from gossip).
    expect(proxies.counts()).toEqual({ open: 3, held: 0 })
    const nc = await connect({ servers: [n1!.url], timeout: 5_000 })
    const minority = await connect({ servers: [n3!.url], timeout: 5_000, maxReconnectAttempts: -1 })
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 })
      await jsm.streams.add({ name: 'PART', subjects: ['part.>'], num_replicas: 3 })
      const js = jsm.jetstream()
      await js.publish('part.a', 'before')

      proxies.isolate(2)
      expect(proxies.counts().held).toBeGreaterThan(0)
      const cut = jetstream(minority, { timeout: 2_000 })
      await expect(cut.publish('part.a', 'minority', { timeout: 2_000 })).rejects.toThrow()
      // The majority elects or keeps a leader and acks (a leader on n3 takes a few seconds to move).
      await waitFor(
        async () => (await js.publish('part.a', 'majority', { timeout: 1_000 })).seq > 0,
        20_000,
        'a majority ack',
      )

      proxies.heal()
      await waitFor(async () => (await routeCount(n3!.monitorPort)) === 2, 20_000, 'n3 to rejoin')
      await waitFor(
        async () => (await cut.publish('part.a', 'healed', { timeout: 1_000 })).seq > 0,
        20_000,
        'n3 to ack again',
      )
    } finally {
      await minority.close()
      await nc.close()
    }
  }, 90_000)

  // Regression (issue 15, the partition test's reader on another node that had none of the 20
  // updates the majority acked): nats-server puts an ordered consumer (a log scan, kv.keys()) on
  // any replica of the stream, and the reads stopped when that replica counted nothing pending. A
  // replica catching up after a partition so served a stale prefix of the log and of the index.
  // Once (a full run beside a fleet bench, load about 10 on 2 cores) the checkpoint put during
  // the partition got no responder from the KV index for its whole 60 s ("jetstream is not
  // enabled"), and in 1 of 4 runs alone every read after the heal failed with "JetStream system
  // temporarily unavailable" for 20 s; not seen again in 14 runs under load 4-14, reads now
  // retried by the store (docs/cluster.md, "Open failures"). No read was short in any run.
  it('lets the JetStream store read every acked entry and checkpoint while a healed node catches up', async () => {
    const namespace = 'healing'
    const stream = jetStreamNames(namespace).stream
    // The store talks to the first two servers; the third, isolated and healed, serves some reads.
    const nc = await connect({ servers: cluster.urls.slice(0, 2), noRandomize: true, timeout: 5_000 })
    // After the test before, n3 counts as offline (no placement) for a while: retry, bounded.
    const opening = Date.now() + 30_000
    let resources: JetStreamResources | undefined
    while (resources === undefined) {
      resources = await openJetStreamResources({ nc, namespace }).catch((error: Error) => {
        if (Date.now() > opening) throw error
        return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 500))
      })
    }
    const store = createJetStreamStore({ resources })
    const update = new Uint8Array(1_024).fill(7)
    const shortReads: string[] = []
    let answered = 0
    try {
      await store.append([{ sessionId: 'heal', time: 0, update }])
      // Every route through a proxy again after the test before healed its cut: a route re-dialled
      // to a peer's own address bypassed the proxies once (the isolation then cut n3 from n1 only,
      // a partial partition that left the checkpoints' stream without a leader for over a minute).
      await waitFor(async () => proxies.counts().open === 3, 20_000, 'three proxied routes')
      proxies.isolate(2)
      // Stored by the majority while n3 is away (n3 may have led the stream: the others elect).
      const acked: number[] = []
      const deadline = Date.now() + 30_000
      while (acked.length < 3_000 && Date.now() < deadline) {
        const entries = Array.from({ length: 250 }, (_, i) => ({ sessionId: 'heal', time: i, update }))
        acked.push(...(await store.append(entries).catch(() => [])))
      }
      const checkpointSeq = acked[acked.length >> 1]!
      // The buckets' streams may be electing a leader too (n3 led them): retry for up to 30 s (six
      // tries back to back once all failed within an election, "JetStream system temporarily
      // unavailable").
      const electing = Date.now() + 60_000
      for (;;) {
        const checkpoint = { seq: checkpointSeq, time: 1, state: new Uint8Array([0, 0]) }
        const error = await store.putCheckpoint('heal', checkpoint).catch((failure: Error) => failure)
        if (error === undefined) break
        // Printed: an election (seconds) tells apart from JetStream unavailable for the whole bound.
        console.log(`checkpoint put failed ${60_000 - (electing - Date.now())} ms in: ${error.message}`)
        if (Date.now() > electing) {
          // Open (docs/cluster.md, "Open failures"): refused for the whole bound though the two
          // connected servers keep a meta quorum. What each server says of every stream, for the
          // next look at it.
          console.log(
            `checkpoint put refused for 60 s; the servers' views:\n${await describeStreams(cluster)}`,
          )
          throw error
        }
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
      proxies.heal()
      // Each read places new consumers, on n3 about one time in three: read while it catches up.
      // A read may wait for a catching-up server up to its own deadline and then fail (transient):
      // the window leaves room for several of those under load.
      const reads = Date.now() + 60_000
      const failures = new Map<string, number>()
      for (let read = 0; read < 40 && Date.now() < reads; read++) {
        const [log, checkpoints] = await Promise.all([
          store.readLog('heal', { fromSeq: 2 }).catch((error: Error) => error),
          store.listCheckpointInfo!('heal').catch((error: Error) => error),
        ])
        if (log instanceof Error || checkpoints instanceof Error) {
          // n3 not reachable yet: counted, printed, not a short read.
          const message = (log instanceof Error ? log : (checkpoints as Error)).message
          failures.set(message, (failures.get(message) ?? 0) + 1)
          read-- // a failed read is not one of the 40: the time bound ends the loop
          await new Promise((resolve) => setTimeout(resolve, 300))
          continue
        }
        answered++
        const stored = new Set(log.map((entry) => entry.seq))
        const missing = acked.filter((seq) => !stored.has(seq)).length
        if (missing > 0) shortReads.push(`read ${read}: ${missing} of ${acked.length} entries missing`)
        if (!checkpoints.some((info) => info.seq === checkpointSeq))
          shortReads.push(`read ${read}: checkpoint ${checkpointSeq} missing`)
      }
      console.log(
        `healing reads on ${stream}: ${answered} answered, ${shortReads.length} short, failed:`,
        Object.fromEntries(failures),
      )
    } finally {
      proxies.heal()
      await store.close()
      await nc.close()
    }
    expect(shortReads).toEqual([])
    expect(answered, 'reads answered after the heal').toBeGreaterThan(5)
  }, 180_000)
})

/** What every server's `/jsz` says of each stream's cluster (leader, replicas), for a failure. */
async function describeStreams(cluster: NatsCluster): Promise<string> {
  const views = await Promise.all(
    cluster.nodes.map(async (node) => {
      try {
        const { metaLeader, streams } = await jszStreams(node, 2_000)
        return `${node.name}: meta leader ${metaLeader}; ${streams
          .map((stream) => `${stream.name} ${JSON.stringify(stream.cluster)}`)
          .join('; ')}`
      } catch (error) {
        return `${node.name}: ${String(error)}`
      }
    }),
  )
  return views.join('\n')
}
