// The scenarios [S1]…[S9], [S1H] and [S2H]: each runs against one target on a fresh server and
// returns rows of metrics with their correctness check. Sizes come from the mode (quick or full).

import { round, sleep } from '../lib/stats.js'
import { TARGETS, type TargetId } from '../lib/targets.js'
import { S4, S6, S8 } from './cold.js'
import { ALL, MAIN, type Scenario, streamRow, withServer } from './context.js'
import { runFixedRateRow } from './fixed-rate.js'
import { S1H, S2H } from './hocuspocus-framing.js'
import { S9 } from './mux.js'
import { runRamp } from './ramp.js'
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

// The ramp itself (steps, retries, what "sustained" means) is in ramp.ts, shared with [S2H].
const S2: Scenario = {
  id: 'S2',
  title: 'max sustained rate (ramp until p99 > 50 ms, delivery or storage falls behind)',
  targets: ALL,
  run: (ctx) => withServer(ctx, (server) => runRamp(ctx, server, 's2')),
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

export const SCENARIOS: readonly Scenario[] = [S1, S2, S3, S4, S5, S6, S7, S8, S9, S1H, S2H]

/** The label of a target for tables. */
export const labelOf = (id: TargetId): string => TARGETS[id].label
