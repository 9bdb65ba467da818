// The scenarios [S1]…[S9]: each runs against one target on a fresh server and returns one row of
// metrics with its correctness check. Sizes come from the mode (quick or full).

import { round, sleep } from '../lib/stats.js'
import { TARGETS, type TargetId } from '../lib/targets.js'
import { S4, S6, S8 } from './cold.js'
import { ALL, MAIN, type Row, type Scenario, streamRow, withServer } from './context.js'
import { runFixedRateRow } from './fixed-rate.js'
import { S1H } from './hocuspocus-framing.js'
import { S9 } from './mux.js'
import { runStream } from './stream.js'

export type { Mode, Row, Scenario, ScenarioContext } from './context.js'

const S1: Scenario = {
  id: 'S1',
  title: 'agent streaming at a fixed total rate',
  targets: ALL,
  async run(ctx) {
    return [await runFixedRateRow(ctx, 's1')]
  },
}

/** [S2] backlog bound: more server CPU than this in the settle time means the server fell behind. */
const S2_BACKLOG_CPU_MS = 1_000
/** [S2] a load process at or above this share of one core is itself the bottleneck. */
const S2_GENERATOR_CPU_PCT = 90

const S2: Scenario = {
  id: 'S2',
  title: 'max sustained rate (ramp until p99 > 50 ms, delivery or storage falls behind)',
  targets: ALL,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const rates = full
      ? [
          2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 20000, 24000, 28000, 32000, 36000, 40000, 48000,
          56000, 64000, 72000,
        ]
      : [1000, 4000]
    const rows: Row[] = []
    await withServer(ctx, async (server) => {
      // A step that fails is run once more (one GC pause or a neighbour on the machine can push a
      // 5-second p99 over the line); the ramp stops at the first step that fails twice, or at the
      // first step where the load generator rather than the server is the limit.
      for (const [step, rate] of rates.entries()) {
        let sustained = false
        let generatorLimited = false
        for (let attempt = 1; attempt <= 2 && !sustained && !generatorLimited; attempt++) {
          let result: Awaited<ReturnType<typeof runStream>>
          try {
            result = await runStream(server, ctx.writer, ctx.readers, {
              name: `s2-${step}-${attempt}`,
              sessions: 20,
              readersPerSession: 2,
              totalRate: rate,
              durationMs: full ? 5_000 : 1_500,
              seed: ctx.seed + step,
              ackEvery: 0,
              drainTimeoutMs: 10_000,
              settleMs: full ? 2_500 : 300,
            })
          } catch (error) {
            // Past the first step, a step that errors (e.g. the load generator's connects time out
            // while both cores are busy) is a failed step that ends the ramp, its error recorded:
            // the highest sustained rate is the step before. Not counted as generator-limited (no
            // evidence which side failed); a server that died, or a first step that errors, is an
            // error of the run.
            if (step === 0 || !server.isRunning()) throw error
            const message = String(error).slice(0, 200)
            await ctx.readers.request({ type: 'close' }, 'closed', 30_000).catch(() => undefined)
            rows.push({ step, attempt, offered: rate, sustained: false, stepError: message })
            ctx.log(`  ${rate}/s: the step failed (${message}); ramp ends here`)
            break
          }
          generatorLimited =
            result.sentRate < 0.95 * rate ||
            result.writerCpuPercent >= S2_GENERATOR_CPU_PCT ||
            result.readerCpuPercent >= S2_GENERATOR_CPU_PCT
          // No backlog: every update reached every reader within 1 s of the last send, and the
          // server had less than 1 s of CPU work left once the load stopped (its writes kept up).
          const backlog = result.drainMs > 1_000 || (full && result.afterCpuMs > S2_BACKLOG_CPU_MS)
          sustained = result.correct && result.latencyP99Ms <= 50 && !backlog && !generatorLimited
          rows.push({ step, attempt, ...streamRow(result), backlog, generatorLimited, sustained })
          ctx.log(
            `  ${rate}/s: p99 ${result.latencyP99Ms} ms, drain ${result.drainMs} ms, after-load CPU ${result.afterCpuMs} ms, sustained ${sustained}${generatorLimited ? ' (generator-limited)' : ''}`,
          )
        }
        if (!sustained) break
      }
    })
    return rows
  },
}

const S3: Scenario = {
  id: 'S3',
  title: 'many idle peers: memory per session and per connection',
  targets: MAIN,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const sessions = full ? 1000 : 100
    const perSession = full ? 5 : 3
    const docs = Array.from({ length: sessions }, (_, i) => `s3-${ctx.seed}-${i}`)
    return withServer(ctx, async (server) => {
      const target = { url: server.url, framing: server.framing }
      await sleep(full ? 1_500 : 500)
      const rss0 = server.rssBytes()
      const first = await ctx.readers.request(
        { type: 'idle', ...target, docs, perDoc: 1, batch: 100 },
        'connected',
        300_000,
      )
      await sleep(full ? 2_000 : 500)
      const rss1 = server.rssBytes()
      const more = await ctx.readers.request(
        { type: 'idle', ...target, docs, perDoc: perSession - 1, batch: 100 },
        'connected',
        300_000,
      )
      await sleep(full ? 2_000 : 500)
      const rss2 = server.rssBytes()
      await ctx.readers.request({ type: 'close' }, 'closed', 60_000)
      const extra = sessions * (perSession - 1)
      return [
        {
          sessions,
          connections: sessions * perSession,
          baseRssMiB: round(rss0 / 2 ** 20, 1),
          finalRssMiB: round(rss2 / 2 ** 20, 1),
          kibPerSession: round((rss1 - rss0) / sessions / 1024, 1),
          kibPerExtraConnection: round((rss2 - rss1) / extra / 1024, 1),
          connectMs: round(first.ms + more.ms, 0),
          correct: first.failed === 0 && more.failed === 0,
        },
      ]
    })
  },
}

const S5: Scenario = {
  id: 'S5',
  title: 'reconnect catch-up: a client misses N updates and reconnects (after N updates it saw)',
  targets: MAIN,
  async run(ctx) {
    const full = ctx.mode === 'full'
    const missed = full ? 10_000 : 1_000
    const rate = 2_000
    const doc = `s5-${ctx.seed}`
    return withServer(ctx, async (server) => {
      const target = { url: server.url, framing: server.framing }
      // A live reader stays connected throughout (as another device would), so the session stays
      // in memory and tells us when the server has relayed every update of a phase.
      await ctx.readers.request(
        { type: 'readers', ...target, docs: [doc], perDoc: 1, epochMs: Date.now() },
        'ready',
        60_000,
      )
      let relayed = 0
      const phase = async (seed: number): Promise<number> => {
        const written = await ctx.writer.request(
          {
            type: 'write',
            ...target,
            docs: [doc],
            ratePerDoc: rate,
            durationMs: (missed / rate) * 1000,
            epochMs: Date.now(),
            seed,
            ackEvery: 0,
            keepText: true,
          },
          'written',
          120_000,
        )
        relayed += written.sent[0] ?? 0
        const drained = await ctx.readers.request(
          { type: 'drain', expected: [relayed], timeoutMs: 30_000 },
          'drained',
          60_000,
        )
        if (!drained.complete) throw new Error('live reader did not receive every update')
        await ctx.writer.request({ type: 'close' }, 'closed', 30_000)
        return (written.texts[0] ?? '').length
      }
      // Each phase is a new writer (a new client id), like an agent's next answer.
      const seenLength = await phase(ctx.seed)
      const first = await ctx.readers.request(
        { type: 'catchup', ...target, doc, expectedLength: seenLength },
        'caughtUp',
        60_000,
      )
      const missedLength = await phase(ctx.seed + 1)
      const caught = await ctx.readers.request(
        { type: 'catchup', ...target, doc, expectedLength: seenLength + missedLength },
        'caughtUp',
        60_000,
      )
      const fresh = await ctx.readers.request(
        { type: 'verify', ...target, docs: [doc], texts: [caught.text] },
        'verified',
        60_000,
      )
      await ctx.readers.request({ type: 'close' }, 'closed', 30_000)
      return [
        {
          seenUpdates: missed,
          missedUpdates: missed,
          catchupBytes: caught.bytes,
          catchupMs: round(caught.ms, 1),
          freshClientBytes: fresh.bytes[0] ?? 0,
          freshClientMs: round(fresh.ms[0] ?? Number.NaN, 1),
          correct:
            first.text.length === seenLength &&
            fresh.ok.every(Boolean) &&
            caught.text.length === seenLength + missedLength,
        },
      ]
    })
  },
}

const S7: Scenario = {
  id: 'S7',
  title:
    'durability cost: Colloquy with fsync group commit vs --fsync false (S1 load, acks every 10th update)',
  targets: ['colloquy', 'colloquy-nofsync'],
  async run(ctx) {
    const full = ctx.mode === 'full'
    const result = await withServer(ctx, (server) =>
      runStream(server, ctx.writer, ctx.readers, {
        name: 's7',
        sessions: full ? 20 : 5,
        readersPerSession: 3,
        totalRate: full ? 2000 : 500,
        durationMs: full ? 10_000 : 2_000,
        seed: ctx.seed,
        ackEvery: 10,
        drainTimeoutMs: 10_000,
        settleMs: full ? 2_500 : 500,
      }),
    )
    return [
      {
        ...streamRow(result),
        ackP50Ms: result.ackP50Ms,
        ackP99Ms: result.ackP99Ms,
        acksMissing: result.acksMissing,
        correct: result.correct && result.acksMissing === 0,
      },
    ]
  },
}

export const SCENARIOS: readonly Scenario[] = [S1, S2, S3, S4, S5, S6, S7, S8, S9, S1H]

/** The label of a target for tables. */
export const labelOf = (id: TargetId): string => TARGETS[id].label
