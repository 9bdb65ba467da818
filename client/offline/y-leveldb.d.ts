// Types for the part of y-leveldb 0.2.0 the offline cache uses: the package ships typings, but its
// `exports` map does not point at them, so NodeNext resolution cannot find them.

declare module 'y-leveldb' {
  import type * as Y from 'yjs'

  export class LeveldbPersistence {
    constructor(location: string, options?: { Level?: unknown; levelOptions?: object })
    /** The document built from every stored update (trims the log past 500 updates). */
    getYDoc(docName: string): Promise<Y.Doc>
    /** Appends one update; resolves with its clock (null if y-leveldb swallowed a write error). */
    storeUpdate(docName: string, update: Uint8Array): Promise<number | null>
    /** Closes the database after every queued operation. */
    destroy(): Promise<void>
  }
}
