// A claim is answered only once its records are durable; what happens to the turns it took while
// those records are being written: a session deleted meanwhile (its turns ended), a worker gone
// meanwhile (its answer will never be sent).

import { describe, expect, it } from 'vitest'
import { createSilentLogger } from '../../../server/observability/log.js'
import { type ClaimOptions, openTurnService, type TurnService } from '../../../server/turns/turn-service.js'
import type { StoredTurn, TurnStore } from '../../../server/turns/turn-store.js'
import type { ClaimedTurn } from '../../../shared/turns/api.js'

/** A store whose saves wait while it is held, and resolve in order once it is opened. */
function gatedStore(): { store: TurnStore; hold(): void; open(): void; readonly waiting: number } {
  let isHeld = false
  const waiting: (() => void)[] = []
  return {
    hold: () => {
      isHeld = true
    },
    open: () => {
      isHeld = false
      for (const resolve of waiting.splice(0)) resolve()
    },
    get waiting() {
      return waiting.length
    },
    store: {
      save: (_turn: StoredTurn) =>
        isHeld ? new Promise<void>((resolve) => waiting.push(resolve)) : Promise.resolve(),
      delete: async () => undefined,
      loadAll: async () => [],
      flush: async () => undefined,
      close: async () => undefined,
    },
  }
}

async function openService(store: TurnStore): Promise<TurnService> {
  return openTurnService({
    pools: [{ name: 'gpu', concurrency: 2, maxQueued: 10, maxQueuedPerTenant: 10 }],
    store,
    logger: createSilentLogger(),
    leaseMs: 30_000,
    maxAttempts: 3,
    starvationMs: 0,
    positionRefreshMs: 0,
    retentionMs: 0,
  })
}

type Gate = ReturnType<typeof gatedStore>

/** Runs `body` on a service over a gated store, with one queued turn `gpu~s1~q`; closes it after. */
async function withOneTurn(body: (service: TurnService, gate: Gate) => Promise<void>): Promise<void> {
  const gate = gatedStore()
  const service = await openService(gate.store)
  try {
    await service.create({ sessionId: 's1', messageId: 'q', pool: 'gpu' })
    await body(service, gate)
  } finally {
    gate.open()
    await service.close()
  }
}

function worker(instanceId: string, isAborted: () => boolean = () => false): ClaimOptions {
  return { max: 1, waitMs: 0, instanceId, peerId: `agent-${instanceId}`, isAborted }
}

/** Lets pending promise callbacks and I/O turns run (a few macrotask turns). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

describe('a claim whose records are still being written', () => {
  it('does not hand out a turn whose session was deleted meanwhile, and moves on to the next turn', async () => {
    const gate = gatedStore()
    const service = await openService(gate.store)
    try {
      await service.create({ sessionId: 'doomed', messageId: 'q', pool: 'gpu' })
      await service.create({ sessionId: 'alive', messageId: 'q', pool: 'gpu' })
      gate.hold()
      // Takes the oldest turn (the doomed session's) and waits for its claimed record.
      const claim = service.claim('gpu', worker('w1'))
      await settle()
      expect(gate.waiting).toBe(1)
      // DELETE /sessions/doomed ends its turns meanwhile.
      const ending = service.endSession('doomed')
      gate.open()
      await ending
      const claimed: ClaimedTurn[] = await claim
      expect(service.get('gpu~doomed~q').turn).toMatchObject({
        state: 'cancelled',
        reason: 'session-deleted',
      })
      expect(claimed.map(({ turn }) => turn.id)).toEqual(['gpu~alive~q'])
      expect(claimed[0]!.turn.state).toBe('claimed')
      expect(service.pool('gpu')).toMatchObject({ running: 1, queued: 0 })
    } finally {
      gate.open()
      await service.close()
    }
  })

  it('gives the turns of a claim whose worker went away meanwhile back at once, the attempt not counted', () =>
    withOneTurn(async (service, gate) => {
      gate.hold()
      let isGone = false
      const claim = service.claim(
        'gpu',
        worker('w1', () => isGone),
      )
      await settle()
      expect(gate.waiting).toBe(1)
      // The worker's request is aborted before its answer could be written.
      isGone = true
      gate.open()
      const answer = await claim
      await settle()
      expect(service.get('gpu~s1~q').turn).toMatchObject({ state: 'queued', attempts: 0 })
      expect(service.get('gpu~s1~q').turn.lease).toBeUndefined()
      // Nobody would receive it: the claim answers nothing, as a long poll of a gone worker does.
      expect(answer).toEqual([])
      expect(service.pool('gpu')).toMatchObject({ running: 0, queued: 1 })
      const [next] = await service.claim('gpu', worker('w2'))
      expect(next?.turn).toMatchObject({ id: 'gpu~s1~q', state: 'claimed', attempts: 1 })
    }))

  it('never takes back a claim that was answered, whatever its worker does later', () =>
    withOneTurn(async (service) => {
      let isGone = false
      const [claimed] = await service.claim(
        'gpu',
        worker('w1', () => isGone),
      )
      isGone = true
      await settle()
      expect(service.get('gpu~s1~q').turn).toMatchObject({ state: 'claimed', attempts: 1 })
      expect(service.get('gpu~s1~q').turn.lease?.id).toBe(claimed!.lease.id)
    }))

  it('ends cancelled a turn a device cancelled while the claim its worker abandoned was being stored', () =>
    withOneTurn(async (service, gate) => {
      gate.hold()
      let isGone = false
      const claim = service.claim(
        'gpu',
        worker('w1', () => isGone),
      )
      await settle()
      const cancelling = service.cancel('gpu~s1~q', { id: 'phone', kind: 'device' })
      isGone = true
      gate.open()
      await cancelling
      const answer = await claim
      await settle()
      expect(service.get('gpu~s1~q').turn).toMatchObject({
        state: 'cancelled',
        reason: 'cancelled-by-device',
      })
      expect(answer).toEqual([])
      expect(service.pool('gpu')).toMatchObject({ running: 0, queued: 0 })
    }))
})
