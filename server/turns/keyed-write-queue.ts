// A coalescing write queue keyed by id, shared by the turn stores (turn-store.ts on the server's
// database, cluster/turn-stream.ts on JetStream): the latest change of each key waits for the next
// round, a later change replacing an earlier one not yet written; rounds run one after another, so
// a key's changes reach storage in the order they were made; a failed write is retried with
// backoff unless a newer change of its key replaced it. Knows nothing of turns or storage.
// (persistence/write-queue.ts is the sessions' group commit: an append-only log with seqs, not this.)

/** Options of {@link createKeyedWriteQueue}. */
export interface KeyedWriteQueueOptions<V> {
  /**
   * Writes one round: the latest change of every key in it. Resolves with the keys whose write
   * failed and why (none: all stored); a rejection fails every key of the round.
   */
  readonly write: (round: ReadonlyMap<string, V>) => Promise<Iterable<readonly [string, unknown]> | undefined>
  /** What the callers of changes dropped by {@link KeyedWriteQueue.close} are rejected with. */
  readonly closedError: () => unknown
  /** Waits before retrying a failed write (ms; doubled per failed round up to `maxRetryMs`; default 100). */
  readonly retryMs?: number
  /** Longest wait before a retry (ms, default 5 000). */
  readonly maxRetryMs?: number
  /** Called after each failed round that will be retried: the first error, how many keys failed, the wait. */
  readonly onRetry?: (error: unknown, failed: number, retryMs: number) => void
}

/** The queue. */
export interface KeyedWriteQueue<V> {
  /** Queues `value` as `key`'s latest change; resolves once it (or a later change of `key`) is stored. */
  enqueue(key: string, value: V): Promise<void>
  /** Resolves once every change queued so far is stored (waiting through retries) or dropped. */
  flush(): Promise<void>
  /**
   * Stops: changes not yet written are dropped (their callers rejected with `closedError`, or
   * with the write's error for a round that failed); resolves once the round in flight settled.
   */
  close(): Promise<void>
  /** Keys with a change not yet stored. */
  readonly pending: number
}

interface Waiter {
  resolve(): void
  reject(error: unknown): void
}

interface PendingChange<V> {
  value: V
  waiters: Waiter[]
}

/** Creates a keyed write queue over `options.write`. */
export function createKeyedWriteQueue<V>(options: KeyedWriteQueueOptions<V>): KeyedWriteQueue<V> {
  const baseRetryMs = options.retryMs ?? 100
  const maxRetryMs = options.maxRetryMs ?? 5_000
  let pending = new Map<string, PendingChange<V>>()
  let inFlight = 0
  let writing: Promise<void> | undefined
  let isClosed = false

  async function writeRound(round: Map<string, PendingChange<V>>): Promise<(readonly [string, unknown])[]> {
    const values = new Map<string, V>()
    for (const [key, change] of round) values.set(key, change.value)
    try {
      const failures = await options.write(values)
      return failures === undefined ? [] : [...failures]
    } catch (error) {
      return [...round.keys()].map((key) => [key, error])
    }
  }

  async function writeLoop(): Promise<void> {
    let retryMs = baseRetryMs
    while (pending.size > 0 && !isClosed) {
      const round = pending
      pending = new Map()
      inFlight = round.size
      const failures = await writeRound(round)
      inFlight = 0
      const failed = new Map(failures)
      for (const [key, change] of round) {
        if (!failed.has(key)) for (const waiter of change.waiters) waiter.resolve()
      }
      if (failed.size === 0) {
        retryMs = baseRetryMs
        continue
      }
      if (isClosed) {
        for (const [key, error] of failed)
          for (const waiter of round.get(key)?.waiters ?? []) waiter.reject(error)
        return
      }
      options.onRetry?.(failed.values().next().value, failed.size, retryMs)
      for (const key of failed.keys()) {
        const change = round.get(key)
        if (change === undefined) continue
        const newer = pending.get(key)
        // A newer change replaces the failed one: its waiters wait for the newer write.
        if (newer !== undefined) newer.waiters.push(...change.waiters)
        else pending.set(key, change)
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs))
      retryMs = Math.min(retryMs * 2, maxRetryMs)
    }
  }

  /** Starts the write loop unless it runs; a change queued after the loop's last look restarts it. */
  function start(): void {
    if (writing !== undefined || isClosed) return
    writing = writeLoop().finally(() => {
      writing = undefined
      if (pending.size > 0) start()
    })
  }

  return {
    enqueue(key, value) {
      if (isClosed) return Promise.reject(options.closedError())
      return new Promise<void>((resolve, reject) => {
        const change = pending.get(key)
        if (change === undefined) pending.set(key, { value, waiters: [{ resolve, reject }] })
        else {
          change.value = value
          change.waiters.push({ resolve, reject })
        }
        start()
      })
    },

    async flush() {
      while (writing !== undefined) await writing
    },

    async close() {
      isClosed = true
      const dropped = [...pending.values()]
      pending = new Map()
      for (const change of dropped) for (const waiter of change.waiters) waiter.reject(options.closedError())
      await writing?.catch(() => undefined)
    },

    get pending() {
      return pending.size + inFlight
    },
  }
}
