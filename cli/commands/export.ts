// `colloquy export`: a session's state at a seq or time, as a Yjs update or the conversation JSON.

import { writeFile } from 'node:fs/promises'
import { createHistoryClient } from '../../client/history.js'
import { parseCommand, pointFromFlags, targetOf } from '../../server/history/cli-support.js'
import { conversationOfState } from '../../server/history/snapshots.js'
import { readStateAt } from '../../server/history/state.js'
import { ColloquyError } from '../../shared/errors.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy export <session> [--seq N | --time T] [--format yjs|json] [--out FILE]
                      (--data DIR | --url URL) [--nearest]

Writes the session's state at seq N or time T (ms or ISO 8601; default: latest) as a Yjs update
(--format yjs, default) or as the versioned conversation JSON (--format json) to FILE or stdout.
--data reads a LevelDB directory directly (server stopped); --url asks a running server.
--nearest accepts the nearest retained checkpoint when the point was folded away.
`

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {
      format: { type: 'string' },
      out: { type: 'string' },
    })
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const sessionId = positionals[0]
    if (sessionId === undefined) throw new ColloquyError('bad-request', 'missing <session>')
    const format = values.format ?? 'yjs'
    if (format !== 'yjs' && format !== 'json')
      throw new ColloquyError('bad-request', '--format must be yjs or json')
    const point = pointFromFlags(values)
    const nearest = values.nearest === true
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    let output: Uint8Array | string
    if (target.kind === 'remote') {
      const client = createHistoryClient({ baseUrl: target.url, headers: target.headers })
      const at = 'latest' in point ? undefined : point
      output =
        format === 'json'
          ? `${JSON.stringify(await client.conversation(sessionId, at, { nearest }), null, 2)}\n`
          : (await client.state(sessionId, at, { nearest })).update
    } else {
      output = await withLocalData(target.dataDir, async (deps) => {
        const state = await readStateAt(deps, sessionId, point, { isNearestAllowed: nearest })
        return format === 'json'
          ? `${JSON.stringify(conversationOfState(state, Date.now()), null, 2)}\n`
          : state.update
      })
    }
    if (typeof values.out === 'string') await writeFile(values.out, output)
    else process.stdout.write(output)
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
