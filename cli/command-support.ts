// What the history commands say when something outside them is wrong: a data directory that holds
// no Colloquy data (reading never creates one), a directory a running server holds, a server that
// cannot be reached or that refuses the token. Wraps server/history/cli-support.ts; no I/O of its own
// beyond a stat of the data directory.

import { stat } from 'node:fs/promises'
import path from 'node:path'
import { HistoryError } from '../client/history.js'
import { reportCommandError, withLocalHistory } from '../server/history/cli-support.js'
import type { HistoryDeps } from '../server/history/state.js'

/** An error the CLI explains in one line (exit code 1, no usage). */
export class CommandError extends Error {
  override readonly name = 'CommandError'
}

/** True when `dir` holds a LevelDB database (its `CURRENT` file), without creating anything. */
async function hasLeveldb(dir: string): Promise<boolean> {
  try {
    return (await stat(path.join(dir, 'CURRENT'))).isFile()
  } catch {
    return false
  }
}

/** True for the error LevelDB gives when another process holds the directory's lock. */
function isLockedError(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code
    if (code === 'LEVEL_LOCKED' || /\block\b.*(temporarily unavailable|already held)/i.test(e.message))
      return true
  }
  return false
}

/**
 * Runs `action` on the Colloquy data in `dataDir` (offline), like `withLocalHistory`, but never
 * creates a directory unless `isCreating` (import): a reading command on a path without data fails
 * with "no Colloquy data at PATH", and one on a directory a running server holds says so.
 */
export async function withLocalData<T>(
  dataDir: string,
  action: (deps: HistoryDeps) => Promise<T>,
  options: { readonly isCreating?: boolean } = {},
): Promise<T> {
  const location = path.resolve(dataDir)
  if (options.isCreating !== true && !(await hasLeveldb(location)))
    throw new CommandError(`no Colloquy data at ${location}`)
  try {
    return await withLocalHistory(location, action)
  } catch (error) {
    if (isLockedError(error)) {
      throw new CommandError(
        `${location} is held by a running Colloquy server (LevelDB allows one process): ` +
          'stop the server, or ask it instead with --url http://HOST:PORT',
      )
    }
    throw error
  }
}

/** What a failed request to `url` means, or undefined when it is not a network failure. */
function unreachable(error: unknown, url: string): string | undefined {
  if (!(error instanceof TypeError)) return undefined
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined
  const http = url.replace(/^ws(s?):\/\//, 'http$1://')
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host not found',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
  }
  const code = typeof cause?.code === 'string' ? cause.code : undefined
  if (code !== undefined) return `cannot reach ${http} (${reasons[code] ?? code})`
  if (error.message === 'fetch failed')
    return `cannot reach ${http} (${typeof cause?.message === 'string' ? cause.message : 'network error'})`
  return undefined
}

/** Meanings of the HTTP statuses a person can act on. */
const STATUS_MEANING: Readonly<Record<number, string>> = {
  401: 'token rejected',
  403: 'token rejected',
  429: 'too many requests, refused by the server',
}

/**
 * Prints `error` as every history command does and returns the exit code: 2 for a usage mistake,
 * 1 for the rest, with network failures and refused tokens said in words (`cannot reach
 * http://127.0.0.1:9 (connection refused)`, `token rejected (401): …`).
 */
export function reportError(error: unknown, usage: string, url?: string): number {
  if (error instanceof CommandError) {
    process.stderr.write(`colloquy: ${error.message}\n`)
    return 1
  }
  const network = url === undefined ? undefined : unreachable(error, url)
  if (network !== undefined) {
    process.stderr.write(`colloquy: ${network}\n`)
    return 1
  }
  if (error instanceof HistoryError) {
    const meaning =
      STATUS_MEANING[error.status] ?? (error.code === 'invalid-session-id' ? 'session id refused' : undefined)
    if (meaning !== undefined) {
      process.stderr.write(`colloquy: ${meaning} (${error.status}): ${error.message}\n`)
      return 1
    }
  }
  return reportCommandError(error, usage)
}
