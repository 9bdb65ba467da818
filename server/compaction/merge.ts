// Folding updates into one document state: the pure core of compaction and of "state at seq".
// No I/O and no threads here; worker-merger.ts runs the same function off the event loop.

import * as Y from 'yjs'

/** Folds `updates` (a checkpoint state and/or log updates, in seq order) into one state. */
export interface Merger {
  merge(updates: readonly Uint8Array[]): Promise<Uint8Array>
  /** Stops any thread behind it; later merges reject. */
  close(): Promise<void>
}

/**
 * The state that loading `updates` in order produces, as one Yjs update.
 *
 * @remarks Applies them to a fresh `Y.Doc` (gc on, like a loaded session) inside one transaction
 * and encodes its full state. `Y.encodeStateAsUpdate` includes structs and deletions still pending
 * on missing dependencies, so a checkpoint loses nothing the log held (a session stores pending
 * updates too, see docs/decisions.md).
 */
export function mergeToState(updates: readonly Uint8Array[]): Uint8Array {
  const doc = new Y.Doc({ gc: true })
  try {
    doc.transact(() => {
      for (const update of updates) Y.applyUpdate(doc, update)
    })
    return Y.encodeStateAsUpdate(doc)
  } finally {
    doc.destroy()
  }
}

/** A {@link Merger} that runs on the calling thread (tests, the offline CLI, small sessions). */
export function createInlineMerger(): Merger {
  let isClosed = false
  return {
    async merge(updates) {
      if (isClosed) throw new Error('merger closed')
      return mergeToState(updates)
    },
    async close() {
      isClosed = true
    },
  }
}

/** Packs byte arrays into one buffer plus end offsets, so a thread can take it in one transfer. */
export function packUpdates(updates: readonly Uint8Array[]): { buffer: ArrayBuffer; ends: number[] } {
  let total = 0
  for (const update of updates) total += update.byteLength
  const packed = new Uint8Array(total)
  const ends: number[] = []
  let offset = 0
  for (const update of updates) {
    packed.set(update, offset)
    offset += update.byteLength
    ends.push(offset)
  }
  return { buffer: packed.buffer, ends }
}

/** Inverse of {@link packUpdates}: views into `buffer`, no copies. */
export function unpackUpdates(buffer: ArrayBuffer, ends: readonly number[]): Uint8Array[] {
  const updates: Uint8Array[] = []
  let start = 0
  for (const end of ends) {
    updates.push(new Uint8Array(buffer, start, end - start))
    start = end
  }
  return updates
}
