// `colloquy inspect`: every session's meta, or one session's meta, retained log and checkpoints.

import { createHistoryClient } from '../../client/history.js'
import { parseCommand, targetOf } from '../../server/history/cli-support.js'
import { requireMeta } from '../../server/history/state.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy inspect [<session>] (--data DIR | --url URL)

Without <session>: one JSON line per stored session (its meta). With <session>: its meta, the first
retained log seq and every retained checkpoint (seq, time, bytes).
`

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {})
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const sessionId = positionals[0]
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    if (target.kind === 'remote') {
      if (sessionId === undefined) {
        const sessions = await createHistoryClient({
          baseUrl: target.url,
          headers: target.headers,
        }).listSessions()
        for (const meta of sessions) process.stdout.write(`${JSON.stringify(meta)}\n`)
      } else {
        process.stdout.write(
          `${JSON.stringify(await createHistoryClient({ baseUrl: target.url, headers: target.headers }).session(sessionId), null, 2)}\n`,
        )
      }
      return 0
    }
    await withLocalData(target.dataDir, async ({ store }) => {
      if (sessionId === undefined) {
        for (const meta of await store.listSessions()) process.stdout.write(`${JSON.stringify(meta)}\n`)
        return
      }
      const meta = await requireMeta(store, sessionId)
      const [first] = await store.readLog(sessionId, { limit: 1 })
      const checkpoints = (await store.listCheckpoints(sessionId)).map((cp) => ({
        seq: cp.seq,
        time: cp.time,
        bytes: cp.state.byteLength,
      }))
      process.stdout.write(
        `${JSON.stringify({ ...meta, firstLogSeq: first?.seq ?? null, checkpoints }, null, 2)}\n`,
      )
    })
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
