// Maps the server's sync-status echoes to "which local changes are durable". No I/O: the sync client
// tells it about local changes, asks it what counter to send, and hands it every echoed counter.

/** Counters sent vs acknowledged, and the promises of {@link AckTracker.whenFlushed}. */
export interface AckTracker {
  /** True while some local change is not yet covered by an acknowledged counter. */
  readonly hasLocalChanges: boolean
  /** The highest counter handed out by {@link AckTracker.takeCounter}. */
  readonly sentCounter: number
  /** The highest counter acknowledged. */
  readonly ackedCounter: number
  /** Records a local change: only a counter sent after this call can cover it. */
  markChange(): void
  /**
   * The counter for a sync-status to send now, or undefined when every local change is already
   * covered by a counter sent earlier (on this connection: see {@link AckTracker.connectionLost}).
   */
  takeCounter(): number | undefined
  /**
   * Records an echoed counter. Returns true when this ack left no local change unacknowledged.
   * Counters that are not newer than the last ack are ignored.
   */
  acknowledge(counter: number): boolean
  /**
   * Forgets the counters sent on a connection that closed: their echoes will never come, so the
   * next connection must send a new one for changes they covered.
   */
  connectionLost(): void
  /** Resolves once every change recorded before the call is acknowledged. */
  whenFlushed(): Promise<void>
  /** Rejects every pending {@link AckTracker.whenFlushed} with `error`. */
  rejectAll(error: Error): void
}

interface FlushWaiter {
  readonly target: number
  readonly resolve: () => void
  readonly reject: (error: Error) => void
}

/**
 * Creates an ack tracker.
 *
 * @remarks
 * Invariant: counters increase across connections, and a counter `c` covers every change recorded
 * before it was taken. A change recorded while the last taken counter is `s` needs counter `s + 1`
 * or later; `required` is the largest such need, so changes are flushed once `acked >= required`.
 * Because the server acknowledges by its session's durable seq, an ack also covers changes that an
 * earlier connection delivered but that were not yet durable when it closed.
 */
export function createAckTracker(): AckTracker {
  let sent = 0
  let acked = 0
  let required = 0
  /** The highest counter sent on the current connection that still counts (0 after a loss). */
  let sentOnConnection = 0
  let waiters: FlushWaiter[] = []

  const hasLocalChanges = (): boolean => required > acked

  return {
    get hasLocalChanges() {
      return hasLocalChanges()
    },
    get sentCounter() {
      return sent
    },
    get ackedCounter() {
      return acked
    },
    markChange() {
      required = sent + 1
    },
    takeCounter() {
      if (required <= acked || required <= sentOnConnection) return undefined
      sent++
      sentOnConnection = sent
      return sent
    },
    acknowledge(counter) {
      if (counter <= acked || counter > sent) return false
      const hadChanges = hasLocalChanges()
      acked = counter
      if (waiters.length > 0) {
        const still: FlushWaiter[] = []
        for (const waiter of waiters) {
          if (waiter.target <= acked) waiter.resolve()
          else still.push(waiter)
        }
        waiters = still
      }
      return hadChanges && !hasLocalChanges()
    },
    connectionLost() {
      sentOnConnection = 0
    },
    whenFlushed() {
      if (!hasLocalChanges()) return Promise.resolve()
      const target = required
      return new Promise<void>((resolve, reject) => {
        waiters.push({ target, resolve, reject })
      })
    },
    rejectAll(error) {
      const rejected = waiters
      waiters = []
      for (const waiter of rejected) waiter.reject(error)
    },
  }
}
