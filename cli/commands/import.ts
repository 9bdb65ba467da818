// `colloquy import`: a new session from a Yjs update or conversation JSON file, or every document
// of a classic y-leveldb directory (YPERSISTENCE of the y-websocket server) as sessions.

import { readFile } from 'node:fs/promises'
import { createHistoryClient } from '../../client/history.js'
import { parseCommand, targetOf } from '../../server/history/cli-support.js'
import { importConversation, importState } from '../../server/history/snapshots.js'
import { importYLeveldbDirectory } from '../../server/history/yleveldb-import.js'
import { ColloquyError } from '../../shared/errors.js'
import { parseConversationExport } from '../../shared/export/conversation-export.js'
import { reportError, withLocalData } from '../command-support.js'

export const usage = `Usage: colloquy import <session> <file> [--format yjs|json] (--data DIR | --url URL)
       colloquy import --yleveldb <dir> [--prefix P] --data DIR

Creates <session> from <file> (a Yjs update or a conversation JSON export; by default JSON when the
file name ends in .json). Refused if the session exists. With --yleveldb, every document of a
y-leveldb directory written by the classic y-websocket server becomes a session named P + its
name (offline only: both directories must be closed).
`

export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let remoteUrl: string | undefined
  try {
    const { values, positionals } = parseCommand(argv, {
      format: { type: 'string' },
      yleveldb: { type: 'string' },
      prefix: { type: 'string' },
    })
    if (values.help === true) {
      process.stdout.write(usage)
      return 0
    }
    const target = targetOf(values, env)
    if (target.kind === 'remote') remoteUrl = target.url
    if (typeof values.yleveldb === 'string') {
      if (target.kind !== 'local')
        throw new ColloquyError('bad-request', '--yleveldb needs --data (offline import)')
      const directory = values.yleveldb
      const results = await withLocalData(
        target.dataDir,
        (deps) =>
          importYLeveldbDirectory(deps, directory, {
            ...(typeof values.prefix === 'string' ? { sessionPrefix: values.prefix } : {}),
            onDocument: (result) =>
              process.stdout.write(
                result.error === undefined
                  ? `imported ${result.docName} → ${result.sessionId} (${result.updates} updates, ${result.stateBytes} bytes)\n`
                  : `skipped ${result.docName}: ${result.error.code}: ${result.error.message}\n`,
              ),
          }),
        { isCreating: true },
      )
      return results.some((result) => result.error !== undefined) ? 1 : 0
    }
    const [sessionId, file] = positionals
    if (sessionId === undefined || file === undefined)
      throw new ColloquyError('bad-request', 'missing <session> <file>')
    const bytes = new Uint8Array(await readFile(file))
    const isJson = (values.format ?? (file.endsWith('.json') ? 'json' : 'yjs')) === 'json'
    const json = isJson ? parseConversationExport(JSON.parse(Buffer.from(bytes).toString('utf8'))) : undefined
    let created: unknown
    if (target.kind === 'remote') {
      created = await createHistoryClient({ baseUrl: target.url, headers: target.headers }).importSession(
        sessionId,
        json ?? bytes,
      )
    } else {
      created = await withLocalData(
        target.dataDir,
        (deps) =>
          json === undefined
            ? importState(deps, sessionId, bytes)
            : importConversation(deps, sessionId, json),
        { isCreating: true },
      )
    }
    process.stdout.write(`${JSON.stringify(created)}\n`)
    return 0
  } catch (error) {
    return reportError(error, usage, remoteUrl)
  }
}
