// The keyed write queue of the turn stores: changes of one moment written in one round, a later
// change of a key replacing an earlier one not yet written, rounds one after another, failed keys
// retried with backoff unless replaced, and close() dropping what is not written.

import { describe, expect, it } from 'vitest'
import { createKeyedWriteQueue } from '../../../server/turns/keyed-write-queue.js'

/** A write that records each round and fails the keys (or rounds) it is told to. */
function recordingWrite() {
  const rounds: Map<string, string>[] = []
  const failKeys = new Map<string, number>()
  let failRounds = 0
  let gate: Promise<void> = Promise.resolve()
  return {
    rounds,
    /** Fails `key`'s next `times` writes. */
    failKey(key: string, times: number) {
      failKeys.set(key, times)
    },
    failNextRounds(times: number) {
      failRounds = times
    },
    /** Holds every round until `release` is called. */
    hold(): () => void {
      let release!: () => void
      gate = new Promise((resolve) => {
        release = resolve
      })
      return release
    },
    async write(round: ReadonlyMap<string, string>) {
      rounds.push(new Map(round))
      await gate
      if (failRounds > 0) {
        failRounds--
        throw new Error('disk full')
      }
      const failed: [string, unknown][] = []
      for (const key of round.keys()) {
        const left = failKeys.get(key) ?? 0
        if (left > 0) {
          failKeys.set(key, left - 1)
          failed.push([key, new Error(`${key} refused`)])
        }
      }
      return failed
    },
  }
}

describe('the keyed write queue', () => {
  it('writes a first change at once and those made meanwhile in one round, the latest of a key only', async () => {
    const store = recordingWrite()
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('closed'),
    })
    await Promise.all([
      queue.enqueue('a', 'a1'),
      queue.enqueue('b', 'b1'),
      queue.enqueue('a', 'a2'),
      queue.enqueue('a', 'a3'),
    ])
    expect(store.rounds).toEqual([
      new Map([['a', 'a1']]),
      new Map([
        ['a', 'a3'],
        ['b', 'b1'],
      ]),
    ])
    expect(queue.pending).toBe(0)
  })

  it('starts a round only after the one before, with what was changed meanwhile', async () => {
    const store = recordingWrite()
    const release = store.hold()
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('closed'),
    })
    const first = queue.enqueue('a', 'a1')
    await Promise.resolve()
    const second = queue.enqueue('a', 'a2')
    const third = queue.enqueue('a', 'a3')
    expect(store.rounds).toHaveLength(1)
    expect(queue.pending).toBe(2)
    release()
    await Promise.all([first, second, third])
    expect(store.rounds.map((round) => round.get('a'))).toEqual(['a1', 'a3'])
  })

  it('retries a failed key with backoff while the others of its round are stored', async () => {
    const store = recordingWrite()
    store.failKey('a', 2)
    const retries: number[] = []
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('closed'),
      retryMs: 1,
      onRetry: (_error, failed, retryMs) => retries.push(failed * 1_000 + retryMs),
    })
    let isBStored = false
    const b = queue.enqueue('b', 'b1').then(() => {
      isBStored = true
    })
    const a = queue.enqueue('a', 'a1')
    await b
    expect(isBStored).toBe(true)
    await a
    // b's round, then a's first write and its two retries.
    expect(store.rounds.map((round) => [...round.keys()].join())).toEqual(['b', 'a', 'a', 'a'])
    // One key failed each time; the wait doubled.
    expect(retries).toEqual([1_001, 1_002])
  })

  it('lets a newer change of a failed key replace it: the older value is not written after it', async () => {
    const store = recordingWrite()
    store.failKey('a', 1)
    const release = store.hold()
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('closed'),
      retryMs: 1,
    })
    const old = queue.enqueue('a', 'old')
    await Promise.resolve()
    const newer = queue.enqueue('a', 'new')
    release()
    await Promise.all([old, newer])
    expect(store.rounds.map((round) => round.get('a'))).toEqual(['old', 'new'])
  })

  it('retries every key of a round that failed as a whole, and flush waits through it', async () => {
    const store = recordingWrite()
    store.failNextRounds(2)
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('closed'),
      retryMs: 1,
    })
    const both = Promise.all([queue.enqueue('a', 'a1'), queue.enqueue('b', 'b1')])
    await queue.flush()
    await both
    expect(store.rounds).toHaveLength(3)
    expect(queue.pending).toBe(0)
  })

  it('rejects on close what is not written: queued changes with closedError, a failing round with its error', async () => {
    const store = recordingWrite()
    store.failKey('a', 100)
    const queue = createKeyedWriteQueue<string>({
      write: store.write,
      closedError: () => new Error('store closed'),
      retryMs: 5,
    })
    const failing = queue.enqueue('a', 'a1')
    failing.catch(() => undefined)
    // The first round failed and waits to retry: close then.
    await expect.poll(() => store.rounds.length).toBe(1)
    const release = store.hold()
    await new Promise((resolve) => setTimeout(resolve, 10))
    const queued = queue.enqueue('b', 'b1')
    queued.catch(() => undefined)
    const closing = queue.close()
    release()
    await closing
    await expect(failing).rejects.toThrow(/a refused|store closed/)
    await expect(queued).rejects.toThrow(/store closed|b refused/)
    await expect(queue.enqueue('c', 'c1')).rejects.toThrow('store closed')
  })
})
