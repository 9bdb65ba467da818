// What the history commands of the CLI share: argument parsing of a point of history, and opening
// a LevelDB directory for offline use (the server must be stopped: LevelDB allows one process).

import path from 'node:path'
import { parseArgs } from 'node:util'
import { ColloquyError } from '../../shared/errors.js'
import { createInlineMerger } from '../compaction/merge.js'
import { openLeveldbStore } from '../persistence/leveldb-store.js'
import type { HistoryDeps, HistoryPoint } from './state.js'

/** Flags every history command accepts. */
export const COMMON_FLAGS = {
  data: { type: 'string' },
  url: { type: 'string' },
  token: { type: 'string' },
  seq: { type: 'string' },
  time: { type: 'string' },
  nearest: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

/** Parses argv with {@link COMMON_FLAGS} plus `extra`; throws `bad-request` on unknown flags. */
export function parseCommand<E extends NonNullable<Parameters<typeof parseArgs>[0]>['options']>(
  argv: readonly string[],
  extra: E,
) {
  try {
    return parseArgs({
      args: [...argv],
      options: { ...COMMON_FLAGS, ...extra },
      allowPositionals: true,
      strict: true,
    })
  } catch (error) {
    throw new ColloquyError('bad-request', error instanceof Error ? error.message : String(error))
  }
}

/** `--seq N`, `--time <ms | ISO 8601>`, or the latest state. */
export function pointFromFlags(values: {
  seq?: string | boolean | undefined
  time?: string | boolean | undefined
}): HistoryPoint {
  if (typeof values.seq === 'string') {
    if (!/^\d+$/.test(values.seq)) throw new ColloquyError('bad-request', '--seq must be an integer ≥ 0')
    return { seq: Number(values.seq) }
  }
  if (typeof values.time === 'string') {
    const ms = /^\d+$/.test(values.time) ? Number(values.time) : Date.parse(values.time)
    if (!Number.isFinite(ms))
      throw new ColloquyError('bad-request', '--time must be ms since the epoch or ISO 8601')
    return { time: ms }
  }
  return { latest: true }
}

/** Runs `action` on the LevelDB directory `dataDir` (offline), closing the store afterwards. */
export async function withLocalHistory<T>(
  dataDir: string,
  action: (deps: HistoryDeps) => Promise<T>,
): Promise<T> {
  const store = await openLeveldbStore({ location: path.resolve(dataDir) })
  const merger = createInlineMerger()
  try {
    return await action({ store, merger })
  } finally {
    await merger.close()
    await store.close()
  }
}

/** Which side a command talks to: a data directory (offline) or a running server's HTTP API. */
export function targetOf(
  values: {
    data?: string | boolean | undefined
    url?: string | boolean | undefined
    token?: string | boolean | undefined
  },
  env: NodeJS.ProcessEnv,
): { kind: 'local'; dataDir: string } | { kind: 'remote'; url: string; headers: Record<string, string> } {
  // A server with a secret wants a token (`--token` or COLLOQUY_TOKEN) with the read or admin role.
  const token = typeof values.token === 'string' ? values.token : env.COLLOQUY_TOKEN
  const headers: Record<string, string> =
    token === undefined || token === '' ? {} : { authorization: `Bearer ${token}` }
  if (typeof values.url === 'string') return { kind: 'remote', url: values.url, headers }
  if (typeof values.data === 'string') return { kind: 'local', dataDir: values.data }
  if (env.COLLOQUY_URL !== undefined && env.COLLOQUY_URL !== '')
    return { kind: 'remote', url: env.COLLOQUY_URL, headers }
  if (env.DATA_DIR !== undefined && env.DATA_DIR !== '') return { kind: 'local', dataDir: env.DATA_DIR }
  throw new ColloquyError(
    'bad-request',
    'give --data <dir> (server stopped) or --url <http://host:port> (server running)',
  )
}

/** Prints an error the way every history command does and returns the exit code. */
export function reportCommandError(error: unknown, usage: string): number {
  const code = error instanceof ColloquyError ? error.code : (error as { code?: unknown }).code
  const message = error instanceof Error ? error.message : String(error)
  process.stderr.write(`colloquy: ${message}${code === 'bad-request' ? `\n\n${usage}` : ''}\n`)
  return code === 'bad-request' ? 2 : 1
}
