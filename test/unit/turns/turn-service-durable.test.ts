// A turn's create is answered only once its record is durable, also when a second create of the
// same turn arrives while the first one's save is still in flight (in a cluster: the same turn
// created through two nodes at once, both forwarded to the pool's scheduler).

import { describe, expect, it } from 'vitest'
import { createSilentLogger } from '../../../server/observability/log.js'
import { openTurnService } from '../../../server/turns/turn-service.js'
import type { StoredTurn, TurnStore } from '../../../server/turns/turn-store.js'

/** A store whose saves resolve only when the test releases them. */
function heldStore(): { store: TurnStore; saved: StoredTurn[]; release(): void } {
  const waiting: (() => void)[] = []
  const saved: StoredTurn[] = []
  return {
    saved,
    release: () => {
      for (const resolve of waiting.splice(0)) resolve()
    },
    store: {
      save: (turn) =>
        new Promise<void>((resolve) => {
          waiting.push(() => {
            saved.push(turn)
            resolve()
          })
        }),
      delete: async () => undefined,
      loadAll: async () => [],
      flush: async () => undefined,
      close: async () => undefined,
    },
  }
}

const settledSoon = async (promise: Promise<unknown>): Promise<boolean> => {
  let isSettled = false
  void promise.then(
    () => {
      isSettled = true
    },
    () => {
      isSettled = true
    },
  )
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  return isSettled
}

describe('turn creation and durability', () => {
  it('answers a second create of a turn only once the first create stored it (regression: answered before durable)', async () => {
    const held = heldStore()
    const service = await openTurnService({
      pools: [{ name: 'gpu', concurrency: 1, maxQueued: 10, maxQueuedPerTenant: 10 }],
      store: held.store,
      logger: createSilentLogger(),
      leaseMs: 3_000,
      maxAttempts: 3,
      starvationMs: 0,
      positionRefreshMs: 0,
      retentionMs: 0,
    })
    const request = { sessionId: 's1', messageId: 'm1', pool: 'gpu' }
    const first = service.create(request)
    const second = service.create(request)
    expect(await settledSoon(second)).toBe(false)
    expect(await settledSoon(first)).toBe(false)
    held.release()
    expect(await first).toMatchObject({ isNew: true })
    expect(await second).toMatchObject({ isNew: false, turn: { id: 'gpu~s1~m1', state: 'queued' } })
    expect(held.saved.map((turn) => turn.id)).toEqual(['gpu~s1~m1'])
    await service.close()
  })
})
