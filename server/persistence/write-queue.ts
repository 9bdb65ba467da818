// Group commit: gathers updates of every session into one durable Store.append and reports which
// seqs became durable. Owns ordering, batching, retries and failure isolation; knows nothing of
// sockets or Yjs.

// Why not y-leveldb on the hot path: LeveldbPersistence#storeUpdate runs every put of every document
// through one promise chain, one at a time, each doing an iterator read (the current clock) and then
// a put of its own; none is written with `sync`, so "stored" there means "in the OS page cache", and
// errors inside the chain are logged and swallowed. We need the opposite: many updates of many
// sessions in one atomic batch, fsync'd once, with failures surfaced and retried before any ack.

import { ColloquyError } from '../../shared/errors.js'
import { assertSessionId, assertUint53 } from './keys.js'
import type { AppendEntry, Store } from './store.js'

/** Options of {@link createWriteQueue}. */
export interface WriteQueueOptions {
  readonly store: Store
  /**
   * When a peer waits for an ack ({@link WriteQueue.expedite}): how long the oldest queued entry may
   * wait for others to join its batch (default 2 ms).
   */
  readonly flushDelayMs?: number
  /**
   * When nobody waits for an ack: how long the oldest queued entry may wait (default: the same as
   * `flushDelayMs`; never less). A batch costs a few hundred µs of CPU whatever its size (the fsync
   * alone ~140 µs on a virtio disk), so at a few thousand updates/s the batch count decides the
   * CPU per update.
   */
  readonly lazyFlushDelayMs?: number
  /**
   * When nobody waits: start a batch at once when this many entries are queued, without waiting out
   * the lazy delay (default 1024). Why: building a batch holds the event loop a few µs per entry, so
   * at tens of thousands of updates per second a long lazy delay would mean one long stall; past a
   * thousand entries a batch's fixed cost is spread thin anyway.
   */
  readonly lazyBatchEntries?: number
  /** Start a batch at once when this many bytes are queued (default 4 MiB); also a batch's size bound. */
  readonly maxBatchBytes?: number
  /** Start a batch at once when this many entries are queued (default 10 000); also a batch's bound. */
  readonly maxBatchEntries?: number
  /** First retry delay after a failed batch (default 10 ms), doubling per consecutive failure. */
  readonly retryMinMs?: number
  /** Longest retry delay (default 1000 ms). */
  readonly retryMaxMs?: number
  /**
   * Called once per successful batch (or part of a split batch): for each session, the ordinal and
   * the store-assigned seq of its last entry now durable; then the entries and their seqs, in
   * append order (for the distribution; do not keep the arrays).
   */
  readonly onCommit?: (
    durable: ReadonlyMap<string, DurableMark>,
    entries: readonly AppendEntry[],
    seqs: readonly number[],
  ) => void
  /**
   * Called after each failed batch that will be retried, with the error and the count of
   * consecutive failures (1, 2, …).
   */
  readonly onError?: (error: unknown, attempt: number) => void
  /**
   * Called when the store refused a session's entries with an error that no retry can fix
   * ({@link WriteQueueOptions.isPermanentError}): every entry of that session not yet durable was
   * dropped, and never will be. The caller must end the session's document (it holds changes no
   * seq will replay) and close its writers; the session reloads from disk next time.
   */
  readonly onSessionFailed?: (sessionId: string, error: unknown) => void
  /** Whether a failed append cannot succeed on retry (default {@link isPermanentStoreError}). */
  readonly isPermanentError?: (error: unknown) => boolean
  /** Called on the first successful batch after one or more failures. */
  readonly onRecover?: () => void
}

/** Where a session's durable entries reached, as {@link WriteQueueOptions.onCommit} reports it. */
export interface DurableMark {
  /** The ordinal {@link WriteQueue.enqueue} returned for the session's last entry now durable. */
  readonly ordinal: number
  /** The seq the store gave that entry. */
  readonly seq: number
  /**
   * The ordinals of every entry of the commit (all sessions; ordinals are unique), and the seqs the
   * store gave them (same order): to find the seq of one particular entry of the session.
   */
  readonly ordinals: readonly number[]
  readonly seqs: readonly number[]
}

/** A group-commit queue in front of a {@link Store}. */
export interface WriteQueue {
  /**
   * Queues an update to be written durably; returns its ordinal: how many entries (of every
   * session) were enqueued before it. The store gives it its seq when it commits (see onCommit).
   *
   * @remarks Why ordinals: the log, not this process, assigns seqs, so a session tracks its acks by
   * the ordinals of what it queued and learns the seqs at commit. Ordinals rise with every call, so
   * "every entry up to ordinal N of this session is durable" is one comparison. An invalid entry
   * throws (TypeError or `invalid-session-id`) and is not queued. The queue keeps a reference to
   * `entry.update` until it is durable: do not mutate it. Throws `shutting-down` once
   * {@link WriteQueue.close} was called.
   */
  enqueue(entry: AppendEntry): number
  /**
   * Resolves once everything enqueued before the call is durable (or was dropped with its session,
   * see {@link WriteQueueOptions.onSessionFailed}), waiting through any retries.
   */
  flush(): Promise<void>
  /**
   * Someone waits for what is queued now (a sync-status): commit it within `flushDelayMs` rather
   * than the lazy delay. Does nothing when nothing is queued.
   */
  expedite(): void
  /** True from a failed batch until the next successful one. */
  readonly isFailing: boolean
  /** Update bytes not yet durable (queued and in flight). */
  readonly queuedBytes: number
  /** Entries not yet durable (queued and in flight). */
  readonly queuedEntries: number
  /** Entries of `sessionId` not yet durable. */
  pendingFor(sessionId: string): number
  /**
   * Refuses further entries (enqueue throws from now on), then resolves once everything queued is
   * durable. Leaves no timer behind.
   *
   * @remarks Like {@link WriteQueue.flush} it waits through retries, so with a store that keeps
   * failing it does not resolve: bound it from outside if shutdown must not wait forever.
   */
  close(): Promise<void>
}

interface FlushWaiter {
  /** Resolve once every entry whose ordinal (count of entries enqueued before it) is below this settled. */
  readonly target: number
  readonly resolve: () => void
}

/**
 * Whether a failed {@link Store.append} cannot succeed by retrying the same entries.
 *
 * @remarks Permanent: the store's own refusals of the entries (RangeError or TypeError for an
 * invalid value, a {@link ColloquyError} marked not retryable such as `invalid-session-id`).
 * Everything else, I/O errors and a cluster without quorum included, is presumed to pass and is
 * retried.
 */
export function isPermanentStoreError(error: unknown): boolean {
  if (error instanceof RangeError || error instanceof TypeError) return true
  if (error instanceof ColloquyError) return !error.info.isRetryable
  return false
}

/**
 * Creates a group-commit queue writing to `options.store`.
 *
 * @remarks
 * - At most one batch is in flight. Entries enqueued meanwhile form the next batch, which starts
 *   once the previous one settled and the oldest of them has waited its delay (at once if it already
 *   has): the slower the disk, the bigger the batches.
 * - The delay is `lazyFlushDelayMs` unless someone waits for a queued entry to be durable
 *   ({@link WriteQueue.expedite}, {@link WriteQueue.flush}); then it is `flushDelayMs`. Why: an
 *   update nobody waits for is no less safe on disk 100 ms later (its sender keeps it until acked,
 *   and it was never acked), while fewer, larger batches cost much less CPU per update. An ack is
 *   never held longer than `flushDelayMs` plus the commit in flight.
 * - An entry is reported durable (`onCommit`, `flush`, `pendingFor`) only after the batch holding it
 *   resolved. A batch that failed with a retryable error (I/O) goes back to the front of the queue,
 *   in order, and is retried with exponential backoff; newer entries may join the retry.
 * - A batch that failed with a permanent error (an entry the store refuses) is not retried as
 *   a whole: with one session in it, that session's entries are dropped at once; with several, each
 *   session's part is appended on its own, once, to find which session the error belongs to. Parts
 *   that succeed are durable, parts refused for good drop their session ({@link
 *   WriteQueueOptions.onSessionFailed}), parts failing otherwise are retried as above. So one
 *   session's bad entries never stop the others, and never make the queue "failing".
 * - Batches are taken from the front of one FIFO, so a session's entries become durable in enqueue
 *   order (across sessions too, except while a permanently failed batch is being split).
 */
export function createWriteQueue(options: WriteQueueOptions): WriteQueue {
  const { store } = options
  const flushDelayMs = options.flushDelayMs ?? 2
  const lazyFlushDelayMs = Math.max(flushDelayMs, options.lazyFlushDelayMs ?? flushDelayMs)
  const maxBatchBytes = options.maxBatchBytes ?? 4 * 1024 * 1024
  const maxBatchEntries = options.maxBatchEntries ?? 10_000
  const lazyBatchEntries = Math.min(maxBatchEntries, options.lazyBatchEntries ?? 1024)
  const retryMinMs = options.retryMinMs ?? 10
  const retryMaxMs = options.retryMaxMs ?? 1000
  const isPermanentError = options.isPermanentError ?? isPermanentStoreError

  /** Entries waiting for a batch, oldest first. */
  let queue: AppendEntry[] = []
  /** The ordinal of each entry of `queue` (how many entries were enqueued before it). */
  let queueOrdinals: number[] = []
  let queueBytes = 0
  let inFlight: readonly AppendEntry[] | undefined
  /** The ordinal of each entry of `inFlight`; the first is the lowest ordinal not yet settled. */
  let inFlightOrdinals: readonly number[] = []
  /** The gather delay or the retry backoff; never both, and none while a batch is in flight. */
  let timer: NodeJS.Timeout | undefined
  /** When the gather timer fires (performance.now() ms); Infinity without one. */
  let timerDue = Number.POSITIVE_INFINITY
  /** When the oldest entry now queued was enqueued (performance.now() ms). */
  let oldestQueuedAt = 0
  /** Entries handed to batches so far; those counted below `urgentCount` have someone waiting. */
  let dispatchedCount = 0
  let urgentCount = 0
  let isWaitingToRetry = false
  let consecutiveFailures = 0
  let undurableBytes = 0
  let undurableEntries = 0
  let enqueuedCount = 0
  const pendingBySession = new Map<string, number>()
  let flushWaiters: FlushWaiter[] = []
  let isClosed = false

  /** Arms (or brings forward) the gather timer; `isAfterCommit`: start an overdue batch at once. */
  function schedule(isAfterCommit = false): void {
    if (inFlight !== undefined || isWaitingToRetry || queue.length === 0) return
    if (queueBytes >= maxBatchBytes || queue.length >= lazyBatchEntries) {
      startBatch()
      return
    }
    const due = oldestQueuedAt + (dispatchedCount < urgentCount ? flushDelayMs : lazyFlushDelayMs)
    if (timer !== undefined) {
      if (timerDue <= due) return
      clearTimeout(timer)
    }
    const wait = due - performance.now()
    if (isAfterCommit && wait <= 0) {
      // Natural group commit: what arrived during the last batch and has waited enough goes now.
      startBatch()
      return
    }
    timerDue = due
    timer = setTimeout(startBatch, Math.max(0, wait))
  }

  /** Takes the next batch off the front of the queue, with its ordinals into `inFlightOrdinals`. */
  function takeBatch(): AppendEntry[] {
    if (queueBytes <= maxBatchBytes && queue.length <= maxBatchEntries) {
      const batch = queue
      inFlightOrdinals = queueOrdinals
      queue = []
      queueOrdinals = []
      queueBytes = 0
      return batch
    }
    let count = 0
    let bytes = 0
    // At least one entry, so a single update larger than maxBatchBytes still goes out.
    while (count < queue.length && count < maxBatchEntries) {
      const size = queue[count]!.update.byteLength
      if (count > 0 && bytes + size > maxBatchBytes) break
      bytes += size
      count++
    }
    const batch = queue.slice(0, count)
    inFlightOrdinals = queueOrdinals.slice(0, count)
    queue = queue.slice(count)
    queueOrdinals = queueOrdinals.slice(count)
    queueBytes -= bytes
    return batch
  }

  /** The ordinal of the oldest entry neither durable nor dropped (enqueuedCount when none). */
  function lowestUnsettled(): number {
    // In-flight entries came off the front of the queue, and failed ones go back to its front.
    if (inFlight !== undefined) return inFlightOrdinals[0] ?? enqueuedCount
    return queueOrdinals[0] ?? enqueuedCount
  }

  function startBatch(): void {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    timerDue = Number.POSITIVE_INFINITY
    isWaitingToRetry = false
    if (inFlight !== undefined || queue.length === 0) return
    const batch = takeBatch()
    const ordinals = inFlightOrdinals
    dispatchedCount += batch.length
    inFlight = batch
    appendSafely(batch).then(
      (seqs) => commitSucceeded(batch, ordinals, seqs),
      (error: unknown) => commitFailed(batch, ordinals, error),
    )
  }

  function appendSafely(entries: readonly AppendEntry[]): Promise<readonly number[]> {
    try {
      return store.append(entries)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  function commitSucceeded(
    batch: readonly AppendEntry[],
    ordinals: readonly number[],
    seqs: readonly number[],
  ): void {
    inFlight = undefined
    markDurable(batch, ordinals, seqs)
    const hasRecovered = consecutiveFailures > 0
    consecutiveFailures = 0
    if (hasRecovered && options.onRecover !== undefined) callSafely(options.onRecover)
    resolveFlushWaiters()
    schedule(true)
  }

  /**
   * Accounts `entries` (whole groups of their sessions, in enqueue order) as durable at `seqs` and
   * reports them.
   */
  function markDurable(
    entries: readonly AppendEntry[],
    ordinals: readonly number[],
    seqs: readonly number[],
  ): void {
    if (entries.length === 0) return
    if (seqs.length !== entries.length) {
      // A store bug, not an I/O failure: fail loudly rather than ack against unknown seqs.
      throw new TypeError(`store returned ${seqs.length} seqs for ${entries.length} entries`)
    }
    // Where each session's last entry of the batch is: its entries go through the FIFO in order,
    // so the last one seen is the highest. One map write per entry, as before seqs came from the
    // store; the marks are built once per session.
    const lastIndex = new Map<string, number>()
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!
      lastIndex.set(entry.sessionId, i)
      undurableBytes -= entry.update.byteLength
      const pending = (pendingBySession.get(entry.sessionId) ?? 1) - 1
      if (pending > 0) pendingBySession.set(entry.sessionId, pending)
      else pendingBySession.delete(entry.sessionId)
    }
    undurableEntries -= entries.length
    const durable = new Map<string, DurableMark>()
    for (const [sessionId, i] of lastIndex) {
      durable.set(sessionId, { ordinal: ordinals[i]!, seq: seqs[i]!, ordinals, seqs })
    }
    if (options.onCommit !== undefined) {
      const onCommit = options.onCommit
      callSafely(() => onCommit(durable, entries, seqs))
    }
  }

  function commitFailed(batch: readonly AppendEntry[], ordinals: readonly number[], error: unknown): void {
    if (isPermanentError(error)) {
      isolateFailure(batch, ordinals, error)
      return
    }
    inFlight = undefined
    retryLater(batch, ordinals, error)
  }

  /**
   * A batch failed for good: finds out whose entries the store refuses, keeps the batch in flight
   * meanwhile (nothing else starts), then settles each session's part on its own.
   */
  function isolateFailure(batch: readonly AppendEntry[], ordinals: readonly number[], error: unknown): void {
    const parts = new Map<string, { entries: AppendEntry[]; ordinals: number[] }>()
    batch.forEach((entry, i) => {
      let part = parts.get(entry.sessionId)
      if (part === undefined) {
        part = { entries: [], ordinals: [] }
        parts.set(entry.sessionId, part)
      }
      part.entries.push(entry)
      part.ordinals.push(ordinals[i]!)
    })
    if (parts.size === 1) {
      inFlight = undefined
      dropSession(batch[0]!.sessionId, batch, error)
      settledWithoutRetry()
      return
    }
    const attempts = [...parts.values()].map((part) => appendSafely(part.entries))
    void Promise.allSettled(attempts).then((results) => {
      inFlight = undefined
      const committed: AppendEntry[] = []
      const committedOrdinals: number[] = []
      const committedSeqs: number[] = []
      const retried: { entry: AppendEntry; ordinal: number }[] = []
      let retryError: unknown
      let i = 0
      for (const [sessionId, part] of parts) {
        const result = results[i++]!
        if (result.status === 'fulfilled') {
          committed.push(...part.entries)
          committedOrdinals.push(...part.ordinals)
          committedSeqs.push(...result.value)
        } else if (isPermanentError(result.reason)) dropSession(sessionId, part.entries, result.reason)
        else {
          retryError = result.reason
          part.entries.forEach((entry, j) => {
            retried.push({ entry, ordinal: part.ordinals[j]! })
          })
        }
      }
      markDurable(committed, committedOrdinals, committedSeqs)
      if (retried.length === 0) {
        settledWithoutRetry()
        return
      }
      // Back in enqueue order (the parts interleaved in the batch).
      retried.sort((a, b) => a.ordinal - b.ordinal)
      retryLater(
        retried.map((r) => r.entry),
        retried.map((r) => r.ordinal),
        retryError,
      )
      // What settled may be all a flush waits for (the retried part is older, if it is the same).
      resolveFlushWaiters()
    })
  }

  /** After a batch settled with no part left to retry: the queue is healthy again. */
  function settledWithoutRetry(): void {
    const hasRecovered = consecutiveFailures > 0
    consecutiveFailures = 0
    if (hasRecovered && options.onRecover !== undefined) callSafely(options.onRecover)
    resolveFlushWaiters()
    schedule(true)
  }

  /**
   * Drops every entry of `sessionId` not yet durable: `failed` (taken off the failed batch) and any
   * still queued. Reports it through `onSessionFailed`.
   */
  function dropSession(sessionId: string, failed: readonly AppendEntry[], error: unknown): void {
    let count = 0
    for (const entry of failed) {
      if (entry.sessionId !== sessionId) continue
      undurableBytes -= entry.update.byteLength
      count++
    }
    if (pendingBySession.has(sessionId) && queue.some((entry) => entry.sessionId === sessionId)) {
      const keptEntries: AppendEntry[] = []
      const keptOrdinals: number[] = []
      queue.forEach((entry, i) => {
        if (entry.sessionId === sessionId) {
          queueBytes -= entry.update.byteLength
          undurableBytes -= entry.update.byteLength
          count++
          // Counted as dispatched, so the urgency bookkeeping of what remains stays right.
          dispatchedCount++
        } else {
          keptEntries.push(entry)
          keptOrdinals.push(queueOrdinals[i]!)
        }
      })
      queue = keptEntries
      queueOrdinals = keptOrdinals
    }
    undurableEntries -= count
    pendingBySession.delete(sessionId)
    if (options.onSessionFailed !== undefined) {
      const onSessionFailed = options.onSessionFailed
      callSafely(() => onSessionFailed(sessionId, error))
    }
  }

  /** Puts `entries` (failed, oldest of all) back at the front of the queue and arms the backoff. */
  function retryLater(entries: readonly AppendEntry[], ordinals: readonly number[], error: unknown): void {
    consecutiveFailures++
    dispatchedCount -= entries.length
    // Back to the front, in order: never acked, never reordered, never dropped.
    queue = entries.concat(queue)
    queueOrdinals = ordinals.concat(queueOrdinals)
    for (const entry of entries) queueBytes += entry.update.byteLength
    // Arm the backoff before the callback runs, so an enqueue or flush inside it cannot skip it.
    const delay = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(consecutiveFailures - 1, 30))
    isWaitingToRetry = true
    timer = setTimeout(startBatch, delay)
    if (options.onError !== undefined) {
      const onError = options.onError
      const attempt = consecutiveFailures
      callSafely(() => onError(error, attempt))
    }
  }

  function resolveFlushWaiters(): void {
    if (flushWaiters.length === 0) return
    const waiting: FlushWaiter[] = []
    const settled = lowestUnsettled()
    for (const waiter of flushWaiters) {
      if (waiter.target <= settled) waiter.resolve()
      else waiting.push(waiter)
    }
    flushWaiters = waiting
  }

  function flush(): Promise<void> {
    if (lowestUnsettled() >= enqueuedCount) return Promise.resolve()
    const promise = new Promise<void>((resolve) => {
      flushWaiters.push({ target: enqueuedCount, resolve })
    })
    urgentCount = enqueuedCount
    // Skip the gather delay (not a retry backoff: that protects a failing disk).
    if (inFlight === undefined && !isWaitingToRetry) startBatch()
    return promise
  }

  return {
    enqueue(entry) {
      if (isClosed) throw new ColloquyError('shutting-down', 'the write queue is closed')
      assertSessionId(entry.sessionId)
      assertUint53(entry.time, 'time')
      if (!(entry.update instanceof Uint8Array)) throw new TypeError('update must be a Uint8Array')
      if (queue.length === 0) oldestQueuedAt = performance.now()
      const ordinal = enqueuedCount
      queue.push(entry)
      queueOrdinals.push(ordinal)
      const size = entry.update.byteLength
      queueBytes += size
      undurableBytes += size
      undurableEntries++
      enqueuedCount++
      pendingBySession.set(entry.sessionId, (pendingBySession.get(entry.sessionId) ?? 0) + 1)
      schedule()
      return ordinal
    },

    flush,

    expedite() {
      if (enqueuedCount <= dispatchedCount) return
      urgentCount = enqueuedCount
      schedule()
    },

    get isFailing() {
      return consecutiveFailures > 0
    },
    get queuedBytes() {
      return undurableBytes
    },
    get queuedEntries() {
      return undurableEntries
    },

    pendingFor(sessionId) {
      return pendingBySession.get(sessionId) ?? 0
    },

    async close() {
      isClosed = true
      await flush()
    },
  }
}

/**
 * Runs a user callback so that its exception cannot corrupt the queue's state.
 *
 * @remarks Why rethrow in a microtask: a throwing callback is a bug in the caller, not a storage
 * failure, so it must not enter the retry path; rethrown outside, it stays loud (fatal at top level).
 */
function callSafely(callback: () => void): void {
  try {
    callback()
  } catch (error) {
    queueMicrotask(() => {
      throw error
    })
  }
}
