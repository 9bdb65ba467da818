// [S1H] and [S2H]: [S1]'s load (an agent streaming at a fixed total rate to readers) and [S2]'s
// ramp (the highest sustained rate) in Hocuspocus' framing against both servers: Colloquy's
// /hocuspocus endpoint and Hocuspocus itself. Each bare load client is one socket for one document,
// as in [S1] and [S2]; only the framing differs.

import type { RunningServer } from '../lib/targets.js'
import type { Scenario } from './context.js'
import { withServer } from './context.js'
import { runFixedRateRow } from './fixed-rate.js'
import { runRamp } from './ramp.js'

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
    return [{ framing: 'hocuspocus', ...(await runFixedRateRow(ctx, 's1h', inHocuspocusFraming)) }]
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
