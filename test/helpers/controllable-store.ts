// A Store wrapper for tests that makes `append` fail or wait on command, and records every call.
// Everything except `append` passes straight through to the wrapped store.

import type { AppendEntry, Store } from '../../server/persistence/store.js'

/** A wrapped store plus the controls of its `append`. */
export interface ControllableStore {
  /** Use this as the store under test. */
  readonly store: Store
  /**
   * Makes the next `count` append calls reject with `error` (default: an Error "injected append
   * failure") without writing anything to the inner store. `Infinity` fails until {@link heal}.
   */
  failNext(count: number, error?: unknown): void
  /**
   * Makes the next `count` append calls that hold an entry of `sessionId` reject with `error`
   * without writing anything (default: until {@link heal}); calls without one pass. Checked after
   * {@link failNext}.
   */
  failSession(sessionId: string, error: unknown, count?: number): void
  /** Cancels any failures still scheduled by {@link failNext} and {@link failSession}. */
  heal(): void
  /**
   * Holds append calls: from now on each waits, before writing to the inner store, until the
   * returned release function is called (calls made after release are not held). Held calls then
   * proceed in call order. Calling release again does nothing.
   */
  hold(): () => void
  /** Number of append calls so far, failed and held ones included. */
  readonly appendCalls: number
  /** The entries of every append call so far, in call order (failed ones included). */
  readonly appendBatches: readonly (readonly AppendEntry[])[]
  /** Number of append calls that reached the inner store and resolved. */
  readonly appendSuccesses: number
  /** Resolves once at least `count` append calls were made (immediately if already so). */
  whenAppendCalls(count: number): Promise<void>
}

/** Wraps `inner` (e.g. a memory store) in a {@link ControllableStore}. */
export function createControllableStore(inner: Store): ControllableStore {
  let failuresLeft = 0
  let failure: unknown
  const sessionFailures = new Map<string, { left: number; error: unknown }>()
  let gate: Promise<void> | undefined
  const batches: AppendEntry[][] = []
  let successes = 0
  let callWaiters: { count: number; resolve: () => void }[] = []

  function notifyCallWaiters(): void {
    const waiting: typeof callWaiters = []
    for (const waiter of callWaiters) {
      if (batches.length >= waiter.count) waiter.resolve()
      else waiting.push(waiter)
    }
    callWaiters = waiting
  }

  const store: Store = {
    async append(entries) {
      batches.push([...entries])
      notifyCallWaiters()
      if (gate !== undefined) await gate
      if (failuresLeft > 0) {
        failuresLeft--
        throw failure
      }
      for (const entry of entries) {
        const sessionFailure = sessionFailures.get(entry.sessionId)
        if (sessionFailure === undefined || sessionFailure.left <= 0) continue
        sessionFailure.left--
        throw sessionFailure.error
      }
      const seqs = await inner.append(entries)
      successes++
      return seqs
    },
    load: (sessionId) => inner.load(sessionId),
    readLog: (sessionId, range) => inner.readLog(sessionId, range),
    getMeta: (sessionId) => inner.getMeta(sessionId),
    listSessions: () => inner.listSessions(),
    putCheckpoint: (sessionId, checkpoint, options) => inner.putCheckpoint(sessionId, checkpoint, options),
    listCheckpoints: (sessionId, range) => inner.listCheckpoints(sessionId, range),
    deleteSession: (sessionId) => inner.deleteSession(sessionId),
    release: (sessionId) => inner.release(sessionId),
    close: () => inner.close(),
  }

  return {
    store,
    failNext(count, error = new Error('injected append failure')) {
      failuresLeft = count
      failure = error
    },
    failSession(sessionId, error, count = Number.POSITIVE_INFINITY) {
      sessionFailures.set(sessionId, { left: count, error })
    },
    heal() {
      failuresLeft = 0
      sessionFailures.clear()
    },
    hold() {
      let release: () => void = () => undefined
      const held = new Promise<void>((resolve) => {
        release = resolve
      })
      gate = held
      return () => {
        if (gate === held) gate = undefined
        release()
      }
    },
    get appendCalls() {
      return batches.length
    },
    get appendBatches() {
      return batches
    },
    get appendSuccesses() {
      return successes
    },
    whenAppendCalls(count) {
      if (batches.length >= count) return Promise.resolve()
      return new Promise<void>((resolve) => {
        callWaiters.push({ count, resolve })
      })
    },
  }
}
