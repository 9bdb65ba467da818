// Browser offline cache on y-indexeddb. Isomorphic in the sense that it imports nothing from Node;
// it needs a global `indexedDB` (browsers, or fake-indexeddb in tests).

import * as idb from 'lib0/indexeddb'
import { IndexeddbPersistence } from 'y-indexeddb'
import type * as Y from 'yjs'
import type { OfflineCache } from '../offline-cache.js'

/** Options of {@link createIndexeddbCache}. */
export interface IndexeddbCacheOptions {
  /** The IndexedDB database name; one database per session, e.g. `colloquy:<sessionId>`. */
  readonly name: string
}

/**
 * An {@link OfflineCache} in IndexedDB through y-indexeddb (its database layout, so data written by
 * a plain `IndexeddbPersistence` of the same name is read, and the other way round).
 *
 * @remarks
 * y-indexeddb listens to the document itself and writes each update in its own IndexedDB
 * transaction; {@link OfflineCache.flush} opens one more read-write transaction on the same store,
 * which IndexedDB starts only after every earlier one has finished.
 */
export function createIndexeddbCache(options: IndexeddbCacheOptions): OfflineCache {
  let persistence: IndexeddbPersistence | undefined
  let closing: Promise<void> | undefined
  let onClose: () => void = () => undefined
  // y-indexeddb never announces "synced" once destroyed: attach must not outwait a close.
  const closed = new Promise<void>((resolve) => {
    onClose = resolve
  })

  const flush = async (): Promise<void> => {
    const db = persistence?.db
    if (db === null || db === undefined) return
    const [updates] = idb.transact(db, ['updates'])
    if (updates !== undefined) await idb.count(updates)
  }

  return {
    async attach(doc: Y.Doc) {
      if (persistence !== undefined) throw new Error('this offline cache is already attached to a document')
      if (closing !== undefined) throw new Error('this offline cache is closed')
      const attached = new IndexeddbPersistence(options.name, doc)
      persistence = attached
      await Promise.race([attached.whenSynced, closed])
    },
    flush,
    close() {
      closing ??= (async () => {
        onClose()
        if (persistence === undefined) return
        // Before the database has opened there is nothing to flush, and destroy waits for the open.
        if (persistence.db !== null) await flush()
        await persistence.destroy()
      })()
      return closing
    },
  }
}
