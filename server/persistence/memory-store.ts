// The in-memory Store: the LevelDB store's semantics without a disk, for unit tests and `--store memory`.
// Owns plain maps of copied bytes; shares every rule with the LevelDB store through store-rules.ts.

import { assertSessionId, compareKeys } from './keys.js'
import type { Checkpoint, CheckpointRange, LogEntry, SessionMeta, Store, StoredSession } from './store.js'
import {
  assertCheckpoint,
  assertNewIfRequired,
  assignDenseSeqs,
  emptyStoredSession,
  groupAppendEntries,
  metaAfterAppend,
  metaAfterCheckpoint,
  normalizeCheckpointRange,
  normalizeLogRange,
  storeClosedError,
} from './store-rules.js'

/** Options of {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Number each session's entries `lastSeq + seqStep` instead of `+ 1` (default 1): a sparse log
   * (`seqs: 'sparse'`, with `trimmedThrough` in the meta), as a cluster store numbers them, for
   * testing readers against gaps without a cluster.
   */
  readonly seqStep?: number
}

interface MemorySession {
  meta: SessionMeta
  /** The highest trimLogThrough applied (reported in the meta of a sparse store). */
  trimmedThrough: number
  /** In seq order (appends only ever add higher seqs). */
  log: LogEntry[]
  /** In seq order. */
  checkpoints: Checkpoint[]
}

/**
 * Creates an empty in-memory store.
 *
 * @remarks Every operation validates, then applies all of its changes synchronously, so it is
 * atomic exactly like a LevelDB batch; bytes are copied in and out so neither side can change the
 * other's data.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const sessions = new Map<string, MemorySession>()
  /** Records beside the sessions, keyed by their bytes as latin1 (one char per byte, same order). */
  const records = new Map<string, Uint8Array>()
  let isClosed = false
  const seqStep = options.seqStep ?? 1
  const isSparse = seqStep !== 1

  /**
   * The meta as reported: a sparse store also says how far its log was trimmed, and counts the
   * entries above the latest checkpoint (as the cluster store does; see SessionMeta).
   */
  function reported(session: MemorySession): SessionMeta {
    if (!isSparse) return session.meta
    const since = { count: 0, bytes: 0 }
    for (const entry of session.log) {
      if (entry.seq <= session.meta.checkpointSeq) continue
      since.count++
      since.bytes += entry.update.byteLength
    }
    return { ...session.meta, trimmedThrough: session.trimmedThrough, sinceCheckpoint: since }
  }

  function assertOpen(): void {
    if (isClosed) throw storeClosedError()
  }

  /** The stored checkpoints of `sessionId` in `range`, in its order and limit (not copied). */
  function checkpointsIn(sessionId: string, range: CheckpointRange | undefined): Checkpoint[] {
    assertOpen()
    assertSessionId(sessionId)
    const window = normalizeCheckpointRange(range)
    const checkpoints = sessions.get(sessionId)?.checkpoints
    if (window === undefined || checkpoints === undefined) return []
    const inRange = checkpoints.filter((kept) => kept.seq >= window.fromSeq && kept.seq <= window.toSeq)
    if (window.reverse) inRange.reverse()
    return inRange.slice(0, window.limit)
  }

  return {
    seqs: isSparse ? 'sparse' : 'dense',

    async append(entries) {
      assertOpen()
      // Validate every entry before changing anything: a rejected append leaves nothing behind.
      const groups = groupAppendEntries(entries)
      const metas = new Map<string, SessionMeta | undefined>()
      for (const sessionId of groups.keys()) metas.set(sessionId, sessions.get(sessionId)?.meta)
      const seqs = assignDenseSeqs(entries, metas)
      if (isSparse) {
        // lastSeq + step, + 2 × step, … per session: the dense numbering spread out.
        const next = new Map<string, number>()
        entries.forEach((entry, i) => {
          const seq = (next.get(entry.sessionId) ?? metas.get(entry.sessionId)?.lastSeq ?? 0) + seqStep
          next.set(entry.sessionId, seq)
          seqs[i] = seq
        })
      }
      const added = new Map<string, LogEntry[]>()
      entries.forEach((entry, i) => {
        const log = added.get(entry.sessionId) ?? []
        log.push({ seq: seqs[i]!, time: entry.time, update: entry.update.slice() })
        added.set(entry.sessionId, log)
      })
      for (const [sessionId, group] of groups) {
        const session = sessions.get(sessionId)
        const log = added.get(sessionId)!
        const meta = metaAfterAppend(sessionId, session?.meta, group, log[log.length - 1]!.seq)
        if (session === undefined) sessions.set(sessionId, { meta, log, checkpoints: [], trimmedThrough: 0 })
        else {
          session.meta = meta
          session.log.push(...log)
        }
      }
      return seqs
    },

    async load(sessionId) {
      assertOpen()
      assertSessionId(sessionId)
      const session = sessions.get(sessionId)
      if (session === undefined) return emptyStoredSession()
      const latest = session.checkpoints[session.checkpoints.length - 1]
      const afterSeq = latest?.seq ?? 0
      const log = session.log.slice(firstIndexAfter(session.log, afterSeq)).map(copyEntry)
      const stored: StoredSession = {
        meta: reported(session),
        checkpoint: latest === undefined ? undefined : copyCheckpoint(latest),
        log,
      }
      return stored
    },

    async readLog(sessionId, range) {
      assertOpen()
      assertSessionId(sessionId)
      const window = normalizeLogRange(range)
      const log = sessions.get(sessionId)?.log
      if (window === undefined || log === undefined) return []
      const start = firstIndexAfter(log, window.fromSeq - 1)
      const end = Math.min(firstIndexAfter(log, window.toSeq), start + window.limit)
      return log.slice(start, end).map(copyEntry)
    },

    async getMeta(sessionId) {
      assertOpen()
      assertSessionId(sessionId)
      const session = sessions.get(sessionId)
      return session === undefined ? undefined : reported(session)
    },

    async listSessions() {
      assertOpen()
      // Default sort compares UTF-16 code units: for ASCII ids that is LevelDB's byte order.
      return [...sessions.keys()].sort().map((sessionId) => reported(sessions.get(sessionId)!))
    },

    async putCheckpoint(sessionId, checkpoint, options = {}) {
      assertOpen()
      assertCheckpoint(sessionId, checkpoint, options)
      const session = sessions.get(sessionId)
      assertNewIfRequired(sessionId, session?.meta, options)
      let log = session?.log ?? []
      let checkpoints = session?.checkpoints ?? []
      let trimmed = { count: 0, bytes: 0 }
      if (options.trimLogThrough !== undefined) {
        const keepFrom = firstIndexAfter(log, options.trimLogThrough)
        const removed = log.slice(0, keepFrom)
        trimmed = {
          count: removed.length,
          bytes: removed.reduce((sum, entry) => sum + entry.update.byteLength, 0),
        }
        log = log.slice(keepFrom)
      }
      const trimBefore = options.trimCheckpointsBefore ?? 0
      const deleted = new Set(options.deleteCheckpoints ?? [])
      checkpoints = checkpoints.filter(
        (kept) => kept.seq >= trimBefore && kept.seq !== checkpoint.seq && !deleted.has(kept.seq),
      )
      checkpoints.splice(firstIndexAfter(checkpoints, checkpoint.seq), 0, copyCheckpoint(checkpoint))
      const meta = metaAfterCheckpoint(sessionId, session?.meta, checkpoint, trimmed)
      const trimmedThrough = Math.max(session?.trimmedThrough ?? 0, options.trimLogThrough ?? 0)
      sessions.set(sessionId, { meta, log, checkpoints, trimmedThrough })
    },

    async listCheckpoints(sessionId, range) {
      return checkpointsIn(sessionId, range).map(copyCheckpoint)
    },

    async listCheckpointInfo(sessionId, range) {
      return checkpointsIn(sessionId, range).map(({ seq, time, state }) => ({
        seq,
        time,
        bytes: state.byteLength,
      }))
    },

    async deleteSession(sessionId) {
      assertOpen()
      assertSessionId(sessionId)
      sessions.delete(sessionId)
    },

    records: {
      async write(ops) {
        assertOpen()
        for (const op of ops) {
          const key = Buffer.from(op.key).toString('latin1')
          if (op.type === 'put') records.set(key, op.value.slice())
          else records.delete(key)
        }
      },
      async scan(range) {
        assertOpen()
        const found: Array<[Uint8Array, Uint8Array]> = []
        for (const [name, value] of records) {
          const key = Uint8Array.from(Buffer.from(name, 'latin1'))
          if (compareKeys(key, range.gte) >= 0 && compareKeys(key, range.lt) < 0)
            found.push([key, value.slice()])
        }
        return found.sort(([a], [b]) => compareKeys(a, b))
      },
    },

    release() {
      // Nothing is cached apart from the data itself, which stays stored.
    },

    async close() {
      isClosed = true
    },
  }
}

/** Index of the first item with seq > `seq` in a seq-ordered array (binary search). */
function firstIndexAfter(items: readonly { readonly seq: number }[], seq: number): number {
  let low = 0
  let high = items.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (items[middle]!.seq <= seq) low = middle + 1
    else high = middle
  }
  return low
}

function copyEntry(entry: LogEntry): LogEntry {
  return { seq: entry.seq, time: entry.time, update: entry.update.slice() }
}

function copyCheckpoint(checkpoint: Checkpoint): Checkpoint {
  return { seq: checkpoint.seq, time: checkpoint.time, state: checkpoint.state.slice() }
}
