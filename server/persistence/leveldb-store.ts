// The LevelDB Store: one classic-level database holding every session in the layout of keys.ts.
// Owns the database handle and a cache of session metas; knows nothing of Yjs or sockets.

import { ClassicLevel } from 'classic-level'
import { ColloquyError } from '../../shared/errors.js'
import {
  assertSessionId,
  checkpointKeyRange,
  decodeCheckpointKey,
  decodeFormatValue,
  decodeLogKey,
  decodeMetaKey,
  decodeMetaValue,
  decodeTimedValue,
  encodeCheckpointKey,
  encodeFormatValue,
  encodeLogKey,
  encodeMetaKey,
  encodeMetaValue,
  encodeTimedValue,
  FORMAT_KEY,
  type KeyRange,
  logKeyRange,
  metaKeyRange,
  STORAGE_FORMAT_VERSION,
  timedValuePayloadBytes,
} from './keys.js'
import { createSessionLocks } from './session-locks.js'
import type { Checkpoint, LogEntry, SessionMeta, Store, StoredSession } from './store.js'
import {
  assertAppendsAfter,
  assertCheckpoint,
  assertNewIfRequired,
  emptyStoredSession,
  groupAppendEntries,
  metaAfterAppend,
  metaAfterCheckpoint,
  normalizeCheckpointRange,
  normalizeLogRange,
  storeClosedError,
} from './store-rules.js'

/** Options of {@link openLeveldbStore}. */
export interface LeveldbStoreOptions {
  /** Directory of the database; created when missing. */
  readonly location: string
  /**
   * Whether every write batch is fsync'd before its promise resolves (default true).
   *
   * @remarks `false` only for benchmarks and throwaway data: a machine crash can then lose writes
   * that were already acknowledged.
   */
  readonly sync?: boolean
}

type Db = ClassicLevel<Uint8Array, Uint8Array>
type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array }

/** How many entries a range scan pulls from LevelDB per round trip when it only needs keys and sizes. */
const SCAN_CHUNK = 1024

/**
 * Opens (creating when missing) the LevelDB store at `options.location`.
 *
 * @remarks
 * - A new database gets the format key; an existing one must carry format
 *   {@link STORAGE_FORMAT_VERSION}, and a non-empty directory without a format key (e.g. a y-leveldb
 *   directory) is refused rather than mixed with our keys.
 * - Each write (`append`, `putCheckpoint`, `deleteSession`) is one atomic LevelDB batch written with
 *   the `sync` option, including the updated meta of every session it touches.
 * - Writes that touch the same session are serialised (they read-modify-write its meta); writes to
 *   other sessions, and every read, run concurrently.
 */
export async function openLeveldbStore(options: LeveldbStoreOptions): Promise<Store> {
  const { location } = options
  const sync = options.sync ?? true
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  })
  await db.open()
  try {
    await checkFormat(db, location)
  } catch (error) {
    await db.close()
    throw error
  }
  return createStoreOn(db, sync)
}

async function checkFormat(db: Db, location: string): Promise<void> {
  const stored = await db.get(FORMAT_KEY)
  if (stored === undefined) {
    const anyKey = await db.keys({ limit: 1 }).all()
    if (anyKey.length > 0) {
      throw new ColloquyError(
        'storage-unavailable',
        `${location} holds a LevelDB database without a Colloquy format key; refusing to write into it`,
      )
    }
    await db.put(FORMAT_KEY, encodeFormatValue(), { sync: true })
    return
  }
  const version = decodeFormatValue(stored)
  if (version !== String(STORAGE_FORMAT_VERSION)) {
    throw new ColloquyError(
      'storage-unavailable',
      `${location} uses storage format ${JSON.stringify(version)}; this build reads only format ${STORAGE_FORMAT_VERSION}`,
    )
  }
}

function createStoreOn(db: Db, sync: boolean): Store {
  // Committed metas of recently used sessions. Written only after a batch succeeded, and only by
  // the holder of the session's lock, so it always equals what is on disk.
  const metaCache = new Map<string, SessionMeta>()
  const locks = createSessionLocks()
  const inFlight = new Set<Promise<unknown>>()
  let isClosed = false
  let closing: Promise<void> | undefined

  /** Runs `operation` unless the store is closed, and tracks it so `close` can wait for it. */
  function track<T>(operation: () => Promise<T>): Promise<T> {
    if (isClosed) return Promise.reject(storeClosedError())
    const promise = operation()
    inFlight.add(promise)
    const forget = () => {
      inFlight.delete(promise)
    }
    promise.then(forget, forget)
    return promise
  }

  /** Reads a meta from disk; the caller must hold the session's lock to cache the result. */
  async function readMeta(sessionId: string): Promise<SessionMeta | undefined> {
    const value = await db.get(encodeMetaKey(sessionId))
    return value === undefined ? undefined : { sessionId, ...decodeMetaValue(value) }
  }

  /** The committed metas of `sessionIds` (locked by the caller): cache first, one getMany for the rest. */
  async function metasOf(sessionIds: readonly string[]): Promise<Map<string, SessionMeta | undefined>> {
    const metas = new Map<string, SessionMeta | undefined>()
    const missing: string[] = []
    for (const sessionId of sessionIds) {
      const cached = metaCache.get(sessionId)
      if (cached === undefined) missing.push(sessionId)
      else metas.set(sessionId, cached)
    }
    if (missing.length > 0) {
      const values = await db.getMany(missing.map(encodeMetaKey))
      missing.forEach((sessionId, i) => {
        const value = values[i]
        metas.set(sessionId, value === undefined ? undefined : { sessionId, ...decodeMetaValue(value) })
      })
    }
    return metas
  }

  /**
   * Writes `ops` as one atomic LevelDB write batch, fsync'd when `sync` is set.
   *
   * @remarks Why a chained batch rather than `db.batch(ops)`: abstract-level clones and re-encodes
   * every operation object of an array batch, which measured about 6× slower for our small entries;
   * the chained batch hands each key and value straight to the native WriteBatch. Same atomicity:
   * one WriteBatch, one log record, one fsync.
   */
  async function writeBatch(ops: readonly BatchOp[]): Promise<void> {
    const batch = db.batch()
    try {
      for (const op of ops) {
        if (op.type === 'put') batch.put(op.key, op.value)
        else batch.del(op.key)
      }
    } catch (error) {
      await batch.close()
      throw error
    }
    // write() closes the batch whether it succeeds or fails.
    await batch.write({ sync })
  }

  /** Keys in `range` and the payload bytes of their values, without holding every value at once. */
  async function scanSizes(range: KeyRange): Promise<{ keys: Uint8Array[]; bytes: number }> {
    const keys: Uint8Array[] = []
    let bytes = 0
    const iterator = db.iterator(range)
    try {
      for (;;) {
        const chunk = await iterator.nextv(SCAN_CHUNK)
        if (chunk.length === 0) break
        for (const [key, value] of chunk) {
          keys.push(key)
          bytes += timedValuePayloadBytes(value)
        }
      }
    } finally {
      await iterator.close()
    }
    return { keys, bytes }
  }

  const store: Store = {
    append(entries) {
      return track(async () => {
        const groups = groupAppendEntries(entries)
        if (groups.size === 0) return
        const sessionIds = [...groups.keys()]
        const unlock = await locks.acquire(sessionIds)
        try {
          const metas = await metasOf(sessionIds)
          const ops: BatchOp[] = []
          const nextMetas: SessionMeta[] = []
          for (const [sessionId, group] of groups) {
            const previous = metas.get(sessionId)
            assertAppendsAfter(sessionId, group, previous)
            for (const entry of group) {
              ops.push({
                type: 'put',
                key: encodeLogKey(sessionId, entry.seq),
                value: encodeTimedValue(entry.time, entry.update),
              })
            }
            const meta = metaAfterAppend(sessionId, previous, group)
            nextMetas.push(meta)
            ops.push({ type: 'put', key: encodeMetaKey(sessionId), value: encodeMetaValue(meta) })
          }
          // One batch for every entry and meta: atomic, and durable before we resolve (ack only after this).
          await writeBatch(ops)
          for (const meta of nextMetas) metaCache.set(meta.sessionId, meta)
        } finally {
          unlock()
        }
      })
    },

    load(sessionId) {
      return track(async (): Promise<StoredSession> => {
        const checkpointRange = checkpointKeyRange(sessionId)
        const unlock = await locks.acquire([sessionId])
        try {
          // Holding the lock: no write of this session can land between these reads.
          const meta = metaCache.get(sessionId) ?? (await readMeta(sessionId))
          if (meta === undefined) return emptyStoredSession()
          metaCache.set(sessionId, meta)
          const [latest] = await db.iterator({ ...checkpointRange, reverse: true, limit: 1 }).all()
          const checkpoint = latest === undefined ? undefined : decodeCheckpoint(latest[0], latest[1])
          const fromSeq = checkpoint === undefined ? 0 : checkpoint.seq + 1
          const entries = await db.iterator(logKeyRange(sessionId, fromSeq)).all()
          return { meta, checkpoint, log: entries.map(([key, value]) => decodeLogEntry(key, value)) }
        } finally {
          unlock()
        }
      })
    },

    readLog(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeLogRange(range)
        if (window === undefined) return []
        const limit = window.limit === Number.POSITIVE_INFINITY ? -1 : window.limit
        const entries = await db
          .iterator({ ...logKeyRange(sessionId, window.fromSeq, window.toSeq), limit })
          .all()
        return entries.map(([key, value]) => decodeLogEntry(key, value))
      })
    },

    getMeta(sessionId) {
      return track(async () => {
        assertSessionId(sessionId)
        const cached = metaCache.get(sessionId)
        if (cached !== undefined) return cached
        const unlock = await locks.acquire([sessionId])
        try {
          const meta = metaCache.get(sessionId) ?? (await readMeta(sessionId))
          if (meta !== undefined) metaCache.set(sessionId, meta)
          return meta
        } finally {
          unlock()
        }
      })
    },

    listSessions() {
      return track(async () => {
        const entries = await db.iterator(metaKeyRange()).all()
        return entries.map(
          ([key, value]): SessionMeta => ({ sessionId: decodeMetaKey(key), ...decodeMetaValue(value) }),
        )
      })
    },

    putCheckpoint(sessionId, checkpoint, options = {}) {
      return track(async () => {
        assertCheckpoint(sessionId, checkpoint, options)
        const unlock = await locks.acquire([sessionId])
        try {
          const previous = metaCache.get(sessionId) ?? (await readMeta(sessionId))
          assertNewIfRequired(sessionId, previous, options)
          const ops: BatchOp[] = []
          let trimmed = { count: 0, bytes: 0 }
          if (options.trimLogThrough !== undefined && options.trimLogThrough > 0) {
            const { keys, bytes } = await scanSizes(logKeyRange(sessionId, 0, options.trimLogThrough))
            for (const key of keys) ops.push({ type: 'del', key })
            trimmed = { count: keys.length, bytes }
          }
          if (options.trimCheckpointsBefore !== undefined && options.trimCheckpointsBefore > 0) {
            const range = checkpointKeyRange(sessionId, 0, options.trimCheckpointsBefore - 1)
            for (const key of await db.keys(range).all()) ops.push({ type: 'del', key })
          }
          for (const seq of options.deleteCheckpoints ?? []) {
            ops.push({ type: 'del', key: encodeCheckpointKey(sessionId, seq) })
          }
          // After the deletes: LevelDB applies a batch in order, so the new checkpoint always survives.
          ops.push({
            type: 'put',
            key: encodeCheckpointKey(sessionId, checkpoint.seq),
            value: encodeTimedValue(checkpoint.time, checkpoint.state),
          })
          const meta = metaAfterCheckpoint(sessionId, previous, checkpoint, trimmed)
          ops.push({ type: 'put', key: encodeMetaKey(sessionId), value: encodeMetaValue(meta) })
          await writeBatch(ops)
          metaCache.set(sessionId, meta)
        } finally {
          unlock()
        }
      })
    },

    listCheckpoints(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeCheckpointRange(range)
        if (window === undefined) return []
        const limit = window.limit === Number.POSITIVE_INFINITY ? -1 : window.limit
        const entries = await db
          .iterator({
            ...checkpointKeyRange(sessionId, window.fromSeq, window.toSeq),
            limit,
            reverse: window.reverse,
          })
          .all()
        return entries.map(([key, value]) => decodeCheckpoint(key, value))
      })
    },

    deleteSession(sessionId) {
      return track(async () => {
        const metaKey = encodeMetaKey(sessionId)
        const unlock = await locks.acquire([sessionId])
        try {
          const [logKeys, checkpointKeys] = await Promise.all([
            db.keys(logKeyRange(sessionId)).all(),
            db.keys(checkpointKeyRange(sessionId)).all(),
          ])
          const ops: BatchOp[] = [...logKeys, ...checkpointKeys, metaKey].map((key) => ({ type: 'del', key }))
          // One batch: a crash leaves the session either whole or gone, never half deleted.
          await writeBatch(ops)
          metaCache.delete(sessionId)
        } finally {
          unlock()
        }
      })
    },

    release(sessionId) {
      // A write of this session still in flight re-fills the entry when it commits: harmless (the
      // entry is still the committed meta), and the registry never unloads a session mid-write.
      metaCache.delete(sessionId)
    },

    close() {
      if (closing === undefined) {
        isClosed = true
        closing = (async () => {
          await Promise.allSettled([...inFlight])
          metaCache.clear()
          await db.close()
        })()
      }
      return closing
    },
  }
  return store
}

function decodeLogEntry(key: Uint8Array, value: Uint8Array): LogEntry {
  const { time, bytes } = decodeTimedValue(value)
  return { seq: decodeLogKey(key).seq, time, update: bytes }
}

function decodeCheckpoint(key: Uint8Array, value: Uint8Array): Checkpoint {
  const { time, bytes } = decodeTimedValue(value)
  return { seq: decodeCheckpointKey(key).seq, time, state: bytes }
}
