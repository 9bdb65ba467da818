// `colloquy fork`: a new session holding another session's state at a seq or time.

import { createHistoryClient } from '../../client/history.js'
import { parseCommand, pointFromFlags, targetOf } from '../../server/history/cli-support.js'
import { forkSession } from '../../server/history/snapshots.js'
import { ColloquyError } from '../../shared/errors.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy fork <session> <new-session> [--seq N | --time T] (--data DIR | --url URL)

Creates <new-session> from the state of <session> at seq N or time T (default: latest). Refused
if <new-session> exists or the point lies outside the retained window.
`

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {})
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const [sessionId, targetId] = positionals
    if (sessionId === undefined || targetId === undefined)
      throw new ColloquyError('bad-request', 'missing <session> <new-session>')
    const point = pointFromFlags(values)
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    const created =
      target.kind === 'remote'
        ? await createHistoryClient({ baseUrl: target.url, headers: target.headers }).fork(
            sessionId,
            targetId,
            'latest' in point ? undefined : point,
          )
        : await withLocalData(target.dataDir, (deps) => forkSession(deps, sessionId, targetId, point))
    process.stdout.write(`${JSON.stringify(created)}\n`)
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
