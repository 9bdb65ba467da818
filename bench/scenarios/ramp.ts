// The max-sustained-rate ramp shared by [S2] (y-websocket framing) and [S2H] (Hocuspocus framing):
// streaming steps of rising total rate against one running server, until a step is not sustained
// (p99 > 50 ms, a backlog, or the load generator is the limit).

import type { RunningServer } from '../lib/targets.js'
import type { Row, ScenarioContext } from './context.js'
import { streamRow } from './context.js'
import { runStream } from './stream.js'

/** Backlog bound: more server CPU than this in the settle time means the server fell behind. */
export const RAMP_BACKLOG_CPU_MS = 1_000
/** A load process at or above this share of one core is itself the bottleneck. */
export const RAMP_GENERATOR_CPU_PCT = 90
/** A step is sustained only with a p99 writer→reader latency at or below this. */
export const RAMP_P99_LIMIT_MS = 50

/** The offered total rates, updates/s, one step each, per mode. */
export const RAMP_RATES = {
  full: [
    2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 20000, 24000, 28000, 32000, 36000, 40000, 48000,
    56000, 64000, 72000,
  ],
  quick: [1000, 4000],
} as const

/**
 * Runs the ramp against `server` (already started, in the framing its load clients should speak)
 * and returns one row per attempt. `name` prefixes the load runs' names (e.g. `s2`, `s2h`).
 */
export async function runRamp(ctx: ScenarioContext, server: RunningServer, name: string): Promise<Row[]> {
  const full = ctx.mode === 'full'
  const rows: Row[] = []
  // A step that fails is run once more (one GC pause or a neighbour on the machine can push a
  // 5-second p99 over the line); the ramp stops at the first step that fails twice, or at the
  // first step where the load generator rather than the server is the limit.
  for (const [step, rate] of RAMP_RATES[ctx.mode].entries()) {
    let sustained = false
    let generatorLimited = false
    for (let attempt = 1; attempt <= 2 && !sustained && !generatorLimited; attempt++) {
      let result: Awaited<ReturnType<typeof runStream>>
      try {
        result = await runStream(server, ctx.writer, ctx.readers, {
          name: `${name}-${step}-${attempt}`,
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
        return rows
      }
      generatorLimited =
        result.sentRate < 0.95 * rate ||
        result.writerCpuPercent >= RAMP_GENERATOR_CPU_PCT ||
        result.readerCpuPercent >= RAMP_GENERATOR_CPU_PCT
      // No backlog: every update reached every reader within 1 s of the last send, and the
      // server had less than 1 s of CPU work left once the load stopped (its writes kept up).
      const backlog = result.drainMs > 1_000 || (full && result.afterCpuMs > RAMP_BACKLOG_CPU_MS)
      sustained = result.correct && result.latencyP99Ms <= RAMP_P99_LIMIT_MS && !backlog && !generatorLimited
      rows.push({ step, attempt, ...streamRow(result), backlog, generatorLimited, sustained })
      ctx.log(
        `  ${rate}/s: p99 ${result.latencyP99Ms} ms, drain ${result.drainMs} ms, after-load CPU ${result.afterCpuMs} ms, sustained ${sustained}${generatorLimited ? ' (generator-limited)' : ''}`,
      )
    }
    if (!sustained) break
  }
  return rows
}
