// [S1H] [S1]'s load (an agent streaming at a fixed total rate to readers) in Hocuspocus' framing
// against both servers: Colloquy's /hocuspocus endpoint and Hocuspocus itself. Each bare load
// client is one socket for one document, as in [S1]; only the framing differs.

import type { RunningServer } from '../lib/targets.js'
import type { Scenario } from './context.js'
import { runFixedRateRow } from './fixed-rate.js'

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
