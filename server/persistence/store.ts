// The storage interface every backend implements (LevelDB, memory, JetStream in a cluster).
// It knows bytes, seqs and times; it knows nothing of Yjs, sockets or sessions in memory.
// The log assigns seqs: a process never decides the seq of what it appends.

/** One entry of a session's log: an update stored at `seq`, at server time `time` (ms since epoch). */
export interface LogEntry {
  readonly seq: number
  readonly time: number
  readonly update: Uint8Array
}

/** The full state of a session at `seq`, as one Yjs update. */
export interface Checkpoint {
  readonly seq: number
  readonly time: number
  readonly state: Uint8Array
}

/** A checkpoint without its state: what retention planning and listings need. */
export interface CheckpointInfo {
  readonly seq: number
  readonly time: number
  /** Bytes of its state. */
  readonly bytes: number
}

/** What the store keeps about a session beside its log. */
export interface SessionMeta {
  readonly sessionId: string
  /** The highest seq ever stored for this session, in its log or as a checkpoint (0 when none). */
  readonly lastSeq: number
  /** The seq of the latest checkpoint (0 when none). */
  readonly checkpointSeq: number
  /** Log entries currently stored (after trimming). */
  readonly logCount: number
  /** Bytes of update payload currently in the log. */
  readonly logBytes: number
  /** Bytes of the latest checkpoint's state. */
  readonly checkpointBytes: number
  readonly createdAt: number
  readonly updatedAt: number
  /**
   * Log entries with seq ≤ this were trimmed (folded into checkpoints); every entry above it is
   * retained. Only stores with sparse seqs ({@link Store.seqs} `'sparse'`) report it; with dense
   * seqs readers infer the trimmed part from the first retained seq.
   */
  readonly trimmedThrough?: number
  /**
   * Log entries with seq above {@link checkpointSeq}, and their bytes, when the store counts them
   * exactly. A sparse store reports them: its seq span counts other sessions' entries, and
   * `logCount` still holds the entries kept below the checkpoint (retention), so neither bounds
   * what a load must replay after a compaction.
   */
  readonly sinceCheckpoint?: { readonly count: number; readonly bytes: number }
}

/** One update to append; the store gives it its seq (see {@link Store.append}). */
export interface AppendEntry {
  readonly sessionId: string
  readonly time: number
  readonly update: Uint8Array
}

/**
 * How a store numbers a session's log: `dense` (1, 2, 3, … with no gap: LevelDB, memory) or
 * `sparse` (strictly increasing, with gaps: the JetStream store, whose seqs are a stream's shared
 * by every session). Readers that find gaps treat them as holes only in a dense log.
 */
export type SeqNumbering = 'dense' | 'sparse'

/** Everything needed to rebuild a session: its meta, latest checkpoint and the log after it. */
export interface StoredSession {
  readonly meta: SessionMeta | undefined
  readonly checkpoint: Checkpoint | undefined
  /** Entries with seq greater than the checkpoint's (all entries when there is none), in seq order. */
  readonly log: readonly LogEntry[]
}

/** A range of a session's log. Bounds are inclusive; missing bounds mean "from the start" / "to the end". */
export interface LogRange {
  readonly fromSeq?: number
  readonly toSeq?: number
  readonly limit?: number
}

/** A range of a session's checkpoints. Bounds are inclusive; `reverse` reads newest first. */
export interface CheckpointRange {
  readonly fromSeq?: number
  readonly toSeq?: number
  readonly limit?: number
  readonly reverse?: boolean
}

/** Options of {@link Store.putCheckpoint}. */
export interface PutCheckpointOptions {
  /** Delete log entries with seq ≤ this in the same atomic batch as the checkpoint (≤ checkpoint seq). */
  readonly trimLogThrough?: number
  /** Delete older checkpoints with seq < this, in the same atomic batch (≤ checkpoint seq). */
  readonly trimCheckpointsBefore?: number
  /** Delete the checkpoints at exactly these seqs (each < checkpoint seq), in the same atomic batch. */
  readonly deleteCheckpoints?: readonly number[]
  /**
   * Refuse (`session-exists`, nothing written) if the session already has a meta: the
   * create-if-absent of import and fork, checked under the session's write lock.
   */
  readonly requireNew?: boolean
  /**
   * Refuse (`session-not-found`) unless the session exists: a compaction that raced a delete must
   * not bring the deleted session back.
   */
  readonly requireExisting?: boolean
}

/** One write of a {@link RecordStore}: a put or a delete of one key outside every session range. */
export type RecordOp =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: Uint8Array }

/**
 * Keyed records that live beside the sessions in the same database (turns: kind byte `T`).
 *
 * @remarks Keys must start with a kind byte of keys.ts that no session key uses; the store does
 * not interpret them. `write` is one atomic batch, durable (fsync'd) before it resolves, like
 * `append`.
 */
export interface RecordStore {
  /** Writes every op in one atomic, durable batch. */
  write(ops: readonly RecordOp[]): Promise<void>
  /** Every record with `gte` ≤ key < `lt`, in key order. */
  scan(range: { readonly gte: Uint8Array; readonly lt: Uint8Array }): Promise<Array<[Uint8Array, Uint8Array]>>
}

/**
 * A durable store of session logs, checkpoints and meta.
 *
 * @remarks
 * - `append` is the group-commit primitive: every entry of one call is written in one atomic batch,
 *   and the returned promise resolves only once that batch is durable (fsync'd for LevelDB), with
 *   the seq the store gave each entry. On rejection nothing of the batch is visible (or, for a
 *   store that cannot be atomic across sessions, what is visible is a prefix that a retry repeats
 *   harmlessly: Yjs updates are idempotent), and the caller may retry the same entries.
 * - **The store assigns seqs**: each entry gets a seq above every seq stored for its session
 *   before, in call order (so a session's entries keep their order). Dense stores give `lastSeq + 1`,
 *   `+ 2`, …; sparse ones ({@link SeqNumbering}) give strictly increasing seqs with gaps. Seqs and
 *   times are integers in [0, 2^53).
 * - Session ids follow `shared/session-id.ts` (others are refused with `invalid-session-id`); a
 *   session's keys never collide with those of another session, even when one id is a prefix of
 *   the other.
 */
export interface Store {
  /** How this store numbers a session's log (`dense` unless said otherwise). */
  readonly seqs?: SeqNumbering
  /**
   * Appends entries of any number of sessions in one atomic, durable batch; resolves with the seq
   * of each entry, in call order.
   */
  append(entries: readonly AppendEntry[]): Promise<readonly number[]>
  /** Reads the latest checkpoint and the log after it. */
  load(sessionId: string): Promise<StoredSession>
  /** Reads log entries in seq order within `range`. */
  readLog(sessionId: string, range?: LogRange): Promise<LogEntry[]>
  /** Reads the meta of a session, or undefined if it has never been written. */
  getMeta(sessionId: string): Promise<SessionMeta | undefined>
  /** Lists the meta of every stored session, in session id order. */
  listSessions(): Promise<SessionMeta[]>
  /** Writes a checkpoint (and trims what the options allow) in one atomic, durable batch. */
  putCheckpoint(sessionId: string, checkpoint: Checkpoint, options?: PutCheckpointOptions): Promise<void>
  /** Reads the checkpoints of a session within `range` (default: all), in seq order unless `reverse`. */
  listCheckpoints(sessionId: string, range?: CheckpointRange): Promise<Checkpoint[]>
  /**
   * Like {@link listCheckpoints} without the states: seq, time and state size only.
   *
   * @remarks Optional so that wrapping stores need not forward it; call it through
   * {@link listCheckpointInfo}, which falls back to `listCheckpoints`. Both built-in stores have it:
   * the LevelDB one never holds more than a few states at once and caches what it learnt.
   */
  listCheckpointInfo?(sessionId: string, range?: CheckpointRange): Promise<CheckpointInfo[]>
  /** Deletes every key of a session. */
  deleteSession(sessionId: string): Promise<void>
  /** Drops any cached data for a session that is no longer loaded (its data stays stored). */
  release(sessionId: string): void
  /** Closes the store; pending operations finish first. */
  close(): Promise<void>
  /** Records beside the sessions (turns); absent in stores that keep only sessions. */
  readonly records?: RecordStore
}

/** {@link Store.listCheckpointInfo} when the store has it, else `listCheckpoints` without the states. */
export async function listCheckpointInfo(
  store: Store,
  sessionId: string,
  range?: CheckpointRange,
): Promise<CheckpointInfo[]> {
  if (store.listCheckpointInfo !== undefined) return store.listCheckpointInfo(sessionId, range)
  const checkpoints = await store.listCheckpoints(sessionId, range)
  return checkpoints.map(({ seq, time, state }) => ({ seq, time, bytes: state.byteLength }))
}

/** Whether `store` numbers logs with gaps (see {@link SeqNumbering}). */
export function hasSparseSeqs(store: Store): boolean {
  return store.seqs === 'sparse'
}
