// Folding updates into one document state: the pure core of compaction and of "state at seq".
// No I/O and no threads here; worker-merger.ts runs the same function off the event loop.

import * as Y from 'yjs'

/** Folds `updates` (a checkpoint state and/or log updates, in seq order) into one state. */
export interface Merger {
  merge(updates: readonly Uint8Array[]): Promise<Uint8Array>
  /**
   * Same as {@link merge} on updates already packed in one buffer; takes ownership of it (a worker
   * thread receives it by transfer, without a copy, and the caller's buffer is detached).
   * Optional: without it, callers merge `unpackUpdates(packed)`.
   */
  mergePacked?(packed: PackedUpdates): Promise<Uint8Array>
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
    async mergePacked(packed) {
      if (isClosed) throw new Error('merger closed')
      return mergeToState(unpackUpdates(packed))
    },
    async close() {
      isClosed = true
    },
  }
}

/**
 * Byte arrays packed into one buffer: update i is `buffer[ends[i-1] ?? 0, ends[i])`. Two transferable
 * buffers, so a thread takes any number of updates in one message without copying them.
 */
export interface PackedUpdates {
  /** May be longer than the last end (spare capacity of the packer). */
  readonly buffer: ArrayBuffer
  readonly ends: Uint32Array
}

/** Packs byte arrays as one {@link PackedUpdates}. */
export function packUpdates(updates: readonly Uint8Array[]): PackedUpdates {
  let total = 0
  for (const update of updates) total += update.byteLength
  const packer = createPacker(total, updates.length)
  for (const update of updates) packer.push(update)
  return packer.finish()
}

/** Builds a {@link PackedUpdates} one update at a time, growing its buffers as needed. */
export interface Packer {
  push(update: Uint8Array): void
  readonly count: number
  /** The packed updates; the packer must not be used afterwards. */
  finish(): PackedUpdates
}

/** A {@link Packer} sized for about `bytes` bytes in `count` updates (it grows past both). */
export function createPacker(bytes = 0, count = 0): Packer {
  let data = new Uint8Array(Math.max(64, bytes))
  let ends = new Uint32Array(Math.max(16, count))
  let used = 0
  let length = 0
  return {
    push(update) {
      const end = used + update.byteLength
      if (end > 0xffff_ffff) throw new RangeError('packed updates exceed 4 GiB')
      if (end > data.byteLength) {
        const grown = new Uint8Array(Math.max(end, Math.min(0xffff_ffff, data.byteLength * 2)))
        grown.set(data.subarray(0, used))
        data = grown
      }
      if (length === ends.length) {
        const grown = new Uint32Array(ends.length * 2)
        grown.set(ends)
        ends = grown
      }
      data.set(update, used)
      used = end
      ends[length++] = end
    },
    get count() {
      return length
    },
    finish() {
      return { buffer: data.buffer, ends: length === ends.length ? ends : ends.slice(0, length) }
    },
  }
}

/** Inverse of {@link packUpdates}: views into the packed buffer, no copies. */
export function unpackUpdates(packed: PackedUpdates): Uint8Array[] {
  const { buffer, ends } = packed
  const updates: Uint8Array[] = new Array(ends.length)
  let start = 0
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i]!
    updates[i] = new Uint8Array(buffer, start, end - start)
    start = end
  }
  return updates
}
