// `colloquy compact`: fold a session's log into a checkpoint now, applying retention.

import { createHistoryClient } from '../../client/history.js'
import { compactSession } from '../../server/compaction/compactor.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { parseCommand, targetOf } from '../../server/history/cli-support.js'
import { ColloquyError } from '../../shared/errors.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy compact (<session> | --all) [--seq N] (--data DIR | --url URL)
                       [--retain-log-ms MS] [--retain-checkpoints-ms MS] [--checkpoint-spacing-ms MS]

Writes a checkpoint at seq N (default: the last durable seq) and deletes what retention allows, in
one atomic write. Offline (--data, server stopped) the retention flags apply (defaults as the
server's); through a running server (--url, one session) the server's own retention applies.
`

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {
      all: { type: 'boolean' },
      'retain-log-ms': { type: 'string' },
      'retain-checkpoints-ms': { type: 'string' },
      'checkpoint-spacing-ms': { type: 'string' },
    })
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const number = (raw: string | boolean | undefined, fallback: number, flag: string): number => {
      if (typeof raw !== 'string') return fallback
      if (!/^\d+$/.test(raw)) throw new ColloquyError('bad-request', `${flag} must be an integer ≥ 0`)
      return Number(raw)
    }
    const throughSeq = typeof values.seq === 'string' ? number(values.seq, 0, '--seq') : undefined
    const sessionId = positionals[0]
    if (sessionId === undefined && values.all !== true)
      throw new ColloquyError('bad-request', 'give <session> or --all')
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    if (target.kind === 'remote') {
      if (sessionId === undefined) throw new ColloquyError('bad-request', '--all works offline only (--data)')
      const result = await createHistoryClient({ baseUrl: target.url, headers: target.headers }).compact(
        sessionId,
        throughSeq,
      )
      process.stdout.write(`${JSON.stringify(result)}\n`)
      return 0
    }
    const retention = {
      keepLogMs: number(values['retain-log-ms'], DEFAULT_CONFIG.retainLogMs, '--retain-log-ms'),
      keepCheckpointsMs: number(
        values['retain-checkpoints-ms'],
        DEFAULT_CONFIG.retainCheckpointsMs,
        '--retain-checkpoints-ms',
      ),
      checkpointSpacingMs: number(
        values['checkpoint-spacing-ms'],
        DEFAULT_CONFIG.checkpointSpacingMs,
        '--checkpoint-spacing-ms',
      ),
    }
    await withLocalData(target.dataDir, async ({ store, merger }) => {
      const ids =
        sessionId === undefined ? (await store.listSessions()).map((meta) => meta.sessionId) : [sessionId]
      for (const id of ids) {
        const result = await compactSession(id, {
          store,
          merger,
          retention,
          ...(throughSeq === undefined ? {} : { throughSeq }),
        })
        process.stdout.write(`${JSON.stringify(result ?? { sessionId: id, isCompacted: false })}\n`)
      }
    })
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
