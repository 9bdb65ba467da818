// Group commit: gathers updates of every session into one durable Store.append and reports which
// seqs became durable. Owns ordering, batching and retries; knows nothing of sockets or Yjs.

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
  /** Called once per successful batch: session id → highest seq of that session now durable. */
  readonly onCommit?: (durable: ReadonlyMap<string, number>) => void
  /** Called after each failed batch with the error and the count of consecutive failures (1, 2, …). */
  readonly onError?: (error: unknown, attempt: number) => void
  /** Called on the first successful batch after one or more failures. */
  readonly onRecover?: () => void
}

/** A group-commit queue in front of a {@link Store}. */
export interface WriteQueue {
  /**
   * Queues an update to be written durably.
   *
   * @remarks Entries of one session must be enqueued in strictly increasing seq order; an invalid
   * entry throws (RangeError, TypeError or `invalid-session-id`) and is not queued. The queue keeps
   * a reference to `entry.update` until it is durable: do not mutate it. Throws `shutting-down`
   * once {@link WriteQueue.close} was called.
   */
  enqueue(entry: AppendEntry): void
  /** Resolves once everything enqueued before the call is durable, waiting through any retries. */
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
  /** Resolve once this many entries (counted from the first enqueue) are durable. */
  readonly target: number
  readonly resolve: () => void
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
 *   resolved. A failed batch goes back to the front of the queue, in order, and is retried with
 *   exponential backoff; newer entries may join the retry.
 * - Batches are taken from the front of one FIFO, so entries become durable in enqueue order.
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

  /** Entries waiting for a batch, oldest first. */
  let queue: AppendEntry[] = []
  let queueBytes = 0
  let inFlight: readonly AppendEntry[] | undefined
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
  let durableCount = 0
  const pendingBySession = new Map<string, number>()
  /** The last seq enqueued for each session that has entries not yet durable. */
  const lastSeqBySession = new Map<string, number>()
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

  function takeBatch(): AppendEntry[] {
    if (queueBytes <= maxBatchBytes && queue.length <= maxBatchEntries) {
      const batch = queue
      queue = []
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
    queue = queue.slice(count)
    queueBytes -= bytes
    return batch
  }

  function startBatch(): void {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    timerDue = Number.POSITIVE_INFINITY
    isWaitingToRetry = false
    if (inFlight !== undefined || queue.length === 0) return
    const batch = takeBatch()
    dispatchedCount += batch.length
    inFlight = batch
    let attempt: Promise<void>
    try {
      attempt = store.append(batch)
    } catch (error) {
      attempt = Promise.reject(error)
    }
    attempt.then(
      () => commitSucceeded(batch),
      (error: unknown) => commitFailed(batch, error),
    )
  }

  function commitSucceeded(batch: readonly AppendEntry[]): void {
    inFlight = undefined
    const durable = new Map<string, number>()
    for (const entry of batch) {
      // Seqs of a session rise through the FIFO, so the last one seen is the highest.
      durable.set(entry.sessionId, entry.seq)
      undurableBytes -= entry.update.byteLength
      const pending = (pendingBySession.get(entry.sessionId) ?? 1) - 1
      if (pending > 0) pendingBySession.set(entry.sessionId, pending)
      else {
        pendingBySession.delete(entry.sessionId)
        lastSeqBySession.delete(entry.sessionId)
      }
    }
    undurableEntries -= batch.length
    durableCount += batch.length
    const hasRecovered = consecutiveFailures > 0
    consecutiveFailures = 0
    if (hasRecovered && options.onRecover !== undefined) callSafely(options.onRecover)
    if (options.onCommit !== undefined) {
      const onCommit = options.onCommit
      callSafely(() => onCommit(durable))
    }
    resolveFlushWaiters()
    schedule(true)
  }

  function commitFailed(batch: readonly AppendEntry[], error: unknown): void {
    inFlight = undefined
    consecutiveFailures++
    dispatchedCount -= batch.length
    // Back to the front, in order: never acked, never reordered, never dropped.
    queue = batch.concat(queue)
    for (const entry of batch) queueBytes += entry.update.byteLength
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
    for (const waiter of flushWaiters) {
      if (waiter.target <= durableCount) waiter.resolve()
      else waiting.push(waiter)
    }
    flushWaiters = waiting
  }

  function flush(): Promise<void> {
    if (durableCount >= enqueuedCount) return Promise.resolve()
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
      assertUint53(entry.seq, 'seq')
      assertUint53(entry.time, 'time')
      if (!(entry.update instanceof Uint8Array)) throw new TypeError('update must be a Uint8Array')
      const lastSeq = lastSeqBySession.get(entry.sessionId)
      if (entry.seq === 0 || (lastSeq !== undefined && entry.seq <= lastSeq)) {
        throw new RangeError(
          `seq ${entry.seq} of session ${entry.sessionId} must be above ${lastSeq ?? 0}: enqueue in seq order`,
        )
      }
      if (queue.length === 0) oldestQueuedAt = performance.now()
      queue.push(entry)
      const size = entry.update.byteLength
      queueBytes += size
      undurableBytes += size
      undurableEntries++
      enqueuedCount++
      lastSeqBySession.set(entry.sessionId, entry.seq)
      pendingBySession.set(entry.sessionId, (pendingBySession.get(entry.sessionId) ?? 0) + 1)
      schedule()
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
