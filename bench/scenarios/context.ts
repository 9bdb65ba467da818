// What every scenario gets and returns, and helpers they share.

import type { RunningServer, TargetId } from '../lib/targets.js'
import type { LoadProcess } from '../load/pool.js'
import type { StreamResult } from './stream.js'

export type Mode = 'quick' | 'full'

export interface ScenarioContext {
  readonly target: TargetId
  readonly mode: Mode
  readonly seed: number
  /** Starts the target on a fresh data dir (or the same one when `reuseData`). */
  start(options?: { reuseData?: boolean; args?: readonly string[] }): Promise<RunningServer>
  readonly writer: LoadProcess
  readonly readers: LoadProcess
  log(message: string): void
}

export type Row = Record<string, string | number | boolean>

export interface Scenario {
  readonly id: string
  readonly title: string
  readonly targets: readonly TargetId[]
  run(ctx: ScenarioContext): Promise<Row[]>
}

export const ALL: readonly TargetId[] = [
  'colloquy',
  'colloquy-nofsync',
  'classic',
  'classic-memory',
  'hocuspocus',
  'floor',
]
export const MAIN: readonly TargetId[] = ['colloquy', 'classic', 'hocuspocus']

export function streamRow(result: StreamResult): Row {
  return {
    offered: result.offeredRate,
    sent: result.sentRate,
    delivered: result.deliveredRate,
    p50Ms: result.latencyP50Ms,
    p99Ms: result.latencyP99Ms,
    maxMs: result.latencyMaxMs,
    drainMs: result.drainMs,
    cpuUsPerUpdate: result.serverCpuMicrosPerUpdate,
    serverCpuPct: result.serverCpuPercent,
    afterCpuMs: result.afterCpuMs,
    writerCpuPct: result.writerCpuPercent,
    readerCpuPct: result.readerCpuPercent,
    // Only when it happened: a column of zeros in every table would say nothing.
    ...(result.disconnects > 0 ? { closedByServer: result.disconnects } : {}),
    correct: result.correct,
  }
}

export async function withServer<T>(
  ctx: ScenarioContext,
  body: (server: RunningServer) => Promise<T>,
): Promise<T> {
  const server = await ctx.start()
  try {
    return await body(server)
  } finally {
    await server.stop()
  }
}
