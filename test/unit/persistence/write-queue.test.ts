import { describe, expect, it } from 'vitest'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { AppendEntry } from '../../../server/persistence/store.js'
import { createWriteQueue, type WriteQueueOptions } from '../../../server/persistence/write-queue.js'
import { createControllableStore } from '../../helpers/controllable-store.js'

/** An entry whose bytes (and time, 1000 + tag) carry `tag`: the store gives it its seq. */
function entry(sessionId: string, tag: number, bytes = 10): AppendEntry {
  return { sessionId, time: 1000 + tag, update: new Uint8Array(bytes).fill(tag % 256) }
}

/** The tag an entry was made with (see {@link entry}). */
function tagOf(entry: AppendEntry): number {
  return entry.time - 1000
}

/** A memory store behind the controls, a queue on it, and every onCommit call recorded. */
function setup(options: Partial<Omit<WriteQueueOptions, 'store'>> = {}) {
  const inner = createMemoryStore()
  const controls = createControllableStore(inner)
  const commits: Map<string, number>[] = []
  const errors: { error: unknown; attempt: number }[] = []
  let recoveries = 0
  const queue = createWriteQueue({
    store: controls.store,
    retryMinMs: 1,
    retryMaxMs: 4,
    // The seq the store gave each session's last durable entry.
    onCommit: (durable) => commits.push(new Map([...durable].map(([id, mark]) => [id, mark.seq]))),
    onError: (error, attempt) => errors.push({ error, attempt }),
    onRecover: () => recoveries++,
    ...options,
  })
  return { inner, controls, queue, commits, errors, recoveries: () => recoveries }
}

/** Lets every already-settled promise callback run (no timers involved). */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

describe('createWriteQueue', () => {
  it('groups entries of several sessions into one append and reports the seq the store gave the last of each', async () => {
    const { queue, controls, commits } = setup()
    queue.enqueue(entry('a', 1))
    queue.enqueue(entry('b', 1))
    queue.enqueue(entry('a', 2))
    queue.enqueue(entry('c', 7))
    queue.enqueue(entry('b', 2))
    await queue.flush()
    expect(controls.appendCalls).toBe(1)
    expect(controls.appendBatches[0]?.map((e) => `${e.sessionId}${tagOf(e)}`)).toEqual([
      'a1',
      'b1',
      'a2',
      'c7',
      'b2',
    ])
    expect(commits).toEqual([
      new Map([
        ['a', 2],
        ['b', 2],
        // Tagged 7, but the first entry of `c`: the store (not the caller) numbers it.
        ['c', 1],
      ]),
    ])
    await queue.close()
  })

  it('sends what arrives during a batch as the next batch, right after it', async () => {
    const { queue, controls, commits, inner } = setup()
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    await controls.whenAppendCalls(1)
    queue.enqueue(entry('a', 2))
    queue.enqueue(entry('b', 1))
    expect(queue.queuedEntries).toBe(3)
    release()
    await queue.flush()
    expect(controls.appendBatches.map((batch) => batch.map((e) => `${e.sessionId}${tagOf(e)}`))).toEqual([
      ['a1'],
      ['a2', 'b1'],
    ])
    expect(commits.map((commit) => Object.fromEntries(commit))).toEqual([{ a: 1 }, { a: 2, b: 1 }])
    expect((await inner.load('a')).log.map((e) => e.seq)).toEqual([1, 2])
    await queue.close()
  })

  it('holds entries nobody waits for up to the lazy delay, and commits within the short one once a peer waits', async () => {
    const { queue, controls } = setup({ flushDelayMs: 5, lazyFlushDelayMs: 60_000 })
    queue.enqueue(entry('a', 1))
    queue.enqueue(entry('b', 1))
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Ten times the short delay and nothing written: nobody asked.
    expect(controls.appendCalls).toBe(0)
    const started = performance.now()
    queue.expedite()
    await controls.whenAppendCalls(1)
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(controls.appendBatches[0]?.map((e) => `${e.sessionId}${tagOf(e)}`)).toEqual(['a1', 'b1'])
    // What comes after the expedited entries is lazy again.
    queue.enqueue(entry('a', 2))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(controls.appendCalls).toBe(1)
    await queue.close()
    expect(controls.appendCalls).toBe(2)
  })

  it('starts a lazy batch at once when lazyBatchEntries are queued, without waiting out the delay', async () => {
    const { queue, controls } = setup({ flushDelayMs: 5, lazyFlushDelayMs: 60_000, lazyBatchEntries: 4 })
    for (let seq = 1; seq <= 3; seq++) queue.enqueue(entry('a', seq))
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Below the threshold nobody asked for: nothing written yet.
    expect(controls.appendCalls).toBe(0)
    queue.enqueue(entry('a', 4))
    await controls.whenAppendCalls(1)
    expect(controls.appendBatches[0]?.map(tagOf)).toEqual([1, 2, 3, 4])
    // The next one is lazy again.
    queue.enqueue(entry('a', 5))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(controls.appendCalls).toBe(1)
    await queue.close()
    expect(controls.appendBatches.map((batch) => batch.length)).toEqual([4, 1])
  })

  it('expedites entries queued behind a batch in flight, and ignores expedite with nothing queued', async () => {
    const { queue, controls } = setup({ flushDelayMs: 0, lazyFlushDelayMs: 60_000 })
    queue.expedite()
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    queue.expedite()
    await controls.whenAppendCalls(1)
    queue.enqueue(entry('a', 2))
    queue.expedite()
    release()
    // The second batch follows the first at once: its entry was expedited while the first was in flight.
    await controls.whenAppendCalls(2)
    expect(controls.appendBatches.map((batch) => batch.map(tagOf))).toEqual([[1], [2]])
    await queue.close()
  })

  it('retries a failing batch, acking nothing until it succeeds, and loses or repeats nothing', async () => {
    const { queue, controls, commits, errors, recoveries, inner } = setup()
    controls.failNext(3)
    let wasFailing = false
    queue.enqueue(entry('a', 1))
    queue.enqueue(entry('b', 1))
    await controls.whenAppendCalls(1)
    // Enqueued while the first attempt is under way: joins a retry.
    queue.enqueue(entry('a', 2))
    await controls.whenAppendCalls(3)
    wasFailing = queue.isFailing
    expect(commits).toEqual([])
    expect(queue.pendingFor('a')).toBe(2)
    queue.enqueue(entry('b', 2))
    await queue.flush()
    expect(wasFailing).toBe(true)
    expect(queue.isFailing).toBe(false)
    expect(errors.map((e) => e.attempt)).toEqual([1, 2, 3])
    expect(errors[0]?.error).toBeInstanceOf(Error)
    expect(recoveries()).toBe(1)
    // Failed entries stay at the front, in order, on every attempt.
    for (const batch of controls.appendBatches) {
      expect(batch.slice(0, 2).map((e) => `${e.sessionId}${tagOf(e)}`)).toEqual(['a1', 'b1'])
    }
    const durable = new Map<string, number>()
    for (const commit of commits) for (const [id, seq] of commit) durable.set(id, seq)
    expect(Object.fromEntries(durable)).toEqual({ a: 2, b: 2 })
    expect((await inner.load('a')).log.map((e) => e.seq)).toEqual([1, 2])
    expect((await inner.load('b')).log.map((e) => e.seq)).toEqual([1, 2])
    expect(controls.appendSuccesses).toBeGreaterThanOrEqual(1)
    expect([queue.queuedEntries, queue.queuedBytes, queue.pendingFor('a')]).toEqual([0, 0, 0])
    await queue.close()
  })

  it('reports isFailing from the failed batch until the next success', async () => {
    const { queue, controls } = setup({ retryMinMs: 1, retryMaxMs: 1 })
    controls.failNext(Number.POSITIVE_INFINITY)
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    await controls.whenAppendCalls(1)
    expect(queue.isFailing).toBe(false)
    release()
    await controls.whenAppendCalls(2)
    expect(queue.isFailing).toBe(true)
    await controls.whenAppendCalls(4)
    expect(queue.isFailing).toBe(true)
    controls.heal()
    await queue.flush()
    expect(queue.isFailing).toBe(false)
    await queue.close()
  })

  it('resolves flush only once the batch is durable', async () => {
    const { queue, controls, inner } = setup({ flushDelayMs: 60_000 })
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    let isFlushed = false
    const flushed = queue.flush().then(() => {
      isFlushed = true
    })
    // flush skips the gather delay: the append starts at once, and is held.
    await controls.whenAppendCalls(1)
    await drainMicrotasks()
    expect(isFlushed).toBe(false)
    expect(await inner.getMeta('a')).toBeUndefined()
    expect(queue.pendingFor('a')).toBe(1)
    release()
    await flushed
    expect((await inner.getMeta('a'))?.lastSeq).toBe(1)
    expect(queue.pendingFor('a')).toBe(0)
    await queue.close()
  })

  it('resolves flush for what was enqueued before the call, not after', async () => {
    const { queue, controls } = setup()
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    const first = queue.flush()
    await controls.whenAppendCalls(1)
    queue.enqueue(entry('a', 2))
    const second = queue.flush()
    release()
    await first
    await second
    expect(queue.queuedEntries).toBe(0)
    await queue.close()
  })

  it('counts bytes and entries not yet durable, per session too', async () => {
    const { queue, controls } = setup()
    const release = controls.hold()
    queue.enqueue(entry('a', 1, 5))
    queue.enqueue(entry('a', 2, 7))
    queue.enqueue(entry('b', 1, 11))
    expect([queue.queuedBytes, queue.queuedEntries]).toEqual([23, 3])
    expect([queue.pendingFor('a'), queue.pendingFor('b'), queue.pendingFor('c')]).toEqual([2, 1, 0])
    release()
    await queue.flush()
    expect([queue.queuedBytes, queue.queuedEntries, queue.pendingFor('a')]).toEqual([0, 0, 0])
    await queue.close()
  })

  it('starts a batch at once when the byte bound is reached, without waiting for the delay', async () => {
    const { queue, controls } = setup({ flushDelayMs: 60_000, maxBatchBytes: 100 })
    queue.enqueue(entry('a', 1, 60))
    await drainMicrotasks()
    expect(controls.appendCalls).toBe(0)
    queue.enqueue(entry('a', 2, 40))
    await controls.whenAppendCalls(1)
    await queue.close()
  })

  it('splits batches at the entry bound and keeps their order', async () => {
    const { queue, controls, inner } = setup({ maxBatchEntries: 10 })
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    await controls.whenAppendCalls(1)
    for (let seq = 2; seq <= 26; seq++) queue.enqueue(entry('a', seq))
    release()
    await queue.flush()
    expect(controls.appendBatches.map((batch) => batch.length)).toEqual([1, 10, 10, 5])
    expect((await inner.load('a')).log.map((e) => e.seq)).toEqual(Array.from({ length: 26 }, (_, i) => i + 1))
    await queue.close()
  })

  it('sends an update larger than the byte bound on its own', async () => {
    const { queue, controls } = setup({ maxBatchBytes: 100 })
    const release = controls.hold()
    queue.enqueue(entry('a', 1))
    await controls.whenAppendCalls(1)
    queue.enqueue(entry('a', 2, 500))
    queue.enqueue(entry('a', 3, 10))
    release()
    await queue.flush()
    expect(controls.appendBatches.map((batch) => batch.map(tagOf))).toEqual([[1], [2], [3]])
    await queue.close()
  })

  it('refuses invalid entries, keeping the rest, and numbers what it queues by rising ordinals', async () => {
    const durable: { id: string; ordinal: number; seq: number }[] = []
    const { queue, inner } = setup({
      onCommit: (marks) => {
        for (const [id, mark] of marks) durable.push({ id, ordinal: mark.ordinal, seq: mark.seq })
      },
    })
    expect(queue.enqueue(entry('a', 5))).toBe(0)
    expect(() => queue.enqueue({ sessionId: 'a', time: -1, update: new Uint8Array(1) })).toThrow(RangeError)
    expect(() => queue.enqueue({ sessionId: 'a', time: 1, update: [] as unknown as Uint8Array })).toThrow(
      TypeError,
    )
    expect(() => queue.enqueue(entry('no spaces', 1))).toThrow(
      expect.objectContaining({ code: 'invalid-session-id' }),
    )
    expect(queue.enqueue(entry('b', 1))).toBe(1)
    expect(queue.enqueue(entry('a', 6))).toBe(2)
    await queue.flush()
    expect((await inner.load('a')).log.map((e) => [e.seq, e.time])).toEqual([
      [1, 1005],
      [2, 1006],
    ])
    expect(durable).toEqual([
      { id: 'a', ordinal: 2, seq: 2 },
      { id: 'b', ordinal: 1, seq: 1 },
    ])
    await queue.close()
  })

  it('flushes everything on close, then refuses entries and leaves no timer running', async () => {
    const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
    const { queue, controls, inner } = setup({ flushDelayMs: 60_000 })
    controls.failNext(2)
    queue.enqueue(entry('a', 1))
    queue.enqueue(entry('b', 1))
    await queue.close()
    expect((await inner.listSessions()).map((meta) => meta.sessionId)).toEqual(['a', 'b'])
    expect(() => queue.enqueue(entry('a', 2))).toThrow(expect.objectContaining({ code: 'shutting-down' }))
    await queue.flush()
    const timersAfter = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
    // At most as many: a timer of an earlier test may end meanwhile; a leaked retry timer would add one.
    expect(timersAfter).toBeLessThanOrEqual(timersBefore)
  })

  it('keeps working when an onCommit callback throws, rethrowing the error outside the queue', async () => {
    // The test runner counts uncaught exceptions as failures: catch these two ourselves meanwhile.
    const runnerListeners = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    const thrown: unknown[] = []
    process.on('uncaughtException', (error) => thrown.push(error))
    try {
      const { queue, inner } = setup({
        onCommit: () => {
          throw new Error('callback bug')
        },
      })
      queue.enqueue(entry('a', 1))
      await queue.flush()
      queue.enqueue(entry('a', 2))
      await queue.close()
      await drainMicrotasks()
      expect((await inner.getMeta('a'))?.lastSeq).toBe(2)
      expect(thrown.map((error) => (error as Error).message)).toEqual(['callback bug', 'callback bug'])
    } finally {
      process.removeAllListeners('uncaughtException')
      for (const listener of runnerListeners) process.on('uncaughtException', listener)
    }
  })
})
