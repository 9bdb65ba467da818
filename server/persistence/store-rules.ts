// The semantics every Store backend shares: input validation, seq ordering, meta arithmetic, ranges.
// Pure functions: the LevelDB and memory stores call these so they cannot drift apart.

import { ColloquyError } from '../../shared/errors.js'
import { assertSessionId, assertUint53 } from './keys.js'
import type {
  AppendEntry,
  Checkpoint,
  CheckpointRange,
  LogRange,
  PutCheckpointOptions,
  SessionMeta,
  StoredSession,
} from './store.js'

/** What `load` returns for a session that has never been written (or was deleted). */
export function emptyStoredSession(): StoredSession {
  return { meta: undefined, checkpoint: undefined, log: [] }
}

/**
 * Validates `entries` and groups them by session, keeping each session's call order.
 *
 * @remarks Throws before anything is written: an invalid session id, an invalid time or a
 * non-`Uint8Array` update.
 */
export function groupAppendEntries(entries: readonly AppendEntry[]): Map<string, AppendEntry[]> {
  const groups = new Map<string, AppendEntry[]>()
  for (const entry of entries) {
    assertSessionId(entry.sessionId)
    assertUint53(entry.time, 'time')
    if (!(entry.update instanceof Uint8Array)) throw new TypeError('update must be a Uint8Array')
    const group = groups.get(entry.sessionId)
    if (group === undefined) groups.set(entry.sessionId, [entry])
    else group.push(entry)
  }
  return groups
}

/**
 * The seqs a dense store gives `entries`, in call order: each session continues from its stored
 * `lastSeq` (0 when new) with +1 per entry.
 *
 * @remarks Why the store and not the caller: the log owns seq assignment, so two writers (two
 * processes in a cluster, or a retry after a crash) can never claim the same seq.
 */
export function assignDenseSeqs(
  entries: readonly AppendEntry[],
  metas: ReadonlyMap<string, SessionMeta | undefined>,
): number[] {
  const next = new Map<string, number>()
  const seqs = new Array<number>(entries.length)
  for (let i = 0; i < entries.length; i++) {
    const sessionId = entries[i]!.sessionId
    const seq = (next.get(sessionId) ?? metas.get(sessionId)?.lastSeq ?? 0) + 1
    assertUint53(seq, 'seq')
    next.set(sessionId, seq)
    seqs[i] = seq
  }
  return seqs
}

/** The meta of a session after `group` (validated, non-empty) was appended to it, the last at `lastSeq`. */
export function metaAfterAppend(
  sessionId: string,
  previous: SessionMeta | undefined,
  group: readonly AppendEntry[],
  lastSeq: number,
): SessionMeta {
  let bytes = 0
  let latestTime = 0
  for (const entry of group) {
    bytes += entry.update.byteLength
    if (entry.time > latestTime) latestTime = entry.time
  }
  const first = group[0]!
  return {
    sessionId,
    lastSeq,
    checkpointSeq: previous?.checkpointSeq ?? 0,
    logCount: (previous?.logCount ?? 0) + group.length,
    logBytes: (previous?.logBytes ?? 0) + bytes,
    checkpointBytes: previous?.checkpointBytes ?? 0,
    createdAt: previous?.createdAt ?? first.time,
    // Why max: a clock that steps back must not make a session look older than it is.
    updatedAt: Math.max(previous?.updatedAt ?? 0, latestTime),
  }
}

/**
 * Validates a checkpoint and its trim options.
 *
 * @remarks Both trim bounds must be at most `checkpoint.seq`: trimming log entries the checkpoint
 * does not cover, or the checkpoint being written, would make the session unloadable.
 */
export function assertCheckpoint(
  sessionId: string,
  checkpoint: Checkpoint,
  options: PutCheckpointOptions,
): void {
  assertSessionId(sessionId)
  assertUint53(checkpoint.seq, 'checkpoint seq')
  assertUint53(checkpoint.time, 'checkpoint time')
  if (!(checkpoint.state instanceof Uint8Array)) throw new TypeError('checkpoint state must be a Uint8Array')
  const { trimLogThrough, trimCheckpointsBefore, deleteCheckpoints } = options
  if (trimLogThrough !== undefined) {
    assertUint53(trimLogThrough, 'trimLogThrough')
    if (trimLogThrough > checkpoint.seq) {
      throw new RangeError(`trimLogThrough ${trimLogThrough} is past the checkpoint's seq ${checkpoint.seq}`)
    }
  }
  if (trimCheckpointsBefore !== undefined) {
    assertUint53(trimCheckpointsBefore, 'trimCheckpointsBefore')
    if (trimCheckpointsBefore > checkpoint.seq) {
      throw new RangeError(
        `trimCheckpointsBefore ${trimCheckpointsBefore} is past the checkpoint's seq ${checkpoint.seq}`,
      )
    }
  }
  for (const seq of deleteCheckpoints ?? []) {
    assertUint53(seq, 'deleteCheckpoints seq')
    if (seq >= checkpoint.seq) {
      throw new RangeError(
        `cannot delete checkpoint ${seq}: not before the checkpoint written (${checkpoint.seq})`,
      )
    }
  }
}

/** Throws `session-exists` for `requireNew` on an existing session, `session-not-found` for `requireExisting` on a missing one. */
export function assertNewIfRequired(
  sessionId: string,
  meta: SessionMeta | undefined,
  options: PutCheckpointOptions,
): void {
  if (options.requireNew === true && meta !== undefined) {
    throw new ColloquyError('session-exists', `session ${sessionId} already exists`)
  }
  if (options.requireExisting === true && meta === undefined) {
    throw new ColloquyError('session-not-found', `session ${sessionId} no longer exists`)
  }
}

/** A validated {@link CheckpointRange}. */
export interface CheckpointWindow {
  readonly fromSeq: number
  readonly toSeq: number
  readonly limit: number
  readonly reverse: boolean
}

/** Validates a checkpoint range; `undefined` when it cannot hold any checkpoint. */
export function normalizeCheckpointRange(range: CheckpointRange | undefined): CheckpointWindow | undefined {
  const window = normalizeLogRange(range)
  if (window === undefined) return undefined
  return { ...window, reverse: range?.reverse === true }
}

/** What a checkpoint's trim removed from the log. */
export interface TrimmedLog {
  readonly count: number
  readonly bytes: number
}

/**
 * The meta of a session after `checkpoint` was written and `trimmed` removed from its log.
 *
 * @remarks `checkpointSeq`/`checkpointBytes` describe the latest checkpoint, which an older one
 * written later does not replace. `lastSeq` rises to the checkpoint's seq when the checkpoint is
 * ahead of the log (an imported snapshot), so later appends come after it.
 */
export function metaAfterCheckpoint(
  sessionId: string,
  previous: SessionMeta | undefined,
  checkpoint: Checkpoint,
  trimmed: TrimmedLog,
): SessionMeta {
  const isLatest = previous === undefined || checkpoint.seq >= previous.checkpointSeq
  return {
    sessionId,
    lastSeq: Math.max(previous?.lastSeq ?? 0, checkpoint.seq),
    checkpointSeq: isLatest ? checkpoint.seq : previous.checkpointSeq,
    logCount: (previous?.logCount ?? 0) - trimmed.count,
    logBytes: (previous?.logBytes ?? 0) - trimmed.bytes,
    checkpointBytes: isLatest ? checkpoint.state.byteLength : previous.checkpointBytes,
    createdAt: previous?.createdAt ?? checkpoint.time,
    updatedAt: Math.max(previous?.updatedAt ?? 0, checkpoint.time),
  }
}

/** A validated {@link LogRange}: inclusive seq bounds and an entry limit (`Infinity` for none). */
export interface SeqWindow {
  readonly fromSeq: number
  readonly toSeq: number
  readonly limit: number
}

/** Validates a log range; `undefined` when it cannot hold any entry. */
export function normalizeLogRange(range: LogRange | undefined): SeqWindow | undefined {
  const fromSeq = range?.fromSeq ?? 0
  const toSeq = range?.toSeq ?? Number.MAX_SAFE_INTEGER
  const limit = range?.limit ?? Number.POSITIVE_INFINITY
  assertUint53(fromSeq, 'fromSeq')
  assertUint53(toSeq, 'toSeq')
  if (limit !== Number.POSITIVE_INFINITY) assertUint53(limit, 'limit')
  if (fromSeq > toSeq || limit === 0) return undefined
  return { fromSeq, toSeq, limit }
}

/** The error every operation of a closed store rejects with. */
export function storeClosedError(): ColloquyError {
  return new ColloquyError('shutting-down', 'the store is closed')
}
