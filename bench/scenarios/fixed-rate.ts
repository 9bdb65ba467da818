// [S1]'s load, shared by [S1] and [S1H]: an agent streaming at a fixed total rate to readers, after
// a discarded warm-up, on a fresh server. Only the framing the server is spoken to in differs.

import type { RunningServer } from '../lib/targets.js'
import { type Row, type ScenarioContext, streamRow, withServer } from './context.js'
import { runStream } from './stream.js'

/**
 * Runs [S1]'s load on a fresh server of `ctx`'s target, spoken to as `serverOf` returns it, and
 * returns its row: sizes, then the stream's metrics.
 *
 * @remarks Full mode runs a 10 s warm-up on other sessions first and discards it (see below why).
 */
export async function runFixedRateRow(
  ctx: ScenarioContext,
  name: string,
  serverOf: (started: RunningServer) => RunningServer = (started) => started,
): Promise<Row> {
  const full = ctx.mode === 'full'
  const options = {
    name,
    sessions: full ? 20 : 5,
    readersPerSession: 3,
    totalRate: full ? 2000 : 500,
    durationMs: full ? 20_000 : 2_000,
    seed: ctx.seed,
    ackEvery: 0,
    drainTimeoutMs: 10_000,
    settleMs: full ? 2_500 : 500,
  }
  const result = await withServer(ctx, async (started) => {
    const server = serverOf(started)
    // Warm-up on other sessions, discarded: the JIT compiles the hot paths and caches fill, so the
    // row reads the steady state of a running server rather than its first seconds (the same for
    // every target; V8's compiler threads alone used ~15% of a cold 10 s run). 10 s, not 3: after
    // 3 s the next 10 s still measured a p99 1.5–2.5× the steady state's for every target, the
    // bare relay too (so the generator's warm-up as much as the server's); after 10 s the first
    // measured run was steady. 20 s measured, as one 10 s run's p99 varied by up to 2×.
    if (full)
      await runStream(server, ctx.writer, ctx.readers, {
        ...options,
        name: `${name}-warmup`,
        durationMs: 10_000,
      })
    return runStream(server, ctx.writer, ctx.readers, options)
  })
  return {
    sessions: options.sessions,
    readers: options.sessions * options.readersPerSession,
    seconds: options.durationMs / 1000,
    ...streamRow(result),
  }
}
