// `colloquy replay`: the conversation as it grew, turn by turn, from the session's log.

import * as Y from 'yjs'
import { createHistoryClient } from '../../client/history.js'
import { parseCommand, targetOf } from '../../server/history/cli-support.js'
import { readLogFrom, readStateAt } from '../../server/history/state.js'
import { readMessages } from '../../shared/conversation/index.js'
import { ColloquyError } from '../../shared/errors.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy replay <session> [--from N] [--to N] [--json] (--data DIR | --url URL)

Replays the session's log from seq N (default: the first retained entry; earlier history is
started from the state at N-1) and prints each message once it is final (complete, cancelled or
error), as "[seq time] author (role) status: content". --json prints one JSON line per turn.
`

interface Turn {
  readonly seq: number
  readonly time: number
  readonly id: string
  readonly role: string
  readonly author: string
  readonly status: string
  readonly content: string
}

function formatTurn(turn: Turn): string {
  const when = turn.time > 0 ? new Date(turn.time).toISOString() : '-'
  const status = turn.status === 'complete' ? '' : ` [${turn.status}]`
  return `[${turn.seq} ${when}] ${turn.author} (${turn.role})${status}: ${turn.content}\n`
}

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {
      from: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean' },
    })
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const sessionId = positionals[0]
    if (sessionId === undefined) throw new ColloquyError('bad-request', 'missing <session>')
    const number = (raw: string | undefined, flag: string): number | undefined => {
      if (raw === undefined) return undefined
      if (!/^\d+$/.test(raw)) throw new ColloquyError('bad-request', `${flag} must be an integer ≥ 0`)
      return Number(raw)
    }
    const from = number(typeof values.from === 'string' ? values.from : undefined, '--from')
    const to = number(typeof values.to === 'string' ? values.to : undefined, '--to')
    const doc = new Y.Doc()
    const printed = new Map<string, string>()
    const emit = (seq: number, time: number): void => {
      for (const message of readMessages(doc)) {
        if (message.status === 'streaming') continue
        const key = `${message.status}\u0000${message.content}`
        if (printed.get(message.id) === key) continue
        printed.set(message.id, key)
        const turn: Turn = {
          seq,
          time,
          id: message.id,
          role: message.role,
          author: message.author.name ?? message.author.id,
          status: message.status,
          content: message.content,
        }
        process.stdout.write(values.json === true ? `${JSON.stringify(turn)}\n` : formatTurn(turn))
      }
    }
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    if (target.kind === 'remote') {
      const client = createHistoryClient({ baseUrl: target.url, headers: target.headers })
      if (from !== undefined && from > 1) {
        const start = await client.state(sessionId, { seq: from - 1 })
        Y.applyUpdate(doc, start.update)
        emit(start.seq, start.time)
      }
      for await (const entry of client.log(sessionId, {
        ...(from === undefined ? {} : { from }),
        ...(to === undefined ? {} : { to }),
      })) {
        Y.applyUpdate(doc, entry.update)
        emit(entry.seq, entry.time)
      }
    } else {
      await withLocalData(target.dataDir, async (deps) => {
        let start = from
        if (start === undefined) {
          const [first] = await deps.store.readLog(sessionId, { limit: 1 })
          start = first?.seq ?? 1
        }
        if (start > 1) {
          const state = await readStateAt(deps, sessionId, { seq: start - 1 })
          Y.applyUpdate(doc, state.update)
          emit(state.seq, state.time)
        }
        for await (const entry of readLogFrom(deps.store, sessionId, {
          fromSeq: start,
          ...(to === undefined ? {} : { toSeq: to }),
        })) {
          Y.applyUpdate(doc, entry.update)
          emit(entry.seq, entry.time)
        }
      })
    }
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
