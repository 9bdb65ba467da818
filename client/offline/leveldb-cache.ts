// Node offline cache on y-leveldb (the classic Yjs LevelDB adapter). Node only: it opens a LevelDB
// directory. Never imported by the isomorphic entry point (client/index.ts).

import { LeveldbPersistence } from 'y-leveldb'
import * as Y from 'yjs'
import type { OfflineCache } from '../offline-cache.js'

/** Options of {@link createLeveldbCache}. */
export interface LeveldbCacheOptions {
  /** The LevelDB directory. One process at a time may open it (LevelDB locks it). */
  readonly path: string
  /** The document's name inside the database, usually the session id. */
  readonly name: string
}

/**
 * An {@link OfflineCache} in a LevelDB directory through y-leveldb.
 *
 * @remarks
 * y-leveldb writes without fsync, so "stored" means "handed to the OS": it survives a crash of
 * the client process, not necessarily a power cut. Losing the cache loses nothing the server
 * acknowledged; it only loses offline edits not yet uploaded. y-leveldb logs and swallows write
 * errors inside its own chain; {@link OfflineCache.flush} waits for that chain.
 */
export function createLeveldbCache(options: LeveldbCacheOptions): OfflineCache {
  const persistence = new LeveldbPersistence(options.path)
  let doc: Y.Doc | undefined
  /** The tail of our writes: y-leveldb runs them one at a time, in call order. */
  let lastWrite: Promise<unknown> = Promise.resolve()
  let closing: Promise<void> | undefined

  const store = (update: Uint8Array, origin: unknown): void => {
    // Updates we applied from the cache are in it already.
    if (origin === persistence) return
    lastWrite = persistence.storeUpdate(options.name, update)
  }

  return {
    async attach(target) {
      if (doc !== undefined) throw new Error('this offline cache is already attached to a document')
      if (closing !== undefined) throw new Error('this offline cache is closed')
      doc = target
      const cached = await persistence.getYDoc(options.name)
      const cachedState = Y.encodeStateAsUpdate(cached)
      cached.destroy()
      // What the document held before it was attached goes into the cache too.
      const ownState = Y.encodeStateAsUpdate(target, Y.encodeStateVector(cached))
      Y.applyUpdate(target, cachedState, persistence)
      target.on('update', store)
      if (ownState.length > 2) lastWrite = persistence.storeUpdate(options.name, ownState)
      await lastWrite
    },
    async flush() {
      await lastWrite
    },
    close() {
      closing ??= (async () => {
        doc?.off('update', store)
        await lastWrite
        await persistence.destroy()
      })()
      return closing
    },
  }
}
