// The offline cache interface: where a client keeps its copy of a session between runs, so edits
// made offline survive a restart of the client process. Implementations live in ./offline/.

import type * as Y from 'yjs'

/**
 * A local, persistent copy of one session's document.
 *
 * @remarks
 * The sync client calls {@link OfflineCache.attach} once, before it connects, and
 * {@link OfflineCache.close} when it is destroyed. The cache keeps every update of the document
 * (local edits and what the server sent), so a restarted client shows the whole conversation while
 * still offline and uploads its offline edits, by state vector, when it reconnects.
 * One cache instance serves one document.
 */
export interface OfflineCache {
  /**
   * Loads what the cache holds into `doc`, stores what `doc` already holds, and from then on stores
   * every update of `doc` until {@link OfflineCache.close}.
   */
  attach(doc: Y.Doc): Promise<void>
  /** Resolves once every update of the attached document seen so far is written. */
  flush(): Promise<void>
  /** Flushes, stops listening to the document and releases the storage. Idempotent. */
  close(): Promise<void>
}
