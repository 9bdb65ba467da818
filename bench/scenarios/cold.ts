// Scenarios about stored and growing documents: [S4] cold load after a restart, [S6] reconnect
// storm after a restart, [S8] one answer growing to 1 MB.

import { performance } from 'node:perf_hooks'
import { percentile, round, sleep, sortedOf } from '../lib/stats.js'
import type { RunningServer } from '../lib/targets.js'
import { startLoadProcess } from '../load/pool.js'
import { MAIN, type Row, type Scenario, type ScenarioContext } from './context.js'

/** Writes `perDoc` updates into each of `docs` at `ratePerDoc`, checked by one live reader each. */
async function fill(
  ctx: ScenarioContext,
  server: RunningServer,
  docs: readonly string[],
  perDoc: number,
  ratePerDoc: number,
  drainTimeoutMs = 60_000,
  /** When set, a reader that is not complete in time is a result (`complete: false`), not an error. */
  allowIncomplete = false,
): Promise<{
  texts: string[]
  ingestSeconds: number
  complete: boolean
  disconnects: string
  readerClosed: boolean
}> {
  const target = { url: server.url, framing: server.framing }
  await ctx.readers.request(
    { type: 'readers', ...target, docs, perDoc: 1, epochMs: Date.now() },
    'ready',
    120_000,
  )
  const t0 = performance.now()
  const written = await ctx.writer.request(
    {
      type: 'write',
      ...target,
      docs,
      ratePerDoc,
      durationMs: Math.ceil((perDoc / ratePerDoc) * 1000),
      epochMs: Date.now(),
      seed: ctx.seed,
      // Colloquy: wait for the acks of the last updates, so they are on disk before the restart.
      ackEvery: server.id.startsWith('colloquy') ? Math.max(1, Math.floor(perDoc / 10)) : 0,
      keepText: true,
    },
    'written',
    600_000,
  )
  const drained = await ctx.readers.request(
    { type: 'drain', expected: written.sent, timeoutMs: drainTimeoutMs },
    'drained',
    drainTimeoutMs + 60_000,
  )
  // Until the live reader has every update: how long the server took to take them all in.
  const ingestSeconds = (performance.now() - t0) / 1000
  await ctx.readers.request({ type: 'close' }, 'closed', 60_000)
  const writersClosed = await ctx.writer.request({ type: 'close' }, 'closed', 60_000)
  if (!drained.complete && !allowIncomplete) {
    throw new Error(`a live reader did not receive every update in ${drainTimeoutMs} ms`)
  }
  if (written.acksMissing > 0) throw new Error(`${written.acksMissing} acks missing`)
  // Who the server closed on the way, e.g. "reader 1006": a peer that drops a connection under
  // load shows here rather than as a silent timeout.
  const disconnects = [
    ...writersClosed.closedByServer.map((code) => `writer ${code}`),
    ...drained.disconnectCodes.map((code) => `reader ${code}`),
  ].join(', ')
  return {
    texts: written.texts,
    ingestSeconds,
    complete: drained.complete,
    disconnects,
    // A closed reader ends the drain early; otherwise an incomplete drain ran to its timeout.
    readerClosed: drained.disconnectCodes.length > 0,
  }
}

/** Stops `server` and starts the same target on the same data; returns it and the restart time. */
async function restart(
  ctx: ScenarioContext,
  server: RunningServer,
  args: readonly string[],
): Promise<{ server: RunningServer; restartMs: number }> {
  await server.stop(30_000)
  const t0 = performance.now()
  const next = await ctx.start({ reuseData: true, args })
  return { server: next, restartMs: performance.now() - t0 }
}

/** [S4] how long a target may still write after the ingest before it is restarted anyway. */
const S4_WRITES_LIMIT_MS = 240_000

/**
 * Waits until `server` used under 20 ms of CPU in the last second (bounded by `limitMs`); returns
 * how long that took (ms).
 */
async function waitUntilIdle(server: RunningServer, limitMs: number): Promise<number> {
  const t0 = performance.now()
  let last = server.cpuMicros()
  while (performance.now() - t0 < limitMs) {
    await sleep(1_000)
    const now = server.cpuMicros()
    if (now - last < 20_000) break
    last = now
  }
  return performance.now() - t0
}

/** [S4] how long a target may take to take in (relay) the 100,000 updates. */
const S4_INGEST_LIMIT_MS = 240_000

export const S4: Scenario = {
  id: 'S4',
  title: 'cold load: a session of 100,000 persisted updates, fresh client after a restart',
  targets: MAIN,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const updates = full ? 100_000 : 5_000
    const doc = `s4-${ctx.seed}`
    const variants =
      ctx.target === 'colloquy'
        ? [
            { variant: 'log only (--compaction false)', args: ['--compaction', 'false'], compact: false },
            { variant: 'compacted (POST /sessions/:id/compact)', args: [] as string[], compact: true },
          ]
        : [{ variant: 'as the server stores it', args: [] as string[], compact: false }]
    const rows: Row[] = []
    for (const { variant, args, compact } of variants) {
      let server = await ctx.start({ args })
      try {
        // The peers apply every update to a Y.Doc with an update listener, whose cost grows with the
        // text: they take in 100k updates to one session far slower than 5,000/s. They get 240 s
        // (12× the 20 s of sending); a peer still behind then is reported as such, and its cold
        // load is not measured (it never stored the session).
        const isPeer = !ctx.target.startsWith('colloquy')
        const { texts, ingestSeconds, complete, disconnects, readerClosed } = await fill(
          ctx,
          server,
          [doc],
          updates,
          5_000,
          S4_INGEST_LIMIT_MS,
          isPeer,
        )
        if (!complete) {
          const seconds = Math.ceil(ingestSeconds)
          rows.push({
            variant,
            updates,
            ingested: false,
            ingestSeconds: readerClosed ? `${seconds}` : `> ${S4_INGEST_LIMIT_MS / 1000}`,
            closed: disconnects,
          })
          ctx.log(
            readerClosed
              ? `  ${variant}: the live reader was closed by the server after ${seconds} s (${disconnects})`
              : `  ${variant}: not all ${updates} updates relayed within ${S4_INGEST_LIMIT_MS / 1000} s${disconnects === '' ? '' : ` (closed by the server: ${disconnects})`}`,
          )
          continue
        }
        let compactMs = Number.NaN
        if (compact) {
          const t0 = performance.now()
          const response = await fetch(`${server.httpUrl}/sessions/${doc}/compact`, {
            method: 'POST',
            signal: AbortSignal.timeout(120_000),
          })
          if (!response.ok) throw new Error(`compact: HTTP ${response.status} ${await response.text()}`)
          compactMs = performance.now() - t0
        }
        // The peers write asynchronously (Hocuspocus after a 2 s debounce, the classic server one
        // put at a time, behind its relay): let them finish, or the restart measures what a kill
        // loses rather than a cold load. (The classic server, stopped 3 s after the ingest, came
        // back with 18 % of the text.)
        const debounceMs = full ? 3_000 : 2_500
        await sleep(debounceMs)
        const idleMs = await waitUntilIdle(server, S4_WRITES_LIMIT_MS)
        const writesDoneSeconds = round((debounceMs + idleMs) / 1000, 1)
        const restarted = await restart(ctx, server, args)
        server = restarted.server
        const target = { url: server.url, framing: server.framing }
        const verified = await ctx.readers.request(
          { type: 'verify', ...target, docs: [doc], texts, timeoutMs: 120_000 },
          'verified',
          180_000,
        )
        rows.push({
          variant,
          updates,
          textKiB: round((texts[0] ?? '').length / 1024, 0),
          ingestSeconds: round(ingestSeconds, 1),
          compactMs: round(compactMs, 0),
          writesDoneSeconds,
          restartMs: round(restarted.restartMs, 0),
          syncMs: round(verified.ms[0] ?? Number.NaN, 1),
          syncBytes: verified.bytes[0] ?? 0,
          ingested: true,
          rssAfterMiB: round(server.rssBytes() / 2 ** 20, 1),
          correct: verified.ok.every(Boolean),
        })
      } finally {
        await server.stop()
      }
    }
    return rows
  },
}

export const S6: Scenario = {
  id: 'S6',
  title: 'reconnect storm: clients reconnect at once after a server restart',
  targets: MAIN,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const sessions = full ? 100 : 20
    const clients = full ? 1000 : 200
    const perSession = 100
    const docs = Array.from({ length: sessions }, (_, i) => `s6-${ctx.seed}-${i}`)
    let server = await ctx.start()
    try {
      const { texts } = await fill(ctx, server, docs, perSession, 200)
      await sleep(3_000)
      const restarted = await restart(ctx, server, [])
      server = restarted.server
      const stormDocs = Array.from({ length: clients }, (_, i) => docs[i % sessions] ?? '')
      const expectedLengths = stormDocs.map((_, i) => (texts[i % sessions] ?? '').length)
      const cpu0 = server.cpuMicros()
      const stormed = await ctx.readers.request(
        { type: 'storm', url: server.url, framing: server.framing, docs: stormDocs, expectedLengths },
        'stormed',
        300_000,
      )
      return [
        {
          clients,
          sessions,
          updatesPerSession: perSession,
          allSyncedMs: round(stormed.ms, 0),
          bytes: stormed.bytes,
          serverCpuMs: round((server.cpuMicros() - cpu0) / 1000, 0),
          failed: stormed.failed,
          correct: stormed.failed === 0 && stormed.mismatched === 0,
        },
      ]
    } finally {
      await server.stop()
    }
  },
}

export const S8: Scenario = {
  id: 'S8',
  title: 'one long answer: an agent streams tokens into one message until it holds 1 MB',
  targets: MAIN,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const maxChars = full ? 1_048_576 : 65_536
    const rate = 3_000
    const quarters = 4
    const doc = `s8-${ctx.seed}`
    const server = await ctx.start()
    // The Y.Doc reader gets a process of its own: its applies grow with the text, and it must not
    // delay the bare readers whose latencies measure the server.
    const ydocProcess = startLoadProcess()
    try {
      const target = { url: server.url, framing: server.framing }
      const epochMs = Date.now()
      await ctx.readers.request(
        { type: 'readers', ...target, docs: [doc], perDoc: 2, epochMs },
        'ready',
        60_000,
      )
      await ydocProcess.request(
        { type: 'ydocReader', ...target, doc, bucketChars: maxChars / quarters },
        'ydocReady',
        60_000,
      )
      // Server CPU sampled while the text grows; the writer's fixed rate maps time to text length.
      const samples: Array<{ t: number; cpu: number }> = []
      const sample = (): void => {
        samples.push({ t: performance.now(), cpu: server.cpuMicros() })
      }
      const t0 = performance.now()
      sample()
      const timer = setInterval(sample, 250)
      const expectedMs = (maxChars / 14 / rate) * 1000
      const written = await ctx.writer.request(
        {
          type: 'write',
          ...target,
          docs: [doc],
          ratePerDoc: rate,
          durationMs: Math.ceil(expectedMs * 2 + 10_000),
          epochMs,
          seed: ctx.seed,
          ackEvery: 0,
          keepText: true,
          maxChars,
        },
        'written',
        expectedMs * 2 + 120_000,
      )
      const sendMs = written.sendSeconds * 1000
      const drained = await ctx.readers.request(
        { type: 'drain', expected: written.sent, timeoutMs: 60_000 },
        'drained',
        120_000,
      )
      sample()
      clearInterval(timer)
      const stats = await ydocProcess.request(
        { type: 'ydocResult', expectedLength: (written.texts[0] ?? '').length, timeoutMs: 300_000 },
        'ydocStats',
        360_000,
      )
      await ctx.readers.request({ type: 'close' }, 'closed', 60_000)
      await ctx.writer.request({ type: 'close' }, 'closed', 60_000)
      const text = written.texts[0] ?? ''
      const tokens = written.sent[0] ?? 0
      const charsPerToken = text.length / Math.max(1, tokens)
      // Server CPU per token in each quarter of the text (samples after the last send count to
      // the last quarter: that is the server catching up).
      const cpu = new Array<number>(quarters).fill(0)
      for (let i = 1; i < samples.length; i++) {
        const a = samples[i - 1]
        const b = samples[i]
        if (!a || !b) continue
        const chars = Math.min(maxChars - 1, ((a.t - t0) / sendMs) * text.length)
        const quarter = Math.min(quarters - 1, Math.floor(chars / (maxChars / quarters)))
        cpu[quarter] = (cpu[quarter] ?? 0) + (b.cpu - a.cpu)
      }
      const tokensPerQuarter = maxChars / quarters / charsPerToken
      const perToken = cpu.map((micros) => micros / tokensPerQuarter)
      const latencies = sortedOf(drained.latencies)
      const first = perToken[0] ?? Number.NaN
      const last = perToken[quarters - 1] ?? Number.NaN
      const readerFirst = stats.applyMicrosPerUpdate[0] ?? Number.NaN
      const readerLast = stats.applyMicrosPerUpdate[quarters - 1] ?? Number.NaN
      return [
        {
          tokens,
          textKiB: round(text.length / 1024, 0),
          sendSeconds: round(written.sendSeconds, 1),
          serverCpuUsPerTokenFirst: round(first, 1),
          serverCpuUsPerTokenLast: round(last, 1),
          serverGrowth: round(last / first, 2),
          readerApplyUsFirst: round(readerFirst, 1),
          readerApplyUsLast: round(readerLast, 1),
          p50Ms: round(percentile(latencies, 50) / 1000, 2),
          p99Ms: round(percentile(latencies, 99) / 1000, 2),
          maxMs: round(percentile(latencies, 100) / 1000, 2),
          correct: drained.complete && stats.text === text,
        },
      ]
    } finally {
      ydocProcess.kill()
      await server.stop()
    }
  },
}
