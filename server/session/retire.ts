// Ending a session on this process because it is being deleted (here, or on another node of a
// cluster): no new connection may load it, the connections it has close with the delete's code,
// its document is freed, and every update it queued reaches the store before the delete runs, so
// nothing of it lands after the delete and no node writes its old document back. Once the delete
// is done, the store forgets what it cached of the session.

import type { DistributionHost } from './distribution.js'

/** What retiring a session uses: the session registry, the write queue and the compactor. */
export interface SessionRetirerDeps {
  readonly sessions: {
    /** Refuses new connections to the session until the returned function is called. */
    block(sessionId: string): () => void
    /** The loaded (or loading) session, if any. */
    get(sessionId: string): { end(code: number, reason: string): void } | undefined
  }
  readonly writes: {
    /** Resolves once everything queued before the call is durable. */
    flush(): Promise<void>
  }
  /** The compactor: a run on the session already going is waited for (it would write after the delete). */
  readonly scheduler?: { compactNow(sessionId: string, throughSeq?: number): Promise<unknown> }
  /**
   * The store: what it cached of the session (the JetStream store keeps its record, which names
   * the incarnation its log lives under) is dropped at the release, once the delete is done.
   * Otherwise this node would go on reading, and appending to, the deleted incarnation.
   */
  readonly store?: { release(sessionId: string): void }
}

/**
 * Creates the {@link DistributionHost} of a process: `isOpen` says whether the registry holds the
 * session; `retire` blocks the session, ends it (its
 * connections closed with the given code, the document freed), then waits for its queued writes
 * and for a compaction of it already running.
 *
 * @remarks The block is held until the returned release is called; a failure while waiting lifts
 * it again and rejects (the deleter then refuses the delete).
 */
export function createSessionRetirer(deps: SessionRetirerDeps): DistributionHost {
  return {
    isOpen: (sessionId) => deps.sessions.get(sessionId) !== undefined,
    async retire(sessionId, code, reason) {
      const unblock = deps.sessions.block(sessionId)
      try {
        deps.sessions.get(sessionId)?.end(code, reason)
        await deps.writes.flush()
        // With throughSeq 0 this folds nothing: it only waits for a run already going.
        await deps.scheduler?.compactNow(sessionId, 0).catch(() => undefined)
        return () => {
          deps.store?.release(sessionId)
          unblock()
        }
      } catch (error) {
        deps.store?.release(sessionId)
        unblock()
        throw error
      }
    },
  }
}
