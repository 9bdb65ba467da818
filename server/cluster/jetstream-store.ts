// The Store on NATS JetStream, for a cluster of Colloquy nodes: every session's log is one subject of
// one replicated stream (seqs are its stream seqs: increasing per session, sparse), checkpoints are
// objects indexed in KV, sessions are KV records made with create. No read-modify-write anywhere:
// nats-server 2.9 checks expected sequences before Raft, so only create and idempotence are safe.

import { headers } from '@nats-io/transport-node'
import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import { assertSessionId } from '../persistence/keys.js'
import type {
  Checkpoint,
  CheckpointInfo,
  LogEntry,
  SessionMeta,
  Store,
  StoredSession,
} from '../persistence/store.js'
import {
  assertCheckpoint,
  emptyStoredSession,
  groupAppendEntries,
  normalizeCheckpointRange,
  normalizeLogRange,
  storeClosedError,
} from '../persistence/store-rules.js'
import {
  checkedLeaderView,
  describeReadFailure,
  getKvEntry,
  type JetStreamResources,
  type LeaderView,
  LogHeader,
  lastStreamSeq,
  listKvKeys,
  type ScannedMessage,
  scanSubject,
} from './jetstream-log.js'
import { createPipelinedPublisher } from './pipelined-publisher.js'
import { decodeSessionToken, encodeSessionToken, padSeq } from './session-token.js'

/** Options of {@link createJetStreamStore}. */
export interface JetStreamStoreOptions {
  readonly resources: JetStreamResources
  /**
   * Updates larger than this go to the updates object store, the log holding a reference (default:
   * the servers' max_payload less 8 KiB for headers).
   */
  readonly inlineMaxBytes?: number
  /** How long a publish waits for JetStream's ack before the append fails (default 4 s). */
  readonly publishTimeoutMs?: number
  /**
   * How long a read keeps trying while JetStream cannot answer it (an election, a lagging replica)
   * before it fails as `storage-unavailable` (default {@link READ_RETRY_MS}).
   */
  readonly readRetryMs?: number
  /** Called once by {@link Store.close} after pending operations (e.g. to close the connection). */
  readonly onClose?: () => Promise<void>
  /** Where a read that fails says so, once per kind of error per read (see describeReadFailure). */
  readonly logger?: Logger
}

/**
 * How long a read retries by default. Why (issue 15): a read sent while a stream elects its leader
 * gets no answer (the API request times out after 10 s), "JetStream system temporarily
 * unavailable" or "no responders"; on 3 nats-servers sharing 2 loaded cores an election was seen
 * to take up to ~20 s. One attempt failed the whole read, so a node loading a session, a history
 * request or a relay's gap repair failed on what the cluster answers moments later. 30 s covers
 * a slow election plus one timed-out request.
 */
export const READ_RETRY_MS = 30_000

/** Pauses between the attempts of a read: doubling from the first, never longer than the last. */
const ReadBackoff = { firstMs: 100, maxMs: 2_000 } as const

/** The JetStream store: a {@link Store} plus the cheap reads a cross-node relay needs. */
export interface JetStreamStore extends Store {
  /**
   * The seq of the session's last log entry, or 0 when its log is empty or it does not exist: one
   * request to the stream leader (plus the session record, cached). A relay compares it with the
   * last seq it applied and reads the difference with `readLog` (gap repair).
   */
  lastLogSeq(sessionId: string): Promise<number>
}

/** A session's record in the sessions bucket: written once, by `create`. */
interface SessionRecord {
  readonly v: 1
  readonly createdAt: number
  /**
   * Added to stream seqs to make the session's seqs. 0 for a session started by an append; the
   * checkpoint's seq for one started by a checkpoint (import, fork), so its appends come after it.
   */
  readonly offset: number
  /** Distinguishes a session from an earlier one of the same id that was deleted. */
  readonly incarnation: string
}

/** What the index bucket holds about a session (one incarnation). */
interface SessionIndex {
  /** In seq order. */
  readonly checkpoints: CheckpointInfo[]
  /** The highest `trimLogThrough` ever applied (0: none). */
  readonly trimmedThrough: number
  /** Updates in the object store: session seq → object name. */
  readonly objects: Map<number, string>
}

/** Counts of a session's retained log, kept per node and extended by reading what is new. */
interface Tally {
  readonly incarnation: string
  readonly trimmedThrough: number
  /** Stream seq through which the counts are complete. */
  scannedThrough: number
  count: number
  bytes: number
  latestTime: number
  /** The latest checkpoint's seq when `since` was counted (session seqs). */
  checkpointSeq: number
  /** Stream seq through which `since` is complete. */
  sinceScannedThrough: number
  /** Entries (and bytes) above the latest checkpoint: what the compaction policy weighs. */
  since: { count: number; bytes: number }
  /**
   * What this node appended to the subject since the tally was made (stream seqs, acked), not
   * yet counted: counted without reading the stream when they are all it holds beyond the counts.
   */
  noted: NotedAppend[]
}

/** Counts one entry of the subject at stream seq `seq` in whichever of the tally's counts lack it. */
function countEntry(tally: Tally, seq: number, size: number, time: number): void {
  if (seq > tally.scannedThrough) {
    tally.count++
    tally.bytes += size
    tally.latestTime = Math.max(tally.latestTime, time)
  }
  if (seq > tally.sinceScannedThrough) {
    tally.since.count++
    tally.since.bytes += size
  }
}

/** The tally of an empty subject of a session without checkpoints or trims. */
function emptyTally(incarnation: string): Tally {
  return {
    incarnation,
    trimmedThrough: 0,
    scannedThrough: 0,
    count: 0,
    bytes: 0,
    latestTime: 0,
    checkpointSeq: 0,
    sinceScannedThrough: 0,
    since: { count: 0, bytes: 0 },
    noted: [],
  }
}

/** One acked append of this node, as the tally counts it. */
interface NotedAppend {
  readonly seq: number
  readonly size: number
  readonly time: number
}

/**
 * Noted appends kept per session at most (a session whose meta is not read for long drops them:
 * its next read scans the stream instead).
 */
const NOTED_APPENDS_MAX = 4_096

/** How long a meta read waits for this node's appends in flight before it counts (ms). */
const APPEND_SETTLE_WAIT_MS = 1_000

const encoder = new TextEncoder()
const decoder = new TextDecoder()

function toJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

/** Every failure of the cluster that a retry may fix, as the error the server refuses writes with. */
function unavailable(error: unknown): ColloquyError {
  if (error instanceof ColloquyError) return error
  return new ColloquyError(
    'storage-unavailable',
    `JetStream: ${error instanceof Error ? error.message : String(error)}`,
    { cause: error },
  )
}

/**
 * Whether a failure may pass by itself (no leader, no quorum, a timeout, a lagging replica): any
 * failure but the caller's mistakes and the store's own verdicts (a missing object, a trimmed seq).
 */
function isTransient(error: unknown): boolean {
  if (error instanceof RangeError || error instanceof TypeError) return false
  if (error instanceof ColloquyError) return error.code === 'storage-unavailable'
  return true
}

function isExistsError(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } })?.api_error?.err_code
  return code === 10071 || (error instanceof Error && /wrong last sequence|key exists/i.test(error.message))
}

/**
 * Creates a Store over opened JetStream resources.
 *
 * @remarks
 * - `append` publishes each entry to its session's subject, in call order, and resolves once
 *   JetStream acked every one (stored on a majority of the replicas); the seq of an entry is its
 *   stream seq plus the session's offset. Entries of one session keep their order because one
 *   connection's messages reach the stream leader in order. A failed append may have stored a
 *   prefix; the write queue retries the whole batch, and the repeats are harmless (Yjs updates are
 *   idempotent; a repeat is one more log entry, never a changed state).
 * - Sessions exist through a record created with KV `create` (atomic on every server version):
 *   `requireNew` is that create failing. Checkpoints: the state in the states object store, then
 *   an index key; trims: an index marker (`trimmedThrough`), then the purge of the subject below
 *   it. Each step is idempotent and ordered so that a crash between two leaves readers correct.
 * - Seqs are sparse ({@link Store.seqs}): readers must not expect seq + 1 to exist.
 * - Reads go to the stream leader's copy (consumers placed on the leader, or leader gets: see
 *   scanSubject); meta counts (logCount, logBytes) are kept per node and extended by reading the
 *   headers of what is new.
 */
export function createJetStreamStore(options: JetStreamStoreOptions): JetStreamStore {
  const { resources } = options
  const { jsm, sessions, index, states, updates, names } = resources
  const publisher = createPipelinedPublisher(resources.nc, options.publishTimeoutMs)
  const inlineMaxBytes = options.inlineMaxBytes ?? Math.max(1024, resources.maxPayload - 8 * 1024)
  const records = new Map<string, SessionRecord>()
  const tallies = new Map<string, Tally>()
  const inFlight = new Set<Promise<unknown>>()
  /** Appends whose acks are not all in yet (a meta read waits for them: see countNoted). */
  const appending = new Set<Promise<unknown>>()
  let isClosed = false
  let closing: Promise<void> | undefined

  const readRetryMs = options.readRetryMs ?? READ_RETRY_MS

  /** Runs a read again while it fails transiently, until {@link readRetryMs} has passed. */
  async function retryRead<T>(read: () => Promise<T>): Promise<T> {
    const startedAt = Date.now()
    const deadline = startedAt + readRetryMs
    const logged = new Set<string>()
    for (let delay: number = ReadBackoff.firstMs; ; delay = Math.min(delay * 2, ReadBackoff.maxMs)) {
      try {
        return await read()
      } catch (error) {
        const failure = describeReadFailure(resources, error)
        if (!logged.has(failure.kind) && options.logger !== undefined) {
          logged.add(failure.kind)
          const { step, server, err } = failure
          options.logger.warn({ step, server, err, afterMs: Date.now() - startedAt }, 'JetStream read failed')
        }
        if (!isTransient(error) || isClosed || Date.now() + delay > deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    }
  }

  /**
   * Tracks an operation until close. A `read` (it changes nothing, so repeating it is harmless) is
   * retried while JetStream cannot answer it, bounded by {@link readRetryMs}; writes are not (the
   * write queue retries them, and a session create may not be repeated blindly).
   */
  function track<T>(operation: () => Promise<T>, kind: 'read' | 'write' = 'write'): Promise<T> {
    if (isClosed) return Promise.reject(storeClosedError())
    // The caller's mistakes stay what they are; every failure of the cluster becomes the transient
    // `storage-unavailable` (HTTP 503, close 4505): no leader, no quorum, a timeout.
    const promise = (kind === 'read' ? retryRead(operation) : operation()).catch((error: unknown) => {
      if (error instanceof RangeError || error instanceof TypeError) throw error
      throw unavailable(error)
    })
    inFlight.add(promise)
    const forget = (): void => {
      inFlight.delete(promise)
    }
    promise.then(forget, forget)
    return promise
  }

  const subjectOf = (sessionId: string, record: SessionRecord): string =>
    `${names.subjectPrefix}.${encodeSessionToken(sessionId)}.${record.incarnation}`
  const indexPrefix = (sessionId: string, record: SessionRecord): string =>
    `${encodeSessionToken(sessionId)}.${record.incarnation}`

  async function readRecord(sessionId: string): Promise<SessionRecord | undefined> {
    const cached = records.get(sessionId)
    if (cached !== undefined) return cached
    const entry = await getKvEntry(resources, names.sessions, encodeSessionToken(sessionId))
    if (entry === null || entry.operation !== 'PUT' || entry.value.byteLength === 0) return undefined
    const record = JSON.parse(decoder.decode(entry.value)) as SessionRecord
    records.set(sessionId, record)
    return record
  }

  /** Creates the session's record; `undefined` when one exists already (someone else created it). */
  async function createRecord(
    sessionId: string,
    createdAt: number,
    offset: number,
  ): Promise<SessionRecord | undefined> {
    const record: SessionRecord = { v: 1, createdAt, offset, incarnation: newIncarnation() }
    try {
      await sessions.create(encodeSessionToken(sessionId), toJson(record))
    } catch (error) {
      if (isExistsError(error)) return undefined
      throw error
    }
    records.set(sessionId, record)
    return record
  }

  async function ensureRecord(sessionId: string, createdAt: number): Promise<SessionRecord> {
    const existing = await readRecord(sessionId)
    if (existing !== undefined) return existing
    const created = await createRecord(sessionId, createdAt, 0)
    if (created !== undefined) {
      // A session this node just started holds nothing yet: its tally starts here, empty and
      // complete, so its first meta read counts this node's appends without reading the log.
      tallies.set(sessionId, emptyTally(created.incarnation))
      return created
    }
    const raced = await readRecord(sessionId)
    if (raced === undefined)
      throw new ColloquyError('storage-unavailable', `session ${sessionId} record vanished`)
    return raced
  }

  async function readIndex(sessionId: string, record: SessionRecord): Promise<SessionIndex> {
    const prefix = indexPrefix(sessionId, record)
    // From the leader, with keys deleted since (their gets below say so): see listKvKeys.
    const keys = await listKvKeys(resources, names.index, `${prefix}.>`)
    const checkpointKeys: { key: string; seq: number }[] = []
    let trimmedThrough = 0
    const objectKeys: { key: string; seq: number }[] = []
    for (const key of keys) {
      const [kind, seqText] = key.slice(prefix.length + 1).split('.')
      const seq = Number(seqText)
      if (!Number.isSafeInteger(seq)) continue
      if (kind === 'c') checkpointKeys.push({ key, seq })
      else if (kind === 't') trimmedThrough = Math.max(trimmedThrough, seq)
      else if (kind === 'u') objectKeys.push({ key, seq })
    }
    const [checkpointValues, objectValues] = await Promise.all([
      Promise.all(checkpointKeys.map(({ key }) => getKvEntry(resources, names.index, key))),
      Promise.all(objectKeys.map(({ key }) => getKvEntry(resources, names.index, key))),
    ])
    const checkpoints: CheckpointInfo[] = []
    checkpointKeys.forEach(({ seq }, i) => {
      const entry = checkpointValues[i]
      if (entry === null || entry === undefined || entry.operation !== 'PUT') return
      const { time, bytes } = JSON.parse(decoder.decode(entry.value)) as { time: number; bytes: number }
      checkpoints.push({ seq, time, bytes })
    })
    checkpoints.sort((a, b) => a.seq - b.seq)
    const objects = new Map<number, string>()
    objectKeys.forEach(({ seq }, i) => {
      const entry = objectValues[i]
      if (entry !== null && entry !== undefined && entry.operation === 'PUT')
        objects.set(seq, decoder.decode(entry.value))
    })
    return { checkpoints, trimmedThrough, objects }
  }

  /**
   * Counts the tally's noted appends up to the stream seq `held.streamLast` if they are all the
   * subject holds beyond what the tally counted (the subject's retained count says so); false
   * (nothing changed) when the stream holds others: another node's, or appends not noted.
   *
   * @remarks Why (issue 15, session 9): reading the headers of what is new costs the nats-servers
   * far more than the entries read. On nats-server 2.9.10 a filtered consumer computes its pending
   * count by walking every message of the stream, every session's, between its start and its
   * block's end or start (`FilteredState`), and when it walks from the start it does so again for
   * every message it delivers: at [C1]'s 1,000 updates/s over 10 sessions that was a third to a
   * half of the servers' CPU. The
   * count (`subjects_filter`) comes from the servers' per-subject totals instead, with no walk.
   * It is exact: every message the subject held when the count was taken has a seq ≤ `streamLast`,
   * a noted append is stored, and a purge resets the tally (new `trimmedThrough`); equal counts
   * then mean the tally plus those notes are every message through `streamLast`.
   */
  function countNoted(tally: Tally, held: { count: number; streamLast: number }): boolean {
    // A new checkpoint below what was counted: the entries above it must be read to count again.
    if (tally.sinceScannedThrough < tally.scannedThrough) return false
    const fresh = tally.noted.filter(
      (append) => append.seq > tally.scannedThrough && append.seq <= held.streamLast,
    )
    if (tally.count + fresh.length !== held.count) return false
    for (const append of fresh) countEntry(tally, append.seq, append.size, append.time)
    tally.scannedThrough = Math.max(tally.scannedThrough, held.streamLast)
    tally.sinceScannedThrough = Math.max(tally.sinceScannedThrough, held.streamLast)
    tally.noted = tally.noted.filter((append) => append.seq > held.streamLast)
    return true
  }

  /** Notes acked appends of `sessionId` in its tally (if it has one, of this incarnation). */
  function noteAppends(sessionId: string, incarnation: string, appends: NotedAppend[]): void {
    const tally = tallies.get(sessionId)
    if (tally === undefined || tally.incarnation !== incarnation) return
    // Too many unread: forget them all; the next meta read counts by reading the stream.
    if (tally.noted.length + appends.length > NOTED_APPENDS_MAX) tally.noted = []
    else tally.noted.push(...appends)
  }

  /** The meta of a session with its record and index (undefined when it does not exist). */
  async function describe(
    sessionId: string,
  ): Promise<
    { record: SessionRecord; index: SessionIndex; meta: SessionMeta; view: LeaderView } | undefined
  > {
    const record = await readRecord(sessionId)
    if (record === undefined) return undefined
    const subject = subjectOf(sessionId, record)
    // The subject's last seq and message count, and the stream's last seq, from a checked leader
    // (see checkedLeaderView: never a cut-off leader's answer).
    const [sessionIndex, view] = await Promise.all([
      readIndex(sessionId, record),
      checkedLeaderView(resources, subject),
    ])
    const last = view.last
    const held = { count: view.count, streamLast: view.streamLast }
    const { trimmedThrough } = sessionIndex
    const latest = sessionIndex.checkpoints[sessionIndex.checkpoints.length - 1]
    const checkpointSeq = latest?.seq ?? 0
    const retainedFrom = Math.max(0, trimmedThrough - record.offset)
    let tally = tallies.get(sessionId)
    if (
      tally === undefined ||
      tally.incarnation !== record.incarnation ||
      tally.trimmedThrough !== trimmedThrough
    ) {
      // No checkpoint counted yet: set just below.
      tally = { ...emptyTally(record.incarnation), trimmedThrough, scannedThrough: retainedFrom }
      tally.checkpointSeq = Number.NaN
    }
    if (tally.checkpointSeq !== checkpointSeq) {
      // A new tally or a new checkpoint: count what lies above it again (after a compaction, a
      // few entries).
      tally.checkpointSeq = checkpointSeq
      tally.sinceScannedThrough = Math.max(retainedFrom, checkpointSeq - record.offset)
      tally.since = { count: 0, bytes: 0 }
    }
    tallies.set(sessionId, tally)
    let isCounted = countNoted(tally, held)
    if (!isCounted && appending.size > 0) {
      // Appends of ours stored but not yet acked make the subject hold more than we know of.
      await settled([...appending], APPEND_SETTLE_WAIT_MS)
      isCounted = countNoted(tally, held)
    }
    const scanFrom = Math.min(tally.scannedThrough, tally.sinceScannedThrough)
    if (!isCounted && last !== undefined && last > scanFrom) {
      // Someone else wrote (another node), or this node's notes are incomplete: read the headers
      // of what is new. An estimate for the compaction policy: read wherever the consumer lands
      // (one consumer create, not the leader-placed read's three on average, each a meta-layer
      // proposal).
      const scanned = await scanSubject(
        resources,
        subject,
        { fromSeq: scanFrom + 1, toSeq: last, limit: Number.POSITIVE_INFINITY, headersOnly: true },
        { anyReplica: true, view },
      )
      for (const message of scanned) countEntry(tally, message.streamSeq, message.size, message.time)
      // The subject holds nothing in (last, scannedThrough] (counts may be complete beyond its
      // last message, through the stream's last seq): both counts are complete through either.
      const through = Math.max(tally.scannedThrough, last)
      tally.scannedThrough = through
      tally.sinceScannedThrough = Math.max(tally.sinceScannedThrough, through)
      tally.noted = tally.noted.filter((append) => append.seq > through)
    } else if (!isCounted) {
      // Nothing above `scanFrom` (a checkpoint at the last entry): nothing to count above it.
      tally.sinceScannedThrough = Math.max(tally.sinceScannedThrough, tally.scannedThrough)
    }
    const checkpointTime = sessionIndex.checkpoints.reduce((max, cp) => Math.max(max, cp.time), 0)
    const meta: SessionMeta = {
      sessionId,
      lastSeq: Math.max(
        last === undefined ? 0 : last + record.offset,
        latest?.seq ?? 0,
        trimmedThrough,
        record.offset,
      ),
      checkpointSeq,
      logCount: tally.count,
      logBytes: tally.bytes,
      checkpointBytes: latest?.bytes ?? 0,
      createdAt: record.createdAt,
      updatedAt: Math.max(record.createdAt, tally.latestTime, checkpointTime),
      trimmedThrough,
      sinceCheckpoint: { ...tally.since },
    }
    return { record, index: sessionIndex, meta, view }
  }

  /** Log entries of a session in [fromSeq, toSeq] (session seqs), at most `limit`, with their bytes. */
  async function readEntries(
    sessionId: string,
    record: SessionRecord,
    fromSeq: number,
    toSeq: number,
    limit: number,
    view?: LeaderView,
  ): Promise<LogEntry[]> {
    const scanned = await scanSubject(
      resources,
      subjectOf(sessionId, record),
      { fromSeq: fromSeq - record.offset, toSeq: toSeq - record.offset, limit, headersOnly: false },
      view === undefined ? {} : { view },
    )
    return Promise.all(scanned.map((message) => toEntry(message, record)))
  }

  async function toEntry(message: ScannedMessage, record: SessionRecord): Promise<LogEntry> {
    const seq = message.streamSeq + record.offset
    if (message.object === undefined) return { seq, time: message.time, update: message.data }
    const update = await updates.getBlob(message.object)
    if (update === null) {
      throw new ColloquyError('internal', `log entry ${seq} refers to a missing object ${message.object}`)
    }
    return { seq, time: message.time, update }
  }

  async function readState(
    sessionId: string,
    record: SessionRecord,
    info: CheckpointInfo,
  ): Promise<Checkpoint> {
    const state = await states.getBlob(`${indexPrefix(sessionId, record)}/${padSeq(info.seq)}`)
    if (state === null)
      throw new ColloquyError('internal', `checkpoint ${info.seq} of ${sessionId} has no state`)
    return { seq: info.seq, time: info.time, state }
  }

  const store: JetStreamStore = {
    seqs: 'sparse',

    lastLogSeq(sessionId) {
      return track(async () => {
        assertSessionId(sessionId)
        const record = await readRecord(sessionId)
        if (record === undefined) return 0
        const last = await lastStreamSeq(resources, subjectOf(sessionId, record))
        return last === undefined ? 0 : last + record.offset
      }, 'read')
    },

    append(entries) {
      return track(async () => {
        const groups = groupAppendEntries(entries)
        if (groups.size === 0) return []
        try {
          const sessionRecords = new Map<string, SessionRecord>()
          await Promise.all(
            [...groups].map(async ([sessionId, group]) => {
              sessionRecords.set(sessionId, await ensureRecord(sessionId, group[0]!.time))
            }),
          )
          // Large updates first, so every log message below is published in call order.
          const objectNames = new Map<number, string>()
          await Promise.all(
            entries.map(async (entry, i) => {
              if (entry.update.byteLength <= inlineMaxBytes) return
              const record = sessionRecords.get(entry.sessionId)!
              const name = `${indexPrefix(entry.sessionId, record)}/u-${newIncarnation()}`
              await updates.putBlob({ name }, entry.update)
              objectNames.set(i, name)
            }),
          )
          const acks = entries.map((entry, i) => {
            const record = sessionRecords.get(entry.sessionId)!
            const h = headers()
            h.set(LogHeader.time, String(entry.time))
            h.set(LogHeader.size, String(entry.update.byteLength))
            const object = objectNames.get(i)
            if (object !== undefined) h.set(LogHeader.object, object)
            // Issued synchronously in call order on one connection: the stream orders them so.
            // Pipelined, and never retried by the client: a retry could overtake a later one.
            return publisher.publish(
              subjectOf(entry.sessionId, record),
              object === undefined ? entry.update : undefined,
              h,
            )
          })
          // Noted in the tallies as the acks come in, before a meta read waiting on `appending`
          // goes on.
          const noting = Promise.all(acks).then((stored) => {
            const notes = new Map<string, NotedAppend[]>()
            entries.forEach((entry, i) => {
              let list = notes.get(entry.sessionId)
              if (list === undefined) {
                list = []
                notes.set(entry.sessionId, list)
              }
              list.push({ seq: stored[i]!, size: entry.update.byteLength, time: entry.time })
            })
            for (const [sessionId, appends] of notes) {
              noteAppends(sessionId, sessionRecords.get(sessionId)!.incarnation, appends)
            }
            return stored
          })
          appending.add(noting)
          let stored: number[]
          try {
            stored = await noting
          } finally {
            appending.delete(noting)
          }
          const seqs = stored.map((seq, i) => seq + sessionRecords.get(entries[i]!.sessionId)!.offset)
          // Remember where large updates live, so trims and deletes can remove them.
          await Promise.all(
            [...objectNames].map(([i, name]) => {
              const entry = entries[i]!
              const record = sessionRecords.get(entry.sessionId)!
              return index.put(
                `${indexPrefix(entry.sessionId, record)}.u.${padSeq(seqs[i]!)}`,
                encoder.encode(name),
              )
            }),
          )
          return seqs
        } catch (error) {
          throw unavailable(error)
        }
      })
    },

    load(sessionId) {
      return track(async (): Promise<StoredSession> => {
        assertSessionId(sessionId)
        const described = await describe(sessionId)
        if (described === undefined) return emptyStoredSession()
        const { record, index: sessionIndex, meta, view } = described
        const latest = sessionIndex.checkpoints[sessionIndex.checkpoints.length - 1]
        const checkpoint = latest === undefined ? undefined : await readState(sessionId, record, latest)
        const fromSeq = (checkpoint?.seq ?? 0) + 1
        const log = await readEntries(
          sessionId,
          record,
          fromSeq,
          Number.MAX_SAFE_INTEGER,
          Number.POSITIVE_INFINITY,
          view, // checked by describe a moment before: the log is read through its last seq
        )
        const newest = log[log.length - 1]
        const lastSeq = Math.max(meta.lastSeq, newest?.seq ?? 0)
        return { meta: { ...meta, lastSeq }, checkpoint, log }
      }, 'read')
    },

    readLog(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeLogRange(range)
        if (window === undefined) return []
        const record = await readRecord(sessionId)
        if (record === undefined) return []
        return readEntries(sessionId, record, window.fromSeq, window.toSeq, window.limit)
      }, 'read')
    },

    getMeta(sessionId) {
      return track(async () => {
        assertSessionId(sessionId)
        return (await describe(sessionId))?.meta
      }, 'read')
    },

    listSessions() {
      return track(async () => {
        // Deleted sessions are listed too; describe() finds no record for them.
        const ids = (await listKvKeys(resources, names.sessions)).map(decodeSessionToken)
        ids.sort()
        const metas = await Promise.all(ids.map(async (sessionId) => (await describe(sessionId))?.meta))
        return metas.filter((meta): meta is SessionMeta => meta !== undefined)
      }, 'read')
    },

    putCheckpoint(sessionId, checkpoint, options = {}) {
      return track(async () => {
        assertCheckpoint(sessionId, checkpoint, options)
        let record = await readRecord(sessionId)
        if (options.requireNew === true && record !== undefined) {
          throw new ColloquyError('session-exists', `session ${sessionId} already exists`)
        }
        if (options.requireExisting === true && record === undefined) {
          throw new ColloquyError('session-not-found', `session ${sessionId} no longer exists`)
        }
        if (record === undefined) {
          // A session started by a checkpoint (import, fork): its appends come after its seq.
          record = await createRecord(sessionId, checkpoint.time, checkpoint.seq)
          if (record === undefined) {
            if (options.requireNew === true) {
              throw new ColloquyError('session-exists', `session ${sessionId} already exists`)
            }
            record = await readRecord(sessionId)
            if (record === undefined)
              throw new ColloquyError('storage-unavailable', 'session record vanished')
          }
        }
        const prefix = indexPrefix(sessionId, record)
        // 1. The state, then its index key: a checkpoint is visible only once its state is stored.
        await states.putBlob({ name: `${prefix}/${padSeq(checkpoint.seq)}` }, checkpoint.state)
        await index.put(
          `${prefix}.c.${padSeq(checkpoint.seq)}`,
          toJson({ time: checkpoint.time, bytes: checkpoint.state.byteLength }),
        )
        const trimThrough = options.trimLogThrough ?? 0
        if (trimThrough > 0) {
          // 2. The marker before the purge: a reader that misses purged entries then sees it.
          await index.put(`${prefix}.t.${padSeq(trimThrough)}`, new Uint8Array(0))
          const streamThrough = trimThrough - record.offset
          if (streamThrough > 0) {
            await jsm.streams.purge(names.stream, {
              filter: subjectOf(sessionId, record),
              seq: streamThrough + 1,
            })
          }
          const sessionIndex = await readIndex(sessionId, record)
          await Promise.all(
            [...sessionIndex.objects]
              .filter(([seq]) => seq <= trimThrough)
              .map(async ([seq, name]) => {
                await updates.delete(name)
                await index.purge(`${prefix}.u.${padSeq(seq)}`)
              }),
          )
        }
        // 3. Older checkpoints last: until then they are merely extra.
        const trimBefore = options.trimCheckpointsBefore ?? 0
        const deleted = new Set(options.deleteCheckpoints ?? [])
        if (trimBefore > 0 || deleted.size > 0) {
          const sessionIndex = await readIndex(sessionId, record)
          await Promise.all(
            sessionIndex.checkpoints
              .filter(
                (info) => info.seq !== checkpoint.seq && (info.seq < trimBefore || deleted.has(info.seq)),
              )
              .map(async (info) => {
                await index.purge(`${prefix}.c.${padSeq(info.seq)}`)
                await states.delete(`${prefix}/${padSeq(info.seq)}`)
              }),
          )
        }
      })
    },

    listCheckpoints(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeCheckpointRange(range)
        if (window === undefined) return []
        const record = await readRecord(sessionId)
        if (record === undefined) return []
        const infos = selectCheckpoints((await readIndex(sessionId, record)).checkpoints, window)
        return Promise.all(infos.map((info) => readState(sessionId, record, info)))
      }, 'read')
    },

    listCheckpointInfo(sessionId, range) {
      return track(async () => {
        assertSessionId(sessionId)
        const window = normalizeCheckpointRange(range)
        if (window === undefined) return []
        const record = await readRecord(sessionId)
        if (record === undefined) return []
        return selectCheckpoints((await readIndex(sessionId, record)).checkpoints, window)
      }, 'read')
    },

    deleteSession(sessionId) {
      return track(async () => {
        assertSessionId(sessionId)
        const record = await readRecord(sessionId)
        if (record === undefined) return
        // The record first: from then on the session does not exist for any node, and a new one of
        // the same id gets a new incarnation (other subjects and keys), so leftovers never leak.
        await sessions.purge(encodeSessionToken(sessionId))
        records.delete(sessionId)
        tallies.delete(sessionId)
        const prefix = indexPrefix(sessionId, record)
        const sessionIndex = await readIndex(sessionId, record)
        await jsm.streams.purge(names.stream, { filter: subjectOf(sessionId, record) })
        await Promise.all([
          ...sessionIndex.checkpoints.map((info) => states.delete(`${prefix}/${padSeq(info.seq)}`)),
          ...[...sessionIndex.objects.values()].map((name) => updates.delete(name)),
        ])
        const keys = await listKvKeys(resources, names.index, `${prefix}.>`)
        await Promise.all(keys.map((key) => index.purge(key)))
      })
    },

    release(sessionId) {
      tallies.delete(sessionId)
      records.delete(sessionId)
    },

    close() {
      if (closing === undefined) {
        isClosed = true
        closing = (async () => {
          await Promise.allSettled([...inFlight])
          records.clear()
          tallies.clear()
          publisher.close()
          await options.onClose?.()
        })()
      }
      return closing
    },
  }
  return store
}

/** Resolves once every promise settled, or after `ms`, whichever comes first. */
async function settled(promises: readonly Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    }),
  ])
  clearTimeout(timer)
}

function selectCheckpoints(
  checkpoints: readonly CheckpointInfo[],
  window: { fromSeq: number; toSeq: number; limit: number; reverse: boolean },
): CheckpointInfo[] {
  const inRange = checkpoints.filter((info) => info.seq >= window.fromSeq && info.seq <= window.toSeq)
  if (window.reverse) inRange.reverse()
  return inRange.slice(0, window.limit)
}

/** A short random id (incarnations, object names). */
function newIncarnation(): string {
  return crypto.randomUUID().replaceAll('-', '').slice(0, 16)
}
