// Reading a session's history: the state at a seq or a time, and the log from a seq, from the
// store's checkpoints and retained log. Read-only; never touches a loaded session.

import * as Y from 'yjs'
import { ColloquyError } from '../../shared/errors.js'
import type { Merger } from '../compaction/merge.js'
import { hasSparseSeqs, type LogEntry, type SessionMeta, type Store } from '../persistence/store.js'

/** What the history functions need. */
export interface HistoryDeps {
  readonly store: Store
  /** Folds checkpoint + log; a worker thread in the server, inline in the offline CLI. */
  readonly merger: Merger
  readonly now?: () => number
  /** True when the session is loaded in this server (import and fork refuse such a target). */
  readonly isLoaded?: (sessionId: string) => boolean
}

/** Which point of history: a seq, a server time (ms), or the latest durable state. */
export type HistoryPoint = { readonly seq: number } | { readonly time: number } | { readonly latest: true }

/** A session's state at one point. */
export interface StateAt {
  readonly sessionId: string
  /** The seq whose state this is. */
  readonly seq: number
  /** Server time of the update at `seq` (of the checkpoint for a checkpoint-only point); 0 for seq 0. */
  readonly time: number
  /** False when `nearest` fell back to the retained checkpoint below the requested point. */
  readonly isExact: boolean
  /** The full state as one Yjs update (v1). */
  readonly update: Uint8Array
}

/** Options of {@link readStateAt}. */
export interface StateAtOptions {
  /**
   * When the requested seq lies where only coarse checkpoints remain, return the nearest retained
   * checkpoint below it (`isExact: false`) instead of failing with `history-trimmed`.
   */
  readonly isNearestAllowed?: boolean
}

const EMPTY_STATE = Y.encodeStateAsUpdate(new Y.Doc())

/** The meta of `sessionId`, or `session-not-found`. */
export async function requireMeta(store: Store, sessionId: string): Promise<SessionMeta> {
  const meta = await store.getMeta(sessionId)
  if (meta === undefined) throw new ColloquyError('session-not-found', `no session ${sessionId}`)
  return meta
}

/** The first seq still in the log (undefined when the log is empty). */
async function firstLogEntry(store: Store, sessionId: string): Promise<LogEntry | undefined> {
  const [first] = await store.readLog(sessionId, { limit: 1 })
  return first
}

/**
 * The highest seq whose update arrived at or before `time`, with that update's time; seq 0 when the
 * session had nothing yet. `isExact` is false when `time` falls where only checkpoints remain (the
 * answer is then the latest retained checkpoint at or before `time`).
 *
 * @remarks A binary search over the retained log (one single-entry range read per step), then, if
 * `time` precedes it, a newest-first walk over the checkpoints below it. Server times follow seq
 * order (a clock stepping back makes the answer approximate, never invalid).
 */
export async function seqAtTime(
  store: Store,
  sessionId: string,
  time: number,
): Promise<{ seq: number; time: number; isExact: boolean }> {
  const meta = await requireMeta(store, sessionId)
  const first = await firstLogEntry(store, sessionId)
  if (first !== undefined && first.time <= time) {
    // Invariant: the entry at `low` has time ≤ `time`; search the last such seq in [low, high].
    let low = first.seq
    let lowTime = first.time
    let high = meta.lastSeq
    while (low < high) {
      const middle = Math.ceil((low + high) / 2)
      const [entry] = await store.readLog(sessionId, { fromSeq: middle, limit: 1 })
      if (entry === undefined || entry.seq > high) {
        high = middle - 1
      } else if (entry.time <= time) {
        low = entry.seq
        lowTime = entry.time
      } else {
        high = middle - 1
      }
    }
    return { seq: low, time: lowTime, isExact: true }
  }
  // Before the retained log: the latest checkpoint at or before `time`. In a sparse log (gaps by
  // design) a checkpoint is exact when nothing after it was trimmed; in a dense one, when it sits
  // right below the first retained entry.
  const isSparse = hasSparseSeqs(store)
  const trimmedThrough = meta.trimmedThrough ?? 0
  const below = first === undefined ? meta.lastSeq : first.seq - 1
  let toSeq = below
  for (;;) {
    const page = await store.listCheckpoints(sessionId, { toSeq, reverse: true, limit: 8 })
    for (const checkpoint of page) {
      if (checkpoint.time <= time) {
        const isExact = isSparse
          ? checkpoint.seq >= trimmedThrough && (first !== undefined || checkpoint.seq === meta.lastSeq)
          : first === undefined
            ? checkpoint.seq === meta.lastSeq
            : checkpoint.seq === below
        return { seq: checkpoint.seq, time: checkpoint.time, isExact }
      }
    }
    const oldest = page[page.length - 1]
    if (page.length < 8 || oldest === undefined || oldest.seq === 0) break
    toSeq = oldest.seq - 1
  }
  // Nothing retained at or before `time`: before the first update (exact) or trimmed away.
  if (first !== undefined && (isSparse ? trimmedThrough === 0 : first.seq === 1)) {
    return { seq: 0, time: 0, isExact: true }
  }
  if (meta.createdAt > time) return { seq: 0, time: 0, isExact: true }
  throw new ColloquyError('history-trimmed', `session ${sessionId} keeps nothing at or before time ${time}`)
}

/**
 * The state of a session at a point of its history, rebuilt from the latest checkpoint at or below
 * it plus the log up to it (folded by `deps.merger`, off the event loop in the server).
 *
 * @remarks Exact for every seq from the retention anchor on (see docs/history.md) and at every
 * retained checkpoint; below the anchor, `history-trimmed` unless `isNearestAllowed`. Reads only
 * durable data: updates still in the group commit are not part of any state returned.
 */
export async function readStateAt(
  deps: HistoryDeps,
  sessionId: string,
  point: HistoryPoint,
  options: StateAtOptions = {},
): Promise<StateAt> {
  const { store } = deps
  const meta = await requireMeta(store, sessionId)
  let seq: number
  if ('seq' in point) {
    seq = point.seq
    if (!Number.isSafeInteger(seq) || seq < 0)
      throw new ColloquyError('bad-request', 'seq must be an integer ≥ 0')
    if (seq > meta.lastSeq) {
      throw new ColloquyError(
        'seq-out-of-range',
        `seq ${seq} is beyond the last seq ${meta.lastSeq} of ${sessionId}`,
      )
    }
  } else if ('time' in point) {
    const found = await seqAtTime(store, sessionId, point.time)
    if (!found.isExact && options.isNearestAllowed !== true) {
      throw new ColloquyError(
        'history-trimmed',
        `time ${point.time} of ${sessionId} falls where only checkpoints remain (nearest: seq ${found.seq}); ask for the nearest`,
      )
    }
    seq = found.seq
  } else {
    seq = meta.lastSeq
  }
  if (seq === 0) return { sessionId, seq: 0, time: 0, isExact: true, update: EMPTY_STATE.slice() }
  const [base] = await store.listCheckpoints(sessionId, { toSeq: seq, reverse: true, limit: 1 })
  const baseSeq = base?.seq ?? 0
  if (base !== undefined && baseSeq === seq) {
    return { sessionId, seq, time: base.time, isExact: true, update: base.state }
  }
  const log = await store.readLog(sessionId, { fromSeq: baseSeq + 1, toSeq: seq })
  const last = log[log.length - 1]
  // Dense: every seq of base+1…seq must be there. Sparse: gaps are by design; the log is whole
  // above the base unless entries above it were trimmed.
  const isWhole = hasSparseSeqs(store)
    ? (meta.trimmedThrough ?? 0) <= baseSeq
    : log.length === seq - baseSeq && log[0]?.seq === baseSeq + 1 && last !== undefined
  if (isWhole) {
    if (last === undefined) {
      // A sparse seq with no entry of its own since the base: the state is the base's.
      const update = base === undefined ? EMPTY_STATE.slice() : base.state
      return { sessionId, seq, time: base?.time ?? 0, isExact: true, update }
    }
    const inputs = base === undefined ? [] : [base.state]
    for (const entry of log) inputs.push(entry.update)
    const update = await deps.merger.merge(inputs)
    return { sessionId, seq, time: last.time, isExact: true, update }
  }
  if (options.isNearestAllowed === true && base !== undefined) {
    return { sessionId, seq: base.seq, time: base.time, isExact: false, update: base.state }
  }
  throw new ColloquyError(
    'history-trimmed',
    `seq ${seq} of ${sessionId} is outside the retained window` +
      (base === undefined ? '' : ` (nearest retained checkpoint: seq ${base.seq})`),
  )
}

/** Options of {@link readLogFrom}. */
export interface LogStreamOptions {
  /** First seq wanted (default: the first retained entry). */
  readonly fromSeq?: number
  /** Last seq wanted (default: the last durable one). */
  readonly toSeq?: number
  /** Entries read from the store per step (default 1000). */
  readonly pageSize?: number
}

/**
 * The log of a session from a seq, page by page, for a consumer that resumes where it stopped.
 *
 * @remarks Refuses (`history-trimmed`) a `fromSeq` whose entries were folded away by retention, so a
 * consumer never silently skips updates: it must restart from a state (`readStateAt`) instead.
 * Entries committed while the stream runs are included up to `toSeq` (default: none after the
 * call's last durable seq).
 */
export async function* readLogFrom(
  store: Store,
  sessionId: string,
  options: LogStreamOptions = {},
): AsyncGenerator<LogEntry> {
  const meta = await requireMeta(store, sessionId)
  const first = await firstLogEntry(store, sessionId)
  const toSeq = Math.min(options.toSeq ?? meta.lastSeq, meta.lastSeq)
  let fromSeq = options.fromSeq ?? first?.seq ?? meta.lastSeq + 1
  if (fromSeq < 1) fromSeq = 1
  // Dense: everything below the first retained seq was trimmed. Sparse: what was trimmed is
  // exactly what lies at or below `trimmedThrough` (the gap up to the first entry holds nothing).
  const firstRetained = hasSparseSeqs(store)
    ? (meta.trimmedThrough ?? 0) + 1
    : (first?.seq ?? meta.lastSeq + 1)
  if (fromSeq < firstRetained && fromSeq <= toSeq) {
    throw new ColloquyError(
      'history-trimmed',
      `the log of ${sessionId} starts at seq ${firstRetained}; entries before it were folded into checkpoints (read the state at seq ${firstRetained - 1} instead)`,
    )
  }
  const pageSize = options.pageSize ?? 1000
  while (fromSeq <= toSeq) {
    const page = await store.readLog(sessionId, { fromSeq, toSeq, limit: pageSize })
    for (const entry of page) yield entry
    const last = page[page.length - 1]
    if (last === undefined || page.length < pageSize) return
    fromSeq = last.seq + 1
  }
}
