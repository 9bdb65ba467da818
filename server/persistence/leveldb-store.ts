// The LevelDB Store: one classic-level database holding every session in the layout of keys.ts.
// Owns the database handle and a cache of session metas; knows nothing of Yjs or sockets.

import { statSync } from 'node:fs'
import { type FileHandle, open as openFile } from 'node:fs/promises'
import { setImmediate as nextTurn } from 'node:timers/promises'
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
import type {
  Checkpoint,
  CheckpointInfo,
  LogEntry,
  PutCheckpointOptions,
  SessionMeta,
  Store,
  StoredSession,
} from './store.js'
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
type Batch = ReturnType<Db['batch']>
type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array }

/** How many entries a range scan pulls from LevelDB per round trip when it only needs keys and sizes. */
const SCAN_CHUNK = 1024

/** How many checkpoint values a listing without states pulls per round trip (each may weigh MBs). */
const CHECKPOINT_INFO_CHUNK = 8

/** Sessions whose checkpoint list without states is remembered (least recently used dropped first). */
const CHECKPOINT_INFO_CACHE_SESSIONS = 256

/**
 * Operations added to a native write batch between two turns of the event loop.
 *
 * @remarks A compaction's batch deletes up to every log entry of a session (100,000 deletes took
 * ~45 ms of one event-loop turn); built in slices, it never holds the loop longer than ~2 ms.
 * The batch is still written once, atomically.
 */
const BATCH_SLICE = 4096

/**
 * How long after its last change the directory must have been when it was fsync'd for an unchanged
 * mtime to prove that nothing changed since (ms). Why: the kernel stamps mtimes from a coarse clock
 * (a few ms per tick), so a change made in the same tick as the stat before a directory fsync would
 * leave the mtime as it was; a directory whose last change is older than this cannot hide one.
 */
const DIRECTORY_SETTLED_MS = 1000

/**
 * Keeps the database directory's entries durable before a synced write resolves.
 *
 * @remarks Why: LevelDB fsyncs a new log file's data but not the directory entry that names it
 * (it syncs the directory only with its MANIFEST, at open and after a memtable compaction), and
 * renames CURRENT at open without a directory sync. After a power cut, acked updates in a log file
 * whose name was not durable would be gone, and a fresh database would not open (found by
 * test/integration/power-loss.test.ts). So: one directory fsync after open, and after each synced
 * write whenever the directory changed since the last one (one stat per write; an fsync only after
 * LevelDB switched logs or compacted).
 */
export interface DirectorySync {
  /** Resolves once every entry the directory had when called is durable. */
  afterWrite(): Promise<void>
  close(): Promise<void>
}

export async function openDirectorySync(location: string): Promise<DirectorySync> {
  const handle: FileHandle = await openFile(location, 'r')
  /** The mtime seen just before the last directory fsync started, and that fsync. */
  let last: { mtimeNs: bigint; isSettled: boolean; done: Promise<void> } | undefined
  const syncNow = (mtimeNs: bigint): Promise<void> => {
    const isSettled = BigInt(Date.now()) * 1_000_000n - mtimeNs > BigInt(DIRECTORY_SETTLED_MS) * 1_000_000n
    const done = handle.sync()
    last = { mtimeNs, isSettled, done }
    // A failed directory sync must not let a later write skip it.
    done.catch(() => {
      if (last?.done === done) last = undefined
    })
    return done
  }
  await syncNow(statSync(location, { bigint: true }).mtimeNs)
  return {
    afterWrite() {
      const { mtimeNs } = statSync(location, { bigint: true })
      if (last !== undefined && last.mtimeNs === mtimeNs && last.isSettled) return last.done
      return syncNow(mtimeNs)
    },
    close: () => handle.close(),
  }
}

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
  let directory: DirectorySync | undefined
  try {
    await checkFormat(db, location)
    // Makes what LevelDB's open created and renamed (CURRENT, the new log and MANIFEST) durable.
    if (sync) directory = await openDirectorySync(location)
  } catch (error) {
    await db.close()
    throw error
  }
  return createStoreOn(db, directory)
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

/** `directory`: present when writes are synced (`sync` option), absent when they are not. */
function createStoreOn(db: Db, directory: DirectorySync | undefined): Store {
  const sync = directory !== undefined
  // Committed metas of recently used sessions. Written only after a batch succeeded, and only by
  // the holder of the session's lock, so it always equals what is on disk.
  const metaCache = new Map<string, SessionMeta>()
  const locks = createSessionLocks()
  const inFlight = new Set<Promise<unknown>>()
  // Every checkpoint of recently compacted sessions, without states, in seq order. Exact: a write
  // that changes a session's checkpoints applies its change here once committed, and a scan that
  // overlapped any such write is not cached (see `checkpointWrites`).
  const checkpointInfoCache = new Map<string, CheckpointInfo[]>()
  // Counts checkpoint writes: a scan caches its result only if none completed while it ran.
  let checkpointWrites = 0
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

  /** Meta reads asked for since the last {@link readMetas}: read together, with one getMany. */
  let metaReads: {
    readonly sessionId: string
    readonly key: ReturnType<typeof encodeMetaKey>
    readonly resolve: (meta: SessionMeta | undefined) => void
    readonly reject: (error: unknown) => void
  }[] = []

  /**
   * Reads a meta from disk; the caller must hold the session's lock to cache the result.
   *
   * @remarks The reads asked for in one turn of the event loop go to LevelDB as one getMany in the
   * next (`setImmediate`): a burst of new sessions (issue 17: 10,000 opens in 10 s, each first
   * asking whether its session exists) paid a native get each, ~20–160 µs of the event loop for
   * the call alone (a worker, an implicit snapshot); one getMany of 50 keys measured 2–8 µs a key.
   */
  function readMeta(sessionId: string): Promise<SessionMeta | undefined> {
    return new Promise((resolve, reject) => {
      // The key first: a session id it refuses rejects this read alone, not the batch.
      const key = encodeMetaKey(sessionId)
      if (metaReads.length === 0) setImmediate(readMetas)
      metaReads.push({ sessionId, key, resolve, reject })
    })
  }

  function readMetas(): void {
    const reads = metaReads
    metaReads = []
    db.getMany(reads.map((read) => read.key)).then(
      (values) => {
        reads.forEach((read, i) => {
          const value = values[i]
          try {
            read.resolve(
              value === undefined ? undefined : { sessionId: read.sessionId, ...decodeMetaValue(value) },
            )
          } catch (error) {
            read.reject(error)
          }
        })
      },
      (error: unknown) => {
        for (const read of reads) read.reject(error)
      },
    )
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
      for (let i = 0; i < ops.length; i++) {
        // Large batches (compaction trims) are built in slices, letting the event loop run between.
        if (i > 0 && i % BATCH_SLICE === 0) await nextTurn()
        const op = ops[i]!
        if (op.type === 'put') batch.put(op.key, op.value)
        else batch.del(op.key)
      }
    } catch (error) {
      await batch.close()
      throw error
    }
    // write() closes the batch whether it succeeds or fails.
    await batch.write({ sync })
    // The log file this batch went to may be new: its name must be durable too.
    await directory?.afterWrite()
  }

  /**
   * Adds a delete of every key in `range` to `batch`, a chunk at a time, and returns how many keys
   * and payload bytes it deletes.
   *
   * @remarks Streams keys straight into the native batch rather than collecting them: a compaction
   * trim of 100,000 entries no longer keeps 100,000 keys alive on the heap (whose scavenges paused
   * the event loop), and every chunk is a separate turn of the loop.
   */
  async function deleteRangeInto(batch: Batch, range: KeyRange): Promise<{ count: number; bytes: number }> {
    let count = 0
    let bytes = 0
    const iterator = db.iterator(range)
    try {
      for (;;) {
        const chunk = await iterator.nextv(SCAN_CHUNK)
        if (chunk.length === 0) break
        for (const [key, value] of chunk) {
          batch.del(key)
          bytes += timedValuePayloadBytes(value)
        }
        count += chunk.length
      }
    } finally {
      await iterator.close()
    }
    return { count, bytes }
  }

  /** Applies a committed `putCheckpoint` to the cached checkpoint list of its session, if any. */
  function noteCheckpointWritten(
    sessionId: string,
    checkpoint: Checkpoint,
    options: PutCheckpointOptions,
  ): void {
    checkpointWrites++
    const cached = checkpointInfoCache.get(sessionId)
    if (cached === undefined) return
    const trimBefore = options.trimCheckpointsBefore ?? 0
    const deleted = new Set(options.deleteCheckpoints ?? [])
    const kept = cached.filter(
      (info) => info.seq >= trimBefore && info.seq !== checkpoint.seq && !deleted.has(info.seq),
    )
    kept.push({ seq: checkpoint.seq, time: checkpoint.time, bytes: checkpoint.state.byteLength })
    kept.sort((a, b) => a.seq - b.seq)
    checkpointInfoCache.set(sessionId, kept)
  }

  /** Seq, time and size of the checkpoints in `range`, reading a few values at a time. */
  async function scanCheckpointInfo(
    sessionId: string,
    fromSeq: number,
    toSeq: number,
    limit: number,
    reverse: boolean,
  ): Promise<CheckpointInfo[]> {
    const infos: CheckpointInfo[] = []
    const iterator = db.iterator({ ...checkpointKeyRange(sessionId, fromSeq, toSeq), limit, reverse })
    try {
      for (;;) {
        const chunk = await iterator.nextv(CHECKPOINT_INFO_CHUNK)
        if (chunk.length === 0) break
        for (const [key, value] of chunk) {
          infos.push({
            seq: decodeCheckpointKey(key).seq,
            time: decodeTimedValue(value).time,
            bytes: timedValuePayloadBytes(value),
          })
        }
      }
    } finally {
      await iterator.close()
    }
    return infos
  }

  const store: Store = {
    append(entries) {
      return track(async () => {
        const groups = groupAppendEntries(entries)
        if (groups.size === 0) return []
        const sessionIds = [...groups.keys()]
        const unlock = await locks.acquire(sessionIds)
        try {
          const metas = await metasOf(sessionIds)
          // Under the sessions' locks: no other append can take these seqs.
          const seqs = assignDenseSeqs(entries, metas)
          const ops: BatchOp[] = []
          const lastSeqs = new Map<string, number>()
          for (let i = 0; i < entries.length; i++) {
            const entry = entries[i]!
            ops.push({
              type: 'put',
              key: encodeLogKey(entry.sessionId, seqs[i]!),
              value: encodeTimedValue(entry.time, entry.update),
            })
            lastSeqs.set(entry.sessionId, seqs[i]!)
          }
          const nextMetas: SessionMeta[] = []
          for (const [sessionId, group] of groups) {
            const meta = metaAfterAppend(sessionId, metas.get(sessionId), group, lastSeqs.get(sessionId)!)
            nextMetas.push(meta)
            ops.push({ type: 'put', key: encodeMetaKey(sessionId), value: encodeMetaValue(meta) })
          }
          // One batch for every entry and meta: atomic, and durable before we resolve (ack only after this).
          await writeBatch(ops)
          for (const meta of nextMetas) metaCache.set(meta.sessionId, meta)
          return seqs
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
          // One native batch, filled as the trimmed ranges are scanned, written once: atomic.
          const batch = db.batch()
          let meta: SessionMeta
          try {
            let trimmed = { count: 0, bytes: 0 }
            if (options.trimLogThrough !== undefined && options.trimLogThrough > 0) {
              trimmed = await deleteRangeInto(batch, logKeyRange(sessionId, 0, options.trimLogThrough))
            }
            if (options.trimCheckpointsBefore !== undefined && options.trimCheckpointsBefore > 0) {
              const range = checkpointKeyRange(sessionId, 0, options.trimCheckpointsBefore - 1)
              for (const key of await db.keys(range).all()) batch.del(key)
            }
            for (const seq of options.deleteCheckpoints ?? []) batch.del(encodeCheckpointKey(sessionId, seq))
            // After the deletes: LevelDB applies a batch in order, so the new checkpoint always survives.
            batch.put(
              encodeCheckpointKey(sessionId, checkpoint.seq),
              encodeTimedValue(checkpoint.time, checkpoint.state),
            )
            meta = metaAfterCheckpoint(sessionId, previous, checkpoint, trimmed)
            batch.put(encodeMetaKey(sessionId), encodeMetaValue(meta))
          } catch (error) {
            await batch.close()
            throw error
          }
          // write() closes the batch whether it succeeds or fails.
          await batch.write({ sync })
          await directory?.afterWrite()
          metaCache.set(sessionId, meta)
          noteCheckpointWritten(sessionId, checkpoint, options)
        } finally {
          unlock()
        }
      })
    },

    listCheckpointInfo(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeCheckpointRange(range)
        if (window === undefined) return []
        let all = checkpointInfoCache.get(sessionId)
        if (all !== undefined) {
          // Most recently used last, so the oldest entry is the first one dropped.
          checkpointInfoCache.delete(sessionId)
          checkpointInfoCache.set(sessionId, all)
        } else {
          const isWhole = window.fromSeq === 0 && window.toSeq === Number.MAX_SAFE_INTEGER
          const limit = window.limit === Number.POSITIVE_INFINITY ? -1 : window.limit
          if (!isWhole || limit !== -1) {
            // A partial listing reads only its range and caches nothing.
            return scanCheckpointInfo(sessionId, window.fromSeq, window.toSeq, limit, window.reverse)
          }
          const writesBefore = checkpointWrites
          all = await scanCheckpointInfo(sessionId, 0, Number.MAX_SAFE_INTEGER, -1, false)
          if (checkpointWrites === writesBefore) {
            checkpointInfoCache.set(sessionId, all)
            if (checkpointInfoCache.size > CHECKPOINT_INFO_CACHE_SESSIONS) {
              const oldest = checkpointInfoCache.keys().next().value
              if (oldest !== undefined) checkpointInfoCache.delete(oldest)
            }
          }
        }
        const inRange = all.filter((info) => info.seq >= window.fromSeq && info.seq <= window.toSeq)
        if (window.reverse) inRange.reverse()
        return inRange.slice(0, window.limit)
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
          checkpointWrites++
          checkpointInfoCache.delete(sessionId)
        } finally {
          unlock()
        }
      })
    },

    records: {
      write(ops) {
        return track(() => writeBatch(ops))
      },
      scan(range) {
        return track(() => db.iterator({ gte: range.gte, lt: range.lt }).all())
      },
    },

    release(sessionId) {
      // A write of this session still in flight re-fills the entry when it commits: harmless (the
      // entry is still the committed meta), and the registry never unloads a session mid-write.
      metaCache.delete(sessionId)
      checkpointInfoCache.delete(sessionId)
    },

    close() {
      if (closing === undefined) {
        isClosed = true
        closing = (async () => {
          await Promise.allSettled([...inFlight])
          metaCache.clear()
          checkpointInfoCache.clear()
          await db.close()
          await directory?.close()
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
