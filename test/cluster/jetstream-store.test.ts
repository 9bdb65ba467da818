// The Store contract against the JetStream store on a real 3-node nats-server cluster (R3), each
// test in its own namespace (stream, buckets) of one cluster per file; plus what only a cluster
// store has: two nodes appending to one session, sparse seqs, large updates beyond max_payload.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, headers, type NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { openClusterStore, openWhenReady } from '../../server/cluster/cluster-store.js'
import { jetStreamNames, openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import {
  createJetStreamStore,
  type JetStreamStore,
  READ_RETRY_MS,
} from '../../server/cluster/jetstream-store.js'
import { openOutbox } from '../../server/cluster/outbox.js'
import { createPipelinedPublisher } from '../../server/cluster/pipelined-publisher.js'
import { runStoreContract } from '../contract/store-contract.js'
import {
  hasNatsServer,
  jszStreams,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { capturingLogger } from '../helpers/test-server.js'

warnIfNoNatsServer(import.meta.url)

let cluster: NatsCluster | undefined
let namespaces = 0
const quiet = pino({ level: 'silent' })

async function openStore(
  namespace: string,
  servers?: readonly string[],
  publishTimeoutMs?: number,
): Promise<{ store: JetStreamStore; nc: NatsConnection }> {
  if (cluster === undefined) throw new Error('cluster not started')
  // With `servers`, connect to the first of them (then the others), in that order.
  const nc = await connect({
    servers: [...(servers ?? cluster.urls)],
    timeout: 5_000,
    ...(servers === undefined ? {} : { noRandomize: true }),
  })
  // Creating 6 R3 streams may wait out an election of the meta leader, busy with the streams of
  // every test before (a 10 s API timeout on a loaded machine): retried as a node does, bounded.
  const resources = await openWhenReady(
    'open JetStream resources',
    () => openJetStreamResources({ nc, namespace }),
    {
      logger: quiet,
      retryForMs: 30_000,
    },
  ).catch(async (error: unknown) => {
    await nc.close()
    throw error
  })
  const store = createJetStreamStore({
    resources,
    onClose: () => nc.close(),
    ...(publishTimeoutMs === undefined ? {} : { publishTimeoutMs }),
  })
  return { store, nc }
}

/** Deletes the streams of `namespace` (best effort: a leftover costs only idle Raft groups). */
async function removeNamespace(nc: NatsConnection, namespace: string): Promise<void> {
  const names = jetStreamNames(namespace)
  const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false })
  const streams = [
    names.stream,
    ...[names.sessions, names.index, names.leases].map((bucket) => `KV_${bucket}`),
    ...[names.states, names.updates].map((store) => `OBJ_${store}`),
  ]
  await Promise.allSettled(streams.map((stream) => jsm.streams.delete(stream)))
}

/** The name of the store contract suite here. */
const CONTRACT = 'jetstream (R3)'

/** Namespaces being opened for the next contract tests, in order. */
const openedAhead: { namespace: string; opening: ReturnType<typeof openStore> }[] = []

/** Starts opening namespaces until two are ahead. */
function openAhead(): void {
  while (openedAhead.length < 2) {
    const namespace = `t${++namespaces}`
    const opening = openStore(namespace)
    opening.catch(() => undefined) // a failure is the failure of the test that takes it
    openedAhead.push({ namespace, opening })
  }
}

/** Closes and deletes what was opened ahead and not taken. */
async function dropOpenedAhead(): Promise<void> {
  for (const { namespace, opening } of openedAhead.splice(0)) {
    const opened = await opening.catch(() => undefined)
    if (opened === undefined) continue
    await removeNamespace(opened.nc, namespace)
    await opened.store.close()
  }
}

/**
 * What every running server says of `stream`, the meta leader, and who subscribes to `subject`
 * (for a failure message).
 */
async function describeStream(stream: string, subject: string): Promise<string> {
  const views = await Promise.all(
    (cluster?.nodes ?? [])
      .filter((node) => node.isRunning())
      .map(async (node) => {
        try {
          const { metaLeader, streams: details } = await jszStreams(node, 2_000)
          const found = details.find((detail) => detail.name === stream)
          // Who may answer a publish: this server's subscriptions matching the subject (the stream
          // leader's own, or none; issue 15: a leader with none) and the connections named `late`.
          const monitor = `http://127.0.0.1:${node.monitorPort}`
          const subsz = (await (
            await fetch(`${monitor}/subsz?subs=1&test=${encodeURIComponent(subject)}`, {
              signal: AbortSignal.timeout(2_000),
            })
          ).json()) as { subscriptions_list?: unknown[] }
          const connz = (await (
            await fetch(`${monitor}/connz?limit=1024`, { signal: AbortSignal.timeout(2_000) })
          ).json()) as { connections?: { name?: string }[] }
          const late = (connz.connections ?? []).filter((c) => c.name === 'late').length
          return `${node.name}: meta leader ${metaLeader}, ${details.length} streams, ${stream} ${JSON.stringify(found?.cluster)}, subscriptions matching ${subject}: ${subsz.subscriptions_list?.length ?? 0}, connections named late: ${late}`
        } catch (error) {
          return `${node.name}: ${String(error)}`
        }
      }),
  )
  return views.join('\n')
}

describe.skipIf(!hasNatsServer)('JetStream store on a 3-node cluster', () => {
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  // Each contract test opens its own namespace (6 R3 streams: about 1.5 s here, most of the
  // test's time, in three rounds of creates each waiting for its groups' elections). The next two
  // are opened while a test runs: the same fresh namespace per test, 28 × ~1.5 s less waiting.
  beforeEach(async ({ task }) => {
    // The tests after the contract kill servers: what was opened ahead goes first.
    if (task.suite?.name !== `Store contract: ${CONTRACT}`) await dropOpenedAhead()
  })
  afterAll(async () => {
    await dropOpenedAhead()
  })

  runStoreContract(CONTRACT, async () => {
    openAhead()
    const { namespace, opening } = openedAhead.shift()!
    openAhead()
    let current = await opening
    return {
      store: current.store,
      async reopen() {
        current = await openStore(namespace)
        return current.store
      },
      async cleanup() {
        // Its 6 streams go with the test: left, they made over 170 idle R3 Raft groups by the end
        // of the file, which two restarted servers must recover before they elect anything new.
        await removeNamespace(current.nc, namespace)
        await current.store.close()
      },
    }
  })

  // Regression (CI, session 6): a checkpoint listed right after it was put was missing, because a
  // KV get with direct access may be answered by a follower that has not applied the put yet.
  it('reads its KV buckets through the stream leader, never a possibly stale direct get', async () => {
    if (cluster === undefined) throw new Error('cluster not started')
    const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
    try {
      const resources = await openJetStreamResources({ nc, namespace: 'leaderreads' })
      for (const bucket of [resources.sessions, resources.index, resources.leases]) {
        const status = await bucket.status()
        expect(status.streamInfo.config.allow_direct, status.bucket).toBe(false)
        // The client reads through the leader even from a bucket created with direct gets on.
        expect((bucket as unknown as { direct: boolean }).direct, status.bucket).toBe(false)
      }
    } finally {
      await nc.close()
    }
  })

  it('numbers the appends of two nodes to one session in one increasing, sparse order', async () => {
    const a = await openStore('two')
    const b = await openStore('two')
    try {
      const update = (tag: string) => new TextEncoder().encode(tag)
      const rounds = 20
      const seqs = await Promise.all(
        Array.from({ length: rounds }, (_, i) =>
          Promise.all([
            a.store.append([
              { sessionId: 'shared', time: i, update: update(`a${i}`) },
              { sessionId: `own-${i % 3}`, time: i, update: update(`x${i}`) },
            ]),
            b.store.append([{ sessionId: 'shared', time: i, update: update(`b${i}`) }]),
          ]),
        ),
      )
      const sharedSeqs = seqs.flatMap(([fromA, fromB]) => [fromA[0]!, fromB[0]!]).sort((x, y) => x - y)
      expect(new Set(sharedSeqs).size).toBe(2 * rounds)
      const log = await b.store.readLog('shared')
      expect(log.map((entry) => entry.seq)).toEqual(sharedSeqs)
      // Sparse: the other sessions' entries took stream seqs in between.
      expect(sharedSeqs[sharedSeqs.length - 1]! - sharedSeqs[0]!).toBeGreaterThan(2 * rounds - 1)
      expect(await a.store.getMeta('shared')).toMatchObject({
        logCount: 2 * rounds,
        lastSeq: sharedSeqs.at(-1),
      })
      // What a relay's gap repair asks: the last seq in the log, then the entries after its own.
      expect(await a.store.lastLogSeq('shared')).toBe(sharedSeqs.at(-1))
      expect(await b.store.lastLogSeq('never-written')).toBe(0)
      const missed = await a.store.readLog('shared', { fromSeq: sharedSeqs[rounds]! + 1 })
      expect(missed.map((entry) => entry.seq)).toEqual(sharedSeqs.slice(rounds + 1))
    } finally {
      await a.store.close()
      await b.store.close()
    }
  })

  // Regression (issue 15): a node restarted while JetStream had no quorum exited (1) at open with
  // "no responders: the stream has no leader". It must wait, logging each attempt, then serve.
  // Regression (issue 15, 2 of 14 runs in session 8; 1 in 12, then 1 in 3 instrumented): every
  // re-publish of the outbox got "no responders" for over 60 s after both servers were back. The
  // stream leader (n1, named by every server, followers current, the node connected to it) had
  // no subscription for the stream's subjects (/subsz of every server, every route); once the
  // servers' meta states disagreed on which streams existed. The node now asks such a leader to
  // step down, or creates a log stream JetStream knows nothing of (leader-nudge.ts,
  // leader-nudge.test.ts). Its wait is bounded (60 s) and names the node's last attempts, the
  // nudge's lines and each server's view of the stream and of the subject's subscribers.
  // Of 46 runs with the nudge, 2 failed on the meta divergence (the step-down cured the other
  // form when it came); since the nudge's create when no leader is named, 34 runs in a row passed
  // (20 at load 0.2-1.9, 14 at load 7-13), so it runs in npm test again (with the project's retry).
  it('opens a node started while 2 of 3 nats nodes are down once they are back', async () => {
    if (cluster === undefined) throw new Error('cluster not started')
    const [, second, third] = cluster.nodes
    if (second === undefined || third === undefined) throw new Error('need 3 nodes')
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-open-'))
    const warnings: string[] = []
    let onWarning = (): void => {}
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          warnings.push(chunk.toString())
          onWarning()
          done()
        },
      }),
    )
    // What a killed node held in its outbox but JetStream never stored: re-published at open.
    const outbox = await openOutbox({ location: path.join(dataDir, 'outbox') })
    await outbox.add([{ sessionId: 'late', time: 1, update: new Uint8Array([6]) }])
    await outbox.close()
    await Promise.all([second.kill('SIGKILL'), third.kill('SIGKILL')])
    let opened: Awaited<ReturnType<typeof openClusterStore>> | undefined
    try {
      const opening = openClusterStore({ urls: cluster.urls, nodeId: 'late', dataDir, logger })
      let failed: unknown
      opening.catch((error: unknown) => {
        failed = error
      })
      // Bounded wait for two logged retries: the node is waiting, not exiting.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no retries logged: ${warnings.join('')}`)), 30_000)
        onWarning = () => {
          if (warnings.filter((line) => line.includes('JetStream not ready')).length < 2) return
          clearTimeout(timer)
          resolve()
        }
      })
      expect(failed).toBeUndefined()
      await Promise.all([second.restart(), third.restart()])
      // Bounded (60 s after both are back), naming the node's last attempts if it never opens.
      const restartedAt = Date.now()
      let timer: NodeJS.Timeout | undefined
      opened = await Promise.race([
        opening,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            void opening.then(
              (late) => late.store.close(),
              () => undefined,
            )
            void describeStream(jetStreamNames().stream, 'colloquy.log.late').then((servers) =>
              reject(
                new Error(
                  `not open 60 s after the restart; last: ${warnings.slice(-2).join('')}nudges: ${warnings.filter((line) => /step down|created it again|creating it again/.test(line)).join('')}servers:\n${servers}`,
                ),
              ),
            )
          }, 60_000)
        }),
      ]).finally(() => clearTimeout(timer))
      console.log(
        `opened ${Date.now() - restartedAt} ms after the restart (${warnings.length} retries logged); nudges: ${warnings.filter((line) => /step down|created it again|creating it again/.test(line)).join('') || 'none'}`,
      )
      const [seq] = await opened.store.append([{ sessionId: 'late', time: 1, update: new Uint8Array([7]) }])
      const log = await opened.log.readLog('late')
      expect(log.map((entry) => [...entry.update])).toEqual([[6], [7]])
      expect(log.at(-1)?.seq).toBe(seq)
    } finally {
      if (!second.isRunning()) await second.restart()
      if (!third.isRunning()) await third.restart()
      await opened?.store.close()
      await rm(dataDir, { recursive: true, force: true })
    }
    await cluster.waitForMetaLeader(30_000)
  }, 120_000)

  // Issue 15: a writer's node acked nothing for 45 s after a JetStream leader kill and restart.
  // Regression (issue 15): in 2 runs of 8 here the appends resumed, and the read of the acked
  // entries afterwards timed out creating its consumer (no answer in 10 s); a read now makes its
  // consumer again after 3 s without an answer (createLeaderConsumer).
  it.each([
    { connectedTo: 'any server', namespace: 'leaderkill' },
    { connectedTo: 'the leader itself', namespace: 'leaderkillown' },
  ])(
    'resumes appends within 15 s of restarting a killed stream leader, and every acked one is readable (connected to $connectedTo)',
    async ({ connectedTo, namespace }) => {
      if (cluster === undefined) throw new Error('cluster not started')
      const stream = jetStreamNames(namespace).stream
      let servers: string[] | undefined
      if (connectedTo === 'the leader itself') {
        // Create the stream, then connect to its leader first: the kill also drops this connection,
        // so the publisher's inbox and the publishes in flight go through a reconnect.
        await (await openStore(namespace)).store.close()
        const leaderName = await cluster.waitForStreamLeader(stream, 15_000)
        const leader = cluster.nodes.find((node) => node.name === leaderName)!
        servers = [leader.url, ...cluster.urls.filter((url) => url !== leader.url)]
      }
      const { store } = await openStore(namespace, servers)
      const acked: number[] = []
      let stop = false
      let lastAckAt = Date.now()
      // The longest time between two acks: the election after the kill, or a stall after a restart.
      let longestStallMs = 0
      const writing = (async () => {
        // Bounded: at most 20,000 appends or 90 s, one at a time, a failure retried (as the write
        // queue does) after 100 ms.
        const until = Date.now() + 90_000
        for (let i = 0; i < 20_000 && !stop && Date.now() < until; i++) {
          try {
            const [seq] = await store.append([
              { sessionId: 'steady', time: i, update: new Uint8Array([i % 256]) },
            ])
            acked.push(seq!)
            longestStallMs = Math.max(longestStallMs, Date.now() - lastAckAt)
            lastAckAt = Date.now()
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 100))
          }
        }
      })()
      try {
        const waitForAcks = async (count: number, timeoutMs: number): Promise<void> => {
          const deadline = Date.now() + timeoutMs
          while (acked.length < count) {
            if (Date.now() > deadline) throw new Error(`only ${acked.length} of ${count} appends acked`)
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
        }
        await waitForAcks(50, 15_000)
        const leaderName = await cluster.waitForStreamLeader(stream, 15_000)
        const leader = cluster.nodes.find((node) => node.name === leaderName)!
        await leader.kill('SIGKILL')
        const before = acked.length
        await new Promise((resolve) => setTimeout(resolve, 1_000))
        await leader.restart()
        const restartedAt = Date.now()
        await waitForAcks(Math.max(acked.length, before) + 50, 15_000)
        expect(lastAckAt - restartedAt).toBeLessThan(15_000)
        expect(longestStallMs, 'the longest time without an ack (ms)').toBeLessThan(15_000)
        if (process.env.COLLOQUY_PRINT_STALL)
          console.log(`${connectedTo}: longest stall ${longestStallMs} ms`)
      } finally {
        stop = true
        await writing
      }
      const log = await store.readLog('steady')
      const stored = new Set(log.map((entry) => entry.seq))
      expect(acked.filter((seq) => !stored.has(seq))).toEqual([])
      await store.close()
      await cluster.waitForMetaLeader(30_000)
    },
    120_000,
  )

  // Regression (issue 15, the cluster project's `retry: 1`): a read sent while the log stream
  // elected a new leader got no answer and failed after the 10 s API timeout (or at once with
  // "JetStream system temporarily unavailable"), although the cluster answered moments later.
  // Reads are now retried while JetStream cannot answer them, bounded (READ_RETRY_MS). Then (2
  // runs of 3, machine quiet) every read's ordered consumer create got no answer for 30 s while a
  // new stream leader and the meta leader served: a read whose consumer gets no answer in 3 s now
  // reads through the stream leader's message gets (getEach, via scanSubject); 6 runs of 6 since.
  it('answers a read sent right after the stream leader was killed, once a new leader is elected', async () => {
    if (cluster === undefined) throw new Error('cluster not started')
    const namespace = 'readelection'
    const stream = jetStreamNames(namespace).stream
    await (await openStore(namespace)).store.close()
    const leaderName = await cluster.waitForStreamLeader(stream, 15_000)
    const leader = cluster.nodes.find((node) => node.name === leaderName)!
    // Connected to a server that survives the kill, so only the stream's election stands in the way.
    const { store } = await openStore(
      namespace,
      cluster.urls.filter((url) => url !== leader.url),
    )
    try {
      const update = new Uint8Array([1])
      const acked = await store.append(
        Array.from({ length: 20 }, (_, i) => ({ sessionId: 'elected', time: i, update })),
      )
      await leader.kill('SIGKILL')
      const startedAt = Date.now()
      const log = await store.readLog('elected')
      expect(log.map((entry) => entry.seq)).toEqual(acked)
      expect(Date.now() - startedAt, 'a read within its retry bound (ms)').toBeLessThan(READ_RETRY_MS)
    } finally {
      await store.close()
      if (!leader.isRunning()) await leader.restart()
    }
    await cluster.waitForMetaLeader(30_000)
  }, 90_000)

  // Issue 15, the partition test's second symptom: after a heal, reads failed for 15 s and more
  // and nothing said with what. A read now logs each kind of error once (retried or not), with the
  // request that failed and the server its connection is on.
  it('logs a read that keeps failing once per kind of error, naming the request and the server', async () => {
    if (cluster === undefined) throw new Error('cluster not started')
    const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
    const { logger, lines } = capturingLogger('warn')
    const resources = await openJetStreamResources({ nc, namespace: 'readlogs' })
    const store = createJetStreamStore({ resources, logger, readRetryMs: 1_500 })
    try {
      await store.append([{ sessionId: 'failing', time: 0, update: new Uint8Array([1]) }])
      // Every attempt of the read now fails the same way (the log stream is gone).
      await resources.jsm.streams.delete(resources.names.stream)
      await expect(store.readLog('failing')).rejects.toThrow(/stream not found/)
      const failed = lines
        .filter((line) => line.includes('JetStream read failed'))
        .map((line) => JSON.parse(line))
      expect(failed).toHaveLength(1)
      expect(failed[0]).toMatchObject({ step: 'stream info', server: nc.info?.server_name })
      expect(failed[0].err).toMatch(/stream not found/)
    } finally {
      await store.close()
      await removeNamespace(nc, 'readlogs')
      await nc.close()
    }
  })

  // Regression (issue 15): a publish in flight when its connection dropped got no ack ever and
  // waited out the whole publish timeout before the write queue could retry it.
  it('fails a publish in flight at once when its connection drops, not after the timeout', async () => {
    if (cluster === undefined) throw new Error('cluster not started')
    const [first, second] = cluster.nodes
    if (first === undefined || second === undefined) throw new Error('need 2 nodes')
    // A subscriber that never answers: the publish neither gets an ack nor a "no responders".
    const listener = await connect({ servers: second.url, timeout: 5_000 })
    const writer = await connect({
      servers: [first.url, ...cluster.urls.filter((url) => url !== first.url)],
      noRandomize: true,
      timeout: 5_000,
    })
    const publisher = createPipelinedPublisher(writer, 60_000)
    try {
      listener.subscribe('silent.>')
      await listener.flush()
      // Let the interest reach the writer's server before publishing.
      await new Promise((resolve) => setTimeout(resolve, 500))
      const publishing = publisher.publish('silent.x', new Uint8Array([1]), headers())
      const outcome = publishing.then(
        () => 'acked',
        (error: Error) => error.message,
      )
      await writer.flush()
      await first.kill('SIGKILL')
      const bound = new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))
      expect(await Promise.race([outcome, bound])).toMatch(/connection lost/)
    } finally {
      publisher.close()
      if (!first.isRunning()) await first.restart()
      await writer.close()
      await listener.close()
    }
    await cluster.waitForMetaLeader(30_000)
  }, 60_000)
})
