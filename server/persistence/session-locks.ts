// Per-session mutual exclusion for store operations that read and then rewrite a session's meta.
// Operations on disjoint sessions run concurrently; operations on one session run in call order.

/** Releases the sessions an {@link SessionLocks.acquire} call locked. Idempotent. */
export type Unlock = () => void

/** A set of per-session locks. */
export interface SessionLocks {
  /**
   * Locks every session in `sessionIds` and resolves once all earlier holders released them.
   *
   * @remarks The caller is queued on every session synchronously, at call time, so callers are
   * served in call order per session and two multi-session callers can never deadlock: a caller
   * only ever waits for callers that queued before it.
   */
  acquire(sessionIds: Iterable<string>): Promise<Unlock>
}

/** Creates an empty set of per-session locks. */
export function createSessionLocks(): SessionLocks {
  // The promise of the last caller queued on each session; resolved when that caller unlocks.
  const tails = new Map<string, Promise<void>>()

  return {
    async acquire(sessionIds) {
      const unique = new Set(sessionIds)
      const earlier: Promise<void>[] = []
      let resolveDone: () => void = () => undefined
      const done = new Promise<void>((resolve) => {
        resolveDone = resolve
      })
      for (const sessionId of unique) {
        const tail = tails.get(sessionId)
        if (tail !== undefined) earlier.push(tail)
        tails.set(sessionId, done)
      }
      if (earlier.length > 0) await Promise.all(earlier)
      let isReleased = false
      return () => {
        if (isReleased) return
        isReleased = true
        resolveDone()
        for (const sessionId of unique) {
          if (tails.get(sessionId) === done) tails.delete(sessionId)
        }
      }
    },
  }
}
