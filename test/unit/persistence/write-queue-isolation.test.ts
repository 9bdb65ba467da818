// Regression tests for issue 13.7 "one failing commit stops every session": an append the store
// refuses for good fails only its session's entries; retryable failures back off; others go on.

import { describe, expect, it } from 'vitest'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { AppendEntry } from '../../../server/persistence/store.js'
import {
  createWriteQueue,
  isPermanentStoreError,
  type WriteQueueOptions,
} from '../../../server/persistence/write-queue.js'
import { ColloquyError } from '../../../shared/errors.js'
import { createControllableStore } from '../../helpers/controllable-store.js'

/** An entry tagged `tag` (in its time, 1000 + tag, and bytes): the store gives it its seq. */
function entry(sessionId: string, tag: number, bytes = 10): AppendEntry {
  return { sessionId, time: 1000 + tag, update: new Uint8Array(bytes).fill(tag % 256) }
}

function names(entries: readonly AppendEntry[]): string[] {
  return entries.map((e) => `${e.sessionId}${e.time - 1000}`)
}

/** A refusal no retry can fix, as the stores raise it for an invalid entry (store-rules). */
function seqConflict(): RangeError {
  return new RangeError('time must be an integer in [0, 2^53), got -1')
}

/** A memory store behind the controls, a queue on it, and every callback recorded. */
function setup(options: Partial<Omit<WriteQueueOptions, 'store'>> = {}) {
  const inner = createMemoryStore()
  const controls = createControllableStore(inner)
  const commits: Map<string, number>[] = []
  const errors: { error: unknown; attempt: number }[] = []
  const failedSessions: { sessionId: string; error: unknown }[] = []
  let wasFailing = false
  const queue = createWriteQueue({
    store: controls.store,
    retryMinMs: 1,
    retryMaxMs: 4,
    onCommit: (durable) => commits.push(new Map([...durable].map(([id, mark]) => [id, mark.seq]))),
    onError: (error, attempt) => errors.push({ error, attempt }),
    onSessionFailed: (sessionId, error) => {
      wasFailing ||= queue.isFailing
      failedSessions.push({ sessionId, error })
    },
    ...options,
  })
  const durable = (): Record<string, number> => {
    const highest = new Map<string, number>()
    for (const commit of commits) for (const [id, seq] of commit) highest.set(id, seq)
    return Object.fromEntries(highest)
  }
  return { inner, controls, queue, errors, failedSessions, durable, wasFailing: () => wasFailing }
}

describe('write queue failure isolation (issue 13.7)', () => {
  it('tells permanent store errors from retryable ones', () => {
    expect(isPermanentStoreError(seqConflict())).toBe(true)
    expect(isPermanentStoreError(new TypeError('update must be a Uint8Array'))).toBe(true)
    expect(isPermanentStoreError(new ColloquyError('invalid-session-id'))).toBe(true)
    expect(isPermanentStoreError(Object.assign(new Error('IO error'), { code: 'LEVEL_IO_ERROR' }))).toBe(
      false,
    )
    expect(isPermanentStoreError(new ColloquyError('storage-unavailable'))).toBe(false)
    expect(isPermanentStoreError(new ColloquyError('shutting-down'))).toBe(false)
  })

  it('drops only the session whose entries the store refuses for good, and commits the rest of the batch', async () => {
    const { queue, controls, inner, errors, failedSessions, durable, wasFailing } = setup()
    const conflict = seqConflict()
    controls.failSession('b', conflict)
    for (const e of [entry('a', 1), entry('b', 1), entry('a', 2), entry('c', 1), entry('b', 2)])
      queue.enqueue(e)
    await queue.flush()

    expect(failedSessions).toEqual([{ sessionId: 'b', error: conflict }])
    expect(durable()).toEqual({ a: 2, c: 1 })
    expect((await inner.load('a')).log.map((e) => e.seq)).toEqual([1, 2])
    expect((await inner.load('c')).log.map((e) => e.seq)).toEqual([1])
    expect(await inner.getMeta('b')).toBeUndefined()
    // Never retried, never "failing": nothing refuses the other sessions' writes.
    expect(errors).toEqual([])
    expect(wasFailing()).toBe(false)
    expect(queue.isFailing).toBe(false)
    expect([queue.queuedEntries, queue.queuedBytes, queue.pendingFor('b')]).toEqual([0, 0, 0])
    // The first batch, then one append per session of it to find the culprit.
    expect(controls.appendBatches.map(names)).toEqual([
      ['a1', 'b1', 'a2', 'c1', 'b2'],
      ['a1', 'a2'],
      ['b1', 'b2'],
      ['c1'],
    ])
    await queue.close()
  })

  it('drops a failed session’s entries queued behind the failed batch, and takes its seqs again from the stored last seq', async () => {
    const { queue, controls, inner, failedSessions, durable } = setup()
    controls.failSession('b', seqConflict(), 1)
    const release = controls.hold()
    queue.enqueue(entry('b', 1))
    queue.flush().catch(() => undefined)
    await controls.whenAppendCalls(1)
    // Queued while b1 is in flight: the session's later seqs cannot be stored without it.
    queue.enqueue(entry('b', 2))
    queue.enqueue(entry('a', 1))
    queue.enqueue(entry('b', 3))
    release()
    await queue.flush()
    expect(failedSessions.map((f) => f.sessionId)).toEqual(['b'])
    expect(durable()).toEqual({ a: 1 })
    expect(controls.appendBatches.map(names)).toEqual([['b1'], ['a1']])
    // The session reloads from disk (nothing of b stored) and numbers from there again.
    queue.enqueue(entry('b', 1))
    await queue.flush()
    expect((await inner.load('b')).log.map((e) => e.seq)).toEqual([1])
    expect(durable()).toEqual({ a: 1, b: 1 })
    await queue.close()
  })

  it('keeps committing other sessions while one session is refused again and again', async () => {
    const { queue, controls, failedSessions, durable, errors } = setup()
    controls.failSession('bad', seqConflict())
    // Bounded: 20 rounds; the bad session is re-created (seq 1) after each drop, as a reload would.
    for (let round = 1; round <= 20; round++) {
      queue.enqueue(entry('good', round))
      queue.enqueue(entry('bad', 1))
      await queue.flush()
      expect(durable().good).toBe(round)
    }
    expect(failedSessions.length).toBe(20)
    expect(errors).toEqual([])
    expect(queue.isFailing).toBe(false)
    await queue.close()
  })

  it('retries with backoff only the part that failed for a retryable reason, after settling the others', async () => {
    const { queue, controls, inner, errors, failedSessions, durable } = setup()
    const ioError = Object.assign(new Error('IO error: disk full'), { code: 'LEVEL_IO_ERROR' })
    controls.failSession('bad', seqConflict())
    controls.failSession('slow', ioError, 1)
    // The store checks entries in order: the batch fails on bad1 (for good), then the split finds
    // that slow's part fails for a reason that may pass.
    for (const e of [entry('bad', 1), entry('slow', 1), entry('ok', 1), entry('slow', 2)]) queue.enqueue(e)
    await queue.flush()
    expect(failedSessions.map((f) => f.sessionId)).toEqual(['bad'])
    expect(errors).toEqual([{ error: ioError, attempt: 1 }])
    expect(durable()).toEqual({ ok: 1, slow: 2 })
    expect((await inner.load('slow')).log.map((e) => e.seq)).toEqual([1, 2])
    expect(controls.appendBatches.map(names)).toEqual([
      ['bad1', 'slow1', 'ok1', 'slow2'],
      ['bad1'],
      ['slow1', 'slow2'],
      ['ok1'],
      ['slow1', 'slow2'],
    ])
    expect(queue.isFailing).toBe(false)
    await queue.close()
  })

  it('resolves flush only once an older entry retried after the split is durable, however many later ones were dropped', async () => {
    const { queue, controls } = setup({ retryMinMs: 20, retryMaxMs: 20 })
    controls.failSession('bad', seqConflict())
    controls.failSession('slow', new Error('IO error'), 1)
    const release = controls.hold()
    queue.enqueue(entry('bad', 1))
    queue.enqueue(entry('slow', 1))
    let isFlushed = false
    const flushed = queue.flush().then(() => {
      isFlushed = true
    })
    await controls.whenAppendCalls(1)
    // Queued behind the held batch, then dropped with their session: 3 entries settle, as many as
    // the flush waits for, yet slow1, older, is not durable.
    queue.enqueue(entry('bad', 2))
    queue.enqueue(entry('bad', 3))
    release()
    await controls.whenAppendCalls(3)
    await new Promise((resolve) => setImmediate(resolve))
    expect(queue.pendingFor('bad')).toBe(0)
    expect(queue.pendingFor('slow')).toBe(1)
    expect(isFlushed).toBe(false)
    await flushed
    expect(queue.pendingFor('slow')).toBe(0)
    await queue.close()
  })

  it('drops a single-session batch refused for good at once, without retrying it', async () => {
    const { queue, controls, failedSessions, errors } = setup()
    controls.failNext(1, new ColloquyError('invalid-session-id'))
    queue.enqueue(entry('b', 1))
    await queue.flush()
    expect(controls.appendCalls).toBe(1)
    expect(failedSessions.map((f) => f.sessionId)).toEqual(['b'])
    expect(errors).toEqual([])
    await queue.close()
  })
})
