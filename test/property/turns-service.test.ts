// Seeded property over the turn service itself (memory store, fake timers): random creations,
// claims by several workers, renewals, completions, failures with and without retry, cancels, worker
// deaths (they stop renewing) and clock jumps that expire leases and deadlines. Whatever happens:
// no pool runs more than its concurrency, no turn is claimed beyond the attempts allowed, every turn
// ends at most once and never changes after, a lease-holder's call after its lease was lost is
// refused, what devices see matches the turn, and after a drain every turn has ended exactly once.
// Replay a failure with SEED=<printed seed>.

import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createSilentLogger } from '../../server/observability/log.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { TurnDocuments } from '../../server/turns/turn-documents.js'
import { openTurnService } from '../../server/turns/turn-service.js'
import { createTurnStore, type StoredTurn } from '../../server/turns/turn-store.js'
import type { ClaimedTurn } from '../../shared/turns/api.js'
import type { TurnEntry } from '../../shared/turns/document.js'
import { isFinalTurnState, type Turn } from '../../shared/turns/turn.js'

// Read before the fake clock starts.
const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
const LEASE_MS = 1_000
const MAX_ATTEMPTS = 3
const POOLS = [
  { name: 'a', concurrency: 2, maxQueued: 8, maxQueuedPerTenant: 4 },
  { name: 'b', concurrency: 3, maxQueued: 30, maxQueuedPerTenant: 30 },
]

type Op =
  | { kind: 'create'; pool: string; session: number; priority: number; tenant: number; timeout?: number }
  | { kind: 'claim'; pool: string; worker: number; max: number }
  | { kind: 'renew'; pick: number; streaming: boolean }
  | { kind: 'complete'; pick: number }
  | { kind: 'fail'; pick: number; retry: boolean }
  | { kind: 'cancel'; pick: number }
  | { kind: 'die'; worker: number }
  | { kind: 'advance'; ms: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record(
      {
        kind: fc.constant('create' as const),
        pool: fc.constantFrom('a', 'b'),
        session: fc.integer({ min: 0, max: 3 }),
        priority: fc.integer({ min: 0, max: 2 }),
        tenant: fc.integer({ min: 0, max: 3 }),
        timeout: fc.integer({ min: 1, max: 20_000 }),
      },
      { requiredKeys: ['kind', 'pool', 'session', 'priority', 'tenant'] },
    ),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('claim' as const),
      pool: fc.constantFrom('a', 'b'),
      worker: fc.integer({ min: 0, max: 3 }),
      max: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('renew' as const), pick: fc.nat(), streaming: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('fail' as const), pick: fc.nat(), retry: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('die' as const), worker: fc.integer({ min: 0, max: 3 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2_500 }) }),
  },
)

async function runCase(ops: readonly Op[]): Promise<void> {
  const shown = new Map<string, TurnEntry>()
  const documents: TurnDocuments = {
    write: (sessionId, messageId, entry) => shown.set(`${sessionId}/${messageId}`, entry),
    requestCancel: () => undefined,
    pendingSessions: 0,
    flush: async () => undefined,
    close: () => undefined,
  }
  const endings = new Map<string, string[]>()
  const service = await openTurnService({
    pools: POOLS,
    store: createTurnStore({ records: createMemoryStore().records!, logger: createSilentLogger() }),
    logger: createSilentLogger(),
    leaseMs: LEASE_MS,
    maxAttempts: MAX_ATTEMPTS,
    starvationMs: 3_000,
    positionRefreshMs: 0,
    retentionMs: 0,
    documents,
    observer: {
      ended: (turn: StoredTurn) => endings.set(turn.id, [...(endings.get(turn.id) ?? []), turn.state]),
    },
  })
  /** Leases each worker holds (what it believes; the server may have taken them back). */
  const held = new Map<number, ClaimedTurn[]>()
  const created = new Set<string>()
  const finals = new Map<string, Turn>()
  const allHeld = () =>
    [...held.entries()].flatMap(([worker, list]) => list.map((claim) => ({ worker, claim })))
  const drop = (worker: number, id: string) =>
    held.set(
      worker,
      (held.get(worker) ?? []).filter((claim) => claim.turn.id !== id),
    )

  try {
    for (const step of ops) {
      switch (step.kind) {
        case 'create': {
          try {
            const result = await service.create({
              sessionId: `s${step.session}`,
              // One message per pool: the `turns` map has one entry per message.
              messageId: `q-${step.pool}`,
              pool: step.pool,
              priority: step.priority,
              tenant: `t${step.tenant}`,
              ...(step.timeout === undefined ? {} : { timeoutMs: step.timeout }),
            })
            created.add(result.turn.id)
          } catch (error) {
            expect((error as { code?: string }).code).toBe('queue-full')
          }
          break
        }
        case 'claim': {
          const claimed = await service.claim(step.pool, {
            max: step.max,
            waitMs: 0,
            instanceId: `w${step.worker}`,
            peerId: `w${step.worker}`,
            isAborted: () => false,
          })
          for (const claim of claimed) {
            expect(claim.turn.attempts).toBeLessThanOrEqual(MAX_ATTEMPTS)
            expect(claim.turn.state).toBe('claimed')
          }
          held.set(step.worker, [...(held.get(step.worker) ?? []), ...claimed])
          break
        }
        case 'renew':
        case 'complete':
        case 'fail': {
          const all = allHeld()
          if (all.length === 0) break
          const { worker, claim } = all[step.pick % all.length]!
          const before = service.get(claim.turn.id).turn
          const isCurrent =
            before.lease?.id === claim.lease.id &&
            !isFinalTurnState(before.state) &&
            before.lease.expiresAt > Date.now()
          if (step.kind === 'renew') {
            const answer = await service.renew(claim.turn.id, {
              leaseId: claim.lease.id,
              ...(step.streaming ? { state: 'streaming' as const, replyId: 'reply' } : {}),
            })
            if (!isCurrent) expect(answer.status).not.toBe('ok')
            if (answer.status !== 'ok') drop(worker, claim.turn.id)
          } else {
            const call =
              step.kind === 'complete'
                ? service.complete(claim.turn.id, { leaseId: claim.lease.id })
                : service.fail(claim.turn.id, {
                    leaseId: claim.lease.id,
                    reason: 'model-error',
                    retry: step.retry,
                  })
            const outcome = await call.then(
              () => 'ok',
              (error: { code?: string }) => error.code,
            )
            expect(outcome).toBe(
              isCurrent ? 'ok' : isFinalTurnState(before.state) ? 'turn-finished' : 'lease-lost',
            )
            drop(worker, claim.turn.id)
          }
          break
        }
        case 'cancel': {
          const ids = [...created]
          if (ids.length === 0) break
          const id = ids[step.pick % ids.length]!
          const wasFinal = isFinalTurnState(service.get(id).turn.state)
          const outcome = await service.cancel(id, { id: 'phone', kind: 'device' }).then(
            () => 'ok',
            (error: { code?: string }) => error.code,
          )
          expect(outcome).toBe(wasFinal ? 'turn-finished' : 'ok')
          break
        }
        case 'die':
          held.delete(step.worker)
          break
        case 'advance':
          await vi.advanceTimersByTimeAsync(step.ms)
          // A live worker knows when its lease ran out and lets go.
          for (const [worker, list] of held) {
            held.set(
              worker,
              list.filter((claim) => claim.lease.expiresAt > Date.now()),
            )
          }
          break
      }
      // Invariants after every step.
      for (const pool of service.pools()) {
        const limits = POOLS.find((p) => p.name === pool.pool)!
        expect(pool.running).toBeLessThanOrEqual(limits.concurrency)
        const working = [...created]
          .map((id) => service.get(id).turn)
          .filter(
            (turn) => turn.pool === pool.pool && (turn.state === 'claimed' || turn.state === 'streaming'),
          )
        expect(pool.running).toBe(working.length)
        expect(pool.queued).toBe(
          [...created]
            .map((id) => service.get(id).turn)
            .filter((t) => t.pool === pool.pool && t.state === 'queued').length,
        )
      }
      for (const id of created) {
        const { turn } = service.get(id)
        const previous = finals.get(id)
        if (previous !== undefined) expect(turn).toEqual(previous)
        else if (isFinalTurnState(turn.state)) finals.set(id, turn)
        expect(turn.attempts).toBeLessThanOrEqual(MAX_ATTEMPTS)
        expect(shown.get(`${turn.sessionId}/${turn.messageId}`)?.state).toBe(turn.state)
      }
      for (const [id, states] of endings) expect(states, id).toHaveLength(1)
    }

    // Drain: workers that renew and complete everything; leases of the dead run out.
    for (
      let round = 0;
      round < 200 && [...created].some((id) => !isFinalTurnState(service.get(id).turn.state));
      round++
    ) {
      for (const pool of ['a', 'b']) {
        const claimed = await service.claim(pool, {
          max: 8,
          waitMs: 0,
          instanceId: 'drain',
          peerId: 'drain',
          isAborted: () => false,
        })
        for (const claim of claimed) await service.complete(claim.turn.id, { leaseId: claim.lease.id })
      }
      await vi.advanceTimersByTimeAsync(LEASE_MS)
    }
    for (const id of created) expect(endings.get(id), id).toHaveLength(1)
  } finally {
    await service.close()
  }
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  vi.setSystemTime(1_800_000_000_000)
})

afterEach(() => {
  vi.useRealTimers()
})

describe('the turn service under random histories', () => {
  it('keeps its invariants through creations, claims, renewals, failures, cancels and worker deaths', async () => {
    console.log(`turns-service property seed: ${seed}`)
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 60, maxLength: 200 }), (ops) => runCase(ops)),
      { seed, numRuns: 100 },
    )
  })
})
