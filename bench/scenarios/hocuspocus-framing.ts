// [S1H] and [S2H]: [S1]'s load (an agent streaming at a fixed total rate to readers) and [S2]'s
// ramp (the highest sustained rate) in Hocuspocus' framing against both servers: Colloquy's
// /hocuspocus endpoint and Hocuspocus itself. Each bare load client is one socket for one document,
// as in [S1] and [S2]; only the framing differs.

import type { RunningServer } from '../lib/targets.js'
import type { Scenario } from './context.js'
import { streamRow, withServer } from './context.js'
import { runRamp } from './ramp.js'
import { runStream } from './stream.js'

/** The target as a Hocuspocus-protocol server: Colloquy on its /hocuspocus path, Hocuspocus as is. */
function inHocuspocusFraming(server: RunningServer): RunningServer {
  if (server.framing === 'hocuspocus') return server
  return { ...server, url: `${server.url}/hocuspocus`, framing: 'hocuspocus' }
}

export const S1H: Scenario = {
  id: 'S1H',
  title: '[S1] in Hocuspocus framing: agent streaming at a fixed total rate, against both servers',
  targets: ['colloquy', 'hocuspocus'],
  async run(ctx) {
    const full = ctx.mode === 'full'
    const options = {
      name: 's1h',
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
      const server = inHocuspocusFraming(started)
      // The same discarded warm-up as [S1] (see there why).
      if (full)
        await runStream(server, ctx.writer, ctx.readers, {
          ...options,
          name: 's1h-warmup',
          durationMs: 10_000,
        })
      return runStream(server, ctx.writer, ctx.readers, options)
    })
    return [
      {
        framing: 'hocuspocus',
        sessions: options.sessions,
        readers: options.sessions * options.readersPerSession,
        seconds: options.durationMs / 1000,
        ...streamRow(result),
      },
    ]
  },
}

/**
 * [S2H]: [S2]'s ramp, every bare client speaking the Hocuspocus protocol. Rows are [S2]'s (one per
 * attempt), marked with their framing.
 */
export const S2H: Scenario = {
  id: 'S2H',
  title:
    '[S2] in Hocuspocus framing: max sustained rate (ramp until p99 > 50 ms or a backlog), against both servers',
  targets: ['colloquy', 'hocuspocus'],
  async run(ctx) {
    const rows = await withServer(ctx, (started) => runRamp(ctx, inHocuspocusFraming(started), 's2h'))
    return rows.map((row) => ({ framing: 'hocuspocus', ...row }))
  },
}
