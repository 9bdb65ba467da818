// One streaming run against a running server: D sessions, each with one bare writer of ~30-byte
// updates and K bare readers, at a fixed total rate for a fixed time. Used by [S1], [S2] and [S7].
// Measures latency, delivery, server and load-generator CPU, and checks convergence.

import { performance } from 'node:perf_hooks'
import { percentile, round, sleep, sortedOf } from '../lib/stats.js'
import { cpuMicrosOf, type RunningServer } from '../lib/targets.js'
import type { LoadProcess } from '../load/pool.js'

export interface StreamOptions {
  readonly name: string
  readonly sessions: number
  readonly readersPerSession: number
  readonly totalRate: number
  readonly durationMs: number
  readonly seed: number
  /** Colloquy only: a sync-status after every n-th update (0: none). */
  readonly ackEvery: number
  /** How long readers may take after the writers stop before we call it a backlog. */
  readonly drainTimeoutMs: number
  /** Idle time after the run before the CPU reading (debounced saves happen in it). */
  readonly settleMs: number
  /** Readers on these servers (spread per doc) rather than on the writers' server (cluster runs). */
  readonly readerUrls?: readonly string[]
  /**
   * Idle time between the readers' sync and the first write (cluster runs: a node may still be
   * subscribing to the session's channel when its client has synced).
   */
  readonly pauseBeforeWriteMs?: number
  /** Verify the written text through fresh clients on each of these servers (default: the server). */
  readonly verifyUrls?: readonly string[]
}

export interface StreamResult {
  readonly offeredRate: number
  readonly sentRate: number
  readonly updatesSent: number
  readonly deliveriesExpected: number
  readonly deliveries: number
  readonly deliveredRate: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
  readonly latencyMaxMs: number
  /** Time from the last send to the last delivery. */
  readonly drainMs: number
  /** Server CPU (user+sys) from the first send to the end of the settle time, per update. */
  readonly serverCpuMicrosPerUpdate: number
  /** Server CPU while the load ran, % of one core. */
  readonly serverCpuPercent: number
  /**
   * Server CPU in the settle time after every reader had everything, ms: work the server still had
   * to do once the load stopped (writes behind, debounced saves, compaction). A server that keeps
   * up leaves a bounded amount; one that fell behind leaves a deficit that grows with the run.
   */
  readonly afterCpuMs: number
  /** Load generator CPU (writer, readers) while the load ran, % of one core each. */
  readonly writerCpuPercent: number
  readonly readerCpuPercent: number
  readonly ackP50Ms: number
  readonly ackP99Ms: number
  readonly acksMissing: number
  readonly complete: boolean
  /** Connections (writers and readers) the server closed before they were done. */
  readonly disconnects: number
  readonly readersIdentical: boolean
  readonly contentVerified: boolean
  readonly correct: boolean
}

/** Runs one streaming load; `writer` and `readers` are load processes (kept across runs). */
export async function runStream(
  server: RunningServer,
  writer: LoadProcess,
  readers: LoadProcess,
  options: StreamOptions,
): Promise<StreamResult> {
  const docs = Array.from({ length: options.sessions }, (_, i) => `${options.name}-${options.seed}-${i}`)
  const target = { url: server.url, framing: server.framing }
  const epochMs = Date.now()
  await readers.request(
    {
      type: 'readers',
      ...target,
      docs,
      perDoc: options.readersPerSession,
      epochMs,
      ...(options.readerUrls === undefined ? {} : { urls: options.readerUrls }),
    },
    'ready',
    120_000,
  )
  if (options.pauseBeforeWriteMs !== undefined) await sleep(options.pauseBeforeWriteMs)
  const cpu0 = server.cpuMicros()
  const writerCpu0 = cpuMicrosOf(writer.pid)
  const readerCpu0 = cpuMicrosOf(readers.pid)
  const t0 = performance.now()
  const written = await writer.request(
    {
      type: 'write',
      ...target,
      docs,
      ratePerDoc: options.totalRate / options.sessions,
      durationMs: options.durationMs,
      epochMs,
      seed: options.seed,
      ackEvery: options.ackEvery,
      keepText: true,
    },
    'written',
    options.durationMs + 120_000,
  )
  const sendEndMicros = (performance.timeOrigin + performance.now() - epochMs) * 1000
  const drained = await readers.request(
    { type: 'drain', expected: written.sent, timeoutMs: options.drainTimeoutMs },
    'drained',
    options.drainTimeoutMs + 30_000,
  )
  const loadMs = performance.now() - t0
  const cpuLoad = server.cpuMicros() - cpu0
  const writerCpu = cpuMicrosOf(writer.pid) - writerCpu0
  const readerCpu = cpuMicrosOf(readers.pid) - readerCpu0
  await sleep(options.settleMs)
  const cpuTotal = server.cpuMicros() - cpu0
  await readers.request({ type: 'close' }, 'closed', 30_000)
  const writersClosed = await writer.request({ type: 'close' }, 'closed', 30_000)

  // Convergence: every reader of a session saw the same update bytes in the same order, as many as
  // were sent; and a fresh Y.Doc client syncs to exactly the text the writer wrote (5 sessions).
  let readersIdentical = true
  docs.forEach((_, docIndex) => {
    const mine = drained.docOf.flatMap((doc, reader) => (doc === docIndex ? [reader] : []))
    const first = mine[0]
    if (first === undefined) return
    for (const reader of mine) {
      if (drained.hashes[reader] !== drained.hashes[first]) readersIdentical = false
      if (drained.counts[reader] !== written.sent[docIndex]) readersIdentical = false
    }
  })
  const sample = docs.slice(0, 5)
  let contentVerified = true
  for (const url of options.verifyUrls ?? [server.url]) {
    const verified = await readers.request(
      {
        type: 'verify',
        url,
        framing: server.framing,
        docs: sample,
        texts: written.texts.slice(0, sample.length),
      },
      'verified',
      120_000,
    )
    if (!verified.ok.every(Boolean)) contentVerified = false
  }

  const updatesSent = written.sent.reduce((sum, n) => sum + n, 0)
  const deliveries = drained.counts.reduce((sum, n) => sum + n, 0)
  const latencies = sortedOf(drained.latencies)
  const acks = sortedOf(written.ackLatencies)
  return {
    offeredRate: options.totalRate,
    sentRate: round(updatesSent / written.sendSeconds, 0),
    updatesSent,
    deliveriesExpected: updatesSent * options.readersPerSession,
    deliveries,
    deliveredRate: round(deliveries / (loadMs / 1000), 0),
    latencyP50Ms: round(percentile(latencies, 50) / 1000, 2),
    latencyP99Ms: round(percentile(latencies, 99) / 1000, 2),
    latencyMaxMs: round(percentile(latencies, 100) / 1000, 2),
    drainMs: round(Math.max(0, drained.lastMicros - sendEndMicros) / 1000, 1),
    serverCpuMicrosPerUpdate: round(cpuTotal / Math.max(1, updatesSent), 1),
    serverCpuPercent: round((cpuLoad / 1000 / loadMs) * 100, 0),
    afterCpuMs: round((cpuTotal - cpuLoad) / 1000, 0),
    writerCpuPercent: round((writerCpu / 1000 / loadMs) * 100, 0),
    readerCpuPercent: round((readerCpu / 1000 / loadMs) * 100, 0),
    ackP50Ms: round(percentile(acks, 50) / 1000, 2),
    ackP99Ms: round(percentile(acks, 99) / 1000, 2),
    acksMissing: written.acksMissing,
    complete: drained.complete,
    disconnects: writersClosed.closedByServer.length + drained.disconnectCodes.length,
    readersIdentical,
    contentVerified,
    correct: drained.complete && readersIdentical && contentVerified,
  }
}
