// The turn store's batching over a record store: changes of one moment go out in one batch, a
// change queued while a batch is written is written next (it once waited forever), a failed batch
// is retried, and what was saved reads back.

import { describe, expect, it } from 'vitest'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { RecordOp, RecordStore } from '../../../server/persistence/store.js'
import { createTurnStore, type StoredTurn } from '../../../server/turns/turn-store.js'

function turn(n: number): StoredTurn {
  return {
    id: `gpu~s${n}~m`,
    sessionId: `s${n}`,
    messageId: 'm',
    pool: 'gpu',
    priority: 1,
    tenant: 'default',
    state: 'queued',
    attempts: 0,
    createdAt: 1,
    updatedAt: 1,
    seq: n,
  }
}

/** A record store that counts batches and can fail the next ones. */
function countingRecords() {
  const inner = createMemoryStore().records!
  const batches: number[] = []
  let failures = 0
  const records: RecordStore = {
    async write(ops: readonly RecordOp[]) {
      if (failures > 0) {
        failures--
        throw new Error('disk full')
      }
      batches.push(ops.length)
      await inner.write(ops)
    },
    scan: (range) => inner.scan(range),
  }
  return {
    records,
    batches,
    failNext(count: number) {
      failures = count
    },
  }
}

describe('the turn store', () => {
  it('writes the changes of one moment in one batch', async () => {
    const { records, batches } = countingRecords()
    const store = createTurnStore({ records, logger: createSilentLogger() })
    await Promise.all(Array.from({ length: 50 }, (_, n) => store.save(turn(n))))
    expect(batches.reduce((sum, size) => sum + size, 0)).toBe(50)
    expect(batches.length).toBeLessThanOrEqual(2)
  })

  it('resolves every save awaited one after the other (regression: a save queued as a batch ended waited forever)', async () => {
    const { records } = countingRecords()
    const store = createTurnStore({ records, logger: createSilentLogger() })
    const saves = (async () => {
      for (let n = 0; n < 200; n++) await store.save(turn(n))
      return 'done'
    })()
    const bound = new Promise((resolve) => setTimeout(() => resolve('stuck'), 5_000).unref())
    expect(await Promise.race([saves, bound])).toBe('done')
    expect(await store.loadAll()).toHaveLength(200)
  })

  it('retries a failed batch until it is durable', async () => {
    const { records, batches, failNext } = countingRecords()
    const store = createTurnStore({ records, logger: createSilentLogger(), retryMs: 1 })
    failNext(2)
    await store.save(turn(1))
    expect(batches).toEqual([1])
    expect((await store.loadAll()).map((t) => t.id)).toEqual(['gpu~s1~m'])
  })

  it('keeps only the latest change of a turn and deletes what it is told to', async () => {
    const { records } = countingRecords()
    const store = createTurnStore({ records, logger: createSilentLogger() })
    void store.save(turn(1))
    await store.save({ ...turn(1), state: 'done' })
    await store.save(turn(2))
    await store.delete('gpu~s2~m')
    expect((await store.loadAll()).map((t) => [t.id, t.state])).toEqual([['gpu~s1~m', 'done']])
  })
})
