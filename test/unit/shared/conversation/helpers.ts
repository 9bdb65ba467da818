// Test helpers for the conversation model: two replicas kept in sync by exchanging updates, a
// manual timer, and authors.

import * as Y from 'yjs'
import type { Author } from '../../../../shared/conversation/index.js'

export const alice: Author = { id: 'device-alice', kind: 'device', name: 'Alice' }
export const bob: Author = { id: 'device-bob', kind: 'device' }
export const agent: Author = { id: 'agent-1', kind: 'agent', name: 'Demo agent' }

const REMOTE = Symbol('remote')

/** Two docs that deliver every update to each other synchronously, as a zero-latency network would. */
export function connectedDocs(): { a: Y.Doc; b: Y.Doc } {
  const a = new Y.Doc()
  const b = new Y.Doc()
  a.on('update', (update: Uint8Array, origin: unknown) => {
    if (origin !== REMOTE) Y.applyUpdate(b, update, REMOTE)
  })
  b.on('update', (update: Uint8Array, origin: unknown) => {
    if (origin !== REMOTE) Y.applyUpdate(a, update, REMOTE)
  })
  return { a, b }
}

/** Counts the `update` events a doc emits. */
export function countUpdates(doc: Y.Doc): { readonly count: number } {
  const counter = { count: 0 }
  doc.on('update', () => {
    counter.count++
  })
  return counter
}

/** A timer the test fires by hand: `setTimer`/`clearTimer` for openStreamingWriter. */
export function manualTimer(): {
  setTimer: (fn: () => void, ms: number) => unknown
  clearTimer: (handle: unknown) => void
  fire: () => void
  readonly pending: number
  readonly delays: number[]
} {
  const pending = new Map<number, () => void>()
  const delays: number[] = []
  let next = 1
  return {
    setTimer(fn, ms) {
      const handle = next++
      pending.set(handle, fn)
      delays.push(ms)
      return handle
    },
    clearTimer(handle) {
      if (typeof handle === 'number') pending.delete(handle)
    },
    fire() {
      for (const [handle, fn] of [...pending]) {
        pending.delete(handle)
        fn()
      }
    },
    get pending() {
      return pending.size
    },
    delays,
  }
}
