// Seeded property: random arrivals, claims, completions, worker deaths (requeues), cancels, deadlines
// and clock jumps, run against the scheduler and against a plain model of its rules (arrays scanned
// from the start). They must agree on every answer, and the invariants hold on their own: never
// over concurrency; class order and round-robin fairness between tenants kept except by guard
// dispatches (the oldest turn past the starvation guard), which are at most 1 in every K dispatches
// of a pool; a turn past the guard waits fewer than K × (1 + turns older than it served meanwhile)
// dispatches of its pool; every turn ends exactly once. Replay a failure with SEED=<printed seed>.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  createScheduler,
  type EnqueueRefusal,
  type PoolLimits,
  type ScheduledTurn,
} from '../../server/turns/scheduler.js'

const CLASSES = 3
const STARVATION_MS = 30_000
/** K: at most 1 in K dispatches of a pool is a guard dispatch (small, so the runs reach it). */
const GUARD_SHARE = 3
const POOLS = new Map<string, PoolLimits>([
  ['a', { concurrency: 2, maxQueued: 12, maxQueuedPerTenant: 5 }],
  ['b', { concurrency: 3, maxQueued: 40, maxQueuedPerTenant: 40 }],
])

type Op =
  | { kind: 'arrive'; pool: string; priority: number; tenant: string; deadlineIn: number | undefined }
  | { kind: 'advance'; ms: number }
  | { kind: 'dispatch'; pool: string; max: number }
  | { kind: 'finish'; pick: number }
  | { kind: 'die'; pick: number }
  | { kind: 'cancel'; pick: number }
  | { kind: 'expire' }
  | { kind: 'positions'; pool: string }

const pool = fc.constantFrom('a', 'b')
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('arrive' as const),
      pool,
      priority: fc.integer({ min: 0, max: CLASSES - 1 }),
      tenant: fc.constantFrom('t0', 't1', 't2', 't3'),
      deadlineIn: fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: undefined }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20_000 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('dispatch' as const),
      pool,
      max: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('finish' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('die' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('positions' as const), pool }) },
)

/** The rules of docs/agents.md "Scheduling", written the plainest way: arrays, scanned every time. */
function createModel(now: () => number) {
  const queued: ScheduledTurn[] = []
  const running: ScheduledTurn[] = []
  /** Round-robin order of tenants with queued turns, per pool and class. */
  const rings = new Map<string, string[]>()
  const ringOf = (pool: string, priority: number): string[] => {
    const key = `${pool}/${priority}`
    let ring = rings.get(key)
    if (ring === undefined) {
      ring = []
      rings.set(key, ring)
    }
    return ring
  }
  const older = (a: ScheduledTurn, b: ScheduledTurn) => a.arrival - b.arrival || a.seq - b.seq
  /** Per pool: dispatches since its last guard dispatch, capped at K − 1 (a guard is allowed there). */
  const sinceGuard = new Map<string, number>()
  const sinceGuardOf = (pool: string) => sinceGuard.get(pool) ?? GUARD_SHARE - 1
  const hasQueued = (pool: string, priority: number, tenant: string) =>
    queued.some((t) => t.pool === pool && t.priority === priority && t.tenant === tenant)
  const add = (turn: ScheduledTurn) => {
    const ring = ringOf(turn.pool, turn.priority)
    if (!hasQueued(turn.pool, turn.priority, turn.tenant)) ring.push(turn.tenant)
    queued.push(turn)
  }
  /** A served tenant goes to the end of its class's ring. */
  const serve = (turn: ScheduledTurn) => {
    queued.splice(queued.indexOf(turn), 1)
    const ring = ringOf(turn.pool, turn.priority)
    ring.splice(ring.indexOf(turn.tenant), 1)
    if (hasQueued(turn.pool, turn.priority, turn.tenant)) ring.push(turn.tenant)
  }
  /** A cancelled or expired turn leaves its tenant where it was in the ring. */
  const removeKeepingOrder = (turn: ScheduledTurn) => {
    queued.splice(queued.indexOf(turn), 1)
    if (!hasQueued(turn.pool, turn.priority, turn.tenant)) {
      const ring = ringOf(turn.pool, turn.priority)
      ring.splice(ring.indexOf(turn.tenant), 1)
    }
  }
  /** The next turn and the pool's guard counter after it. */
  const next = (
    pool: string,
    at: number,
    pending: ScheduledTurn[],
    since: number,
  ): { turn: ScheduledTurn; since: number } | undefined => {
    const inPool = pending.filter((t) => t.pool === pool).sort(older)
    const oldest = inPool[0]
    if (since >= GUARD_SHARE - 1 && oldest !== undefined && oldest.arrival <= at - STARVATION_MS)
      return { turn: oldest, since: 0 }
    for (let priority = 0; priority < CLASSES; priority++) {
      const tenant = ringOf(pool, priority)[0]
      if (tenant === undefined) continue
      const turn = inPool.find((t) => t.priority === priority && t.tenant === tenant)!
      return { turn, since: Math.min(since + 1, GUARD_SHARE - 1) }
    }
    return undefined
  }
  return {
    queued,
    running,
    enqueue(turn: ScheduledTurn): EnqueueRefusal | undefined {
      const limits = POOLS.get(turn.pool)!
      const inPool = queued.filter((t) => t.pool === turn.pool)
      if (inPool.length >= limits.maxQueued) return 'pool-full'
      if (inPool.filter((t) => t.tenant === turn.tenant).length >= limits.maxQueuedPerTenant)
        return 'tenant-full'
      add(turn)
      return undefined
    },
    dispatch(pool: string, max: number): ScheduledTurn[] {
      const taken: ScheduledTurn[] = []
      const limits = POOLS.get(pool)!
      while (taken.length < max && running.filter((t) => t.pool === pool).length < limits.concurrency) {
        const picked = next(pool, now(), queued, sinceGuardOf(pool))
        if (picked === undefined) break
        const { turn } = picked
        sinceGuard.set(pool, picked.since)
        serve(turn)
        running.push(turn)
        taken.push(turn)
      }
      return taken
    },
    finish(turn: ScheduledTurn) {
      running.splice(running.indexOf(turn), 1)
    },
    requeue(turn: ScheduledTurn) {
      running.splice(running.indexOf(turn), 1)
      add(turn)
    },
    remove(turn: ScheduledTurn) {
      removeKeepingOrder(turn)
    },
    expire(): ScheduledTurn[] {
      const due = queued.filter((t) => t.deadline !== undefined && t.deadline <= now())
      for (const turn of due) removeKeepingOrder(turn)
      return due
    },
    /** Dispatch order if nothing else happened: simulated on copies. */
    positions(pool: string): Map<string, number> {
      const saved = new Map([...rings].map(([key, ring]) => [key, [...ring]]))
      const pending = [...queued]
      const order = new Map<string, number>()
      let since = sinceGuardOf(pool)
      for (;;) {
        const picked = next(pool, now(), pending, since)
        if (picked === undefined) break
        const { turn } = picked
        since = picked.since
        order.set(turn.id, order.size + 1)
        pending.splice(pending.indexOf(turn), 1)
        const ring = ringOf(turn.pool, turn.priority)
        ring.splice(ring.indexOf(turn.tenant), 1)
        if (pending.some((t) => t.pool === pool && t.priority === turn.priority && t.tenant === turn.tenant))
          ring.push(turn.tenant)
      }
      rings.clear()
      for (const [key, ring] of saved) rings.set(key, ring)
      return order
    },
  }
}

function runCase(ops: readonly Op[]): void {
  let time = 1_000_000
  const now = () => time
  const scheduler = createScheduler({
    pools: POOLS,
    classes: CLASSES,
    starvationMs: STARVATION_MS,
    guardShare: GUARD_SHARE,
    now,
  })
  const model = createModel(now)
  const ended = new Map<string, number>()
  const accepted = new Set<string>()
  const end = (id: string) => ended.set(id, (ended.get(id) ?? 0) + 1)
  let seq = 0
  // Fairness bookkeeping, independent of the model: a logical clock ticking on every change.
  let tick = 0
  const lastServed = new Map<string, number>()
  const backlogSince = new Map<string, number>()
  const classKey = (t: ScheduledTurn, tenant = t.tenant) => `${t.pool}/${t.priority}/${tenant}`
  // Guard share and wait bound, independent of the model: per pool, its dispatch count and the
  // count at its last out-of-order dispatch; per turn past the guard, the dispatches of its pool
  // since it was first seen past it (d) and how many of them served an older turn (o).
  const dispatches = new Map<string, number>()
  const lastOutOfOrder = new Map<string, number>()
  const starvedWait = new Map<string, { d: number; o: number }>()
  const isOlder = (a: ScheduledTurn, b: ScheduledTurn) =>
    a.arrival < b.arrival || (a.arrival === b.arrival && a.seq < b.seq)
  const noteBacklog = () => {
    tick++
    const present = new Set(model.queued.map((t) => classKey(t)))
    for (const key of [...backlogSince.keys()]) if (!present.has(key)) backlogSince.delete(key)
    for (const key of present) if (!backlogSince.has(key)) backlogSince.set(key, tick)
  }

  for (const step of ops) {
    switch (step.kind) {
      case 'arrive': {
        seq++
        const turn: ScheduledTurn = {
          id: `turn-${seq}`,
          pool: step.pool,
          priority: step.priority,
          tenant: step.tenant,
          arrival: time,
          seq,
          ...(step.deadlineIn === undefined ? {} : { deadline: time + step.deadlineIn }),
        }
        const refusal = scheduler.enqueue(turn)
        expect(refusal).toBe(model.enqueue(turn))
        if (refusal === undefined) {
          accepted.add(turn.id)
          expect(scheduler.enqueue(turn)).toBe('duplicate')
        }
        noteBacklog()
        break
      }
      case 'advance':
        time += step.ms
        break
      case 'dispatch': {
        const before = [...model.queued]
        const expected = model.dispatch(step.pool, step.max)
        // Replay the model's picks one by one to check the invariants at each pick.
        const pending = [...before]
        for (const turn of expected) {
          const inPool = pending.filter((t) => t.pool === turn.pool)
          const count = (dispatches.get(turn.pool) ?? 0) + 1
          dispatches.set(turn.pool, count)
          for (const t of inPool)
            if (t.arrival <= time - STARVATION_MS && !starvedWait.has(t.id))
              starvedWait.set(t.id, { d: 0, o: 0 })
          // Class order: nothing queued in a more urgent class. Round robin: every tenant of this
          // class backlogged since this tenant's previous service has been served since.
          const previous = lastServed.get(classKey(turn)) ?? 0
          const isInOrder =
            !inPool.some((t) => t.priority < turn.priority) &&
            [...new Set(inPool.filter((t) => t.priority === turn.priority).map((t) => t.tenant))].every(
              (other) => {
                const since = backlogSince.get(classKey(turn, other))
                return (
                  other === turn.tenant ||
                  since === undefined ||
                  since >= previous ||
                  (lastServed.get(classKey(turn, other)) ?? 0) > previous
                )
              },
            )
          if (!isInOrder) {
            // Only a guard dispatch leaves the order: the oldest queued turn, past the guard, at
            // most 1 in every K dispatches of the pool.
            const oldest = [...inPool].sort((a, b) => a.arrival - b.arrival || a.seq - b.seq)[0]!
            expect(turn.id).toBe(oldest.id)
            expect(turn.arrival).toBeLessThanOrEqual(time - STARVATION_MS)
            const last = lastOutOfOrder.get(turn.pool)
            if (last !== undefined) expect(count - last).toBeGreaterThanOrEqual(GUARD_SHARE)
            lastOutOfOrder.set(turn.pool, count)
          }
          // Bounded wait: a turn past the guard still queued after d dispatches of its pool has
          // seen at least ⌊d / K⌋ older turns served (each guard dispatch serves one).
          starvedWait.delete(turn.id)
          for (const [id, wait] of starvedWait) {
            const waiting = inPool.find((t) => t.id === id)
            if (waiting === undefined) continue
            wait.d++
            if (isOlder(turn, waiting)) wait.o++
            expect(wait.d).toBeLessThan(GUARD_SHARE * (wait.o + 1))
          }
          pending.splice(pending.indexOf(turn), 1)
          tick++
          lastServed.set(classKey(turn), tick)
        }
        const actual = scheduler.dispatch(step.pool, step.max)
        expect(actual.map((t) => t.id)).toEqual(expected.map((t) => t.id))
        noteBacklog()
        break
      }
      case 'finish':
      case 'die': {
        if (model.running.length === 0) break
        const turn = model.running[step.pick % model.running.length]!
        if (step.kind === 'finish') {
          model.finish(turn)
          expect(scheduler.finish(turn.id)).toBe(true)
          expect(scheduler.finish(turn.id)).toBe(false)
          end(turn.id)
        } else {
          model.requeue(turn)
          expect(scheduler.requeue(turn.id)).toBe(true)
        }
        noteBacklog()
        break
      }
      case 'cancel': {
        if (model.queued.length === 0) break
        const turn = model.queued[step.pick % model.queued.length]!
        model.remove(turn)
        expect(scheduler.remove(turn.id)).toBe(true)
        expect(scheduler.remove(turn.id)).toBe(false)
        end(turn.id)
        noteBacklog()
        break
      }
      case 'expire': {
        const expected = model.expire().map((t) => t.id)
        const actual = scheduler.expire().map((t) => t.id)
        expect(new Set(actual)).toEqual(new Set(expected))
        expect(actual.length).toBe(expected.length)
        for (const id of actual) end(id)
        noteBacklog()
        break
      }
      case 'positions':
        expect(new Map(scheduler.positions(step.pool))).toEqual(model.positions(step.pool))
        break
    }
    for (const [name, limits] of POOLS) {
      const stats = scheduler.stats(name)!
      expect(stats.running).toBeLessThanOrEqual(limits.concurrency)
      expect(stats.running).toBe(model.running.filter((t) => t.pool === name).length)
      expect(stats.queued).toBe(model.queued.filter((t) => t.pool === name).length)
    }
  }

  // Drain: every accepted turn ends exactly once (done, cancelled or expired), none twice.
  time += 10 * STARVATION_MS
  model.expire()
  for (const id of scheduler.expire().map((t) => t.id)) end(id)
  for (const name of POOLS.keys()) {
    for (;;) {
      for (const turn of model.running.filter((t) => t.pool === name)) {
        model.finish(turn)
        expect(scheduler.finish(turn.id)).toBe(true)
        end(turn.id)
      }
      const taken = scheduler.dispatch(name, 64)
      expect(taken.map((t) => t.id)).toEqual(model.dispatch(name, 64).map((t) => t.id))
      if (taken.length === 0) break
    }
  }
  expect([...ended.entries()].filter(([, count]) => count !== 1)).toEqual([])
  expect(new Set(ended.keys())).toEqual(accepted)
}

describe('the turn scheduler', () => {
  it('agrees with the plain model and keeps its invariants over random arrivals, claims and worker deaths', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`turns-scheduler property seed: ${seed}`)
    fc.assert(
      fc.property(fc.array(op, { minLength: 30, maxLength: 150 }), (ops) => runCase(ops)),
      { seed, numRuns: 300 },
    )
  })

  it('serves a starved turn of the last class before a fresh one of the first', () => {
    let time = 0
    const scheduler = createScheduler({
      pools: POOLS,
      classes: CLASSES,
      starvationMs: STARVATION_MS,
      now: () => time,
    })
    scheduler.enqueue({ id: 'old', pool: 'b', priority: 2, tenant: 't0', arrival: 0, seq: 1 })
    time = STARVATION_MS
    scheduler.enqueue({ id: 'new', pool: 'b', priority: 0, tenant: 't1', arrival: time, seq: 2 })
    expect(scheduler.dispatch('b', 2).map((t) => t.id)).toEqual(['old', 'new'])
  })

  it('keeps class order under a backlog longer than the guard: 1 dispatch in K goes to the oldest (issue 17 fleet bench)', () => {
    let time = 0
    const scheduler = createScheduler({
      pools: new Map([['big', { concurrency: 100, maxQueued: 100, maxQueuedPerTenant: 100 }]]),
      classes: CLASSES,
      starvationMs: STARVATION_MS,
      guardShare: 10,
      now: () => time,
    })
    // The batch class queued first, then the interactive class: after the guard, every turn is past it.
    for (let i = 0; i < 20; i++)
      scheduler.enqueue({ id: `batch${i}`, pool: 'big', priority: 2, tenant: 't0', arrival: i, seq: i })
    for (let i = 0; i < 20; i++)
      scheduler.enqueue({
        id: `chat${i}`,
        pool: 'big',
        priority: 0,
        tenant: 't1',
        arrival: 100 + i,
        seq: 100 + i,
      })
    time = 10 * STARVATION_MS
    const positions = scheduler.positions('big')
    const order = scheduler.dispatch('big', 20).map((t) => t.id)
    // The guard's first dispatch goes at once, then 9 in class order, then the guard again.
    expect(order).toEqual([
      'batch0',
      ...Array.from({ length: 9 }, (_, i) => `chat${i}`),
      'batch1',
      ...Array.from({ length: 9 }, (_, i) => `chat${i + 9}`),
    ])
    expect(order.map((id) => positions.get(id))).toEqual(order.map((_, i) => i + 1))
    // Positions continue from the pool's guard counter: 9 class dispatches since the last guard one.
    const next = scheduler.positions('big')
    expect(next.get('batch2')).toBe(1)
    expect(next.get('chat18')).toBe(2)
  })

  it('refuses a guard share that is not an integer of at least 1', () => {
    for (const guardShare of [0, -1, 2.5])
      expect(() =>
        createScheduler({
          pools: POOLS,
          classes: CLASSES,
          starvationMs: STARVATION_MS,
          guardShare,
          now: () => 0,
        }),
      ).toThrow(RangeError)
  })

  it('refuses a turn beyond the pool limit and beyond the tenant limit', () => {
    const scheduler = createScheduler({ pools: POOLS, classes: CLASSES, starvationMs: 0, now: () => 0 })
    for (let i = 0; i < 5; i++)
      expect(
        scheduler.enqueue({ id: `x${i}`, pool: 'a', priority: 1, tenant: 't0', arrival: 0, seq: i }),
      ).toBe(undefined)
    expect(scheduler.enqueue({ id: 'x5', pool: 'a', priority: 1, tenant: 't0', arrival: 0, seq: 5 })).toBe(
      'tenant-full',
    )
    for (let i = 6; i < 13; i++)
      scheduler.enqueue({ id: `x${i}`, pool: 'a', priority: 1, tenant: `t${i}`, arrival: 0, seq: i })
    expect(scheduler.enqueue({ id: 'x13', pool: 'a', priority: 1, tenant: 'tz', arrival: 0, seq: 13 })).toBe(
      'pool-full',
    )
    expect(
      scheduler.enqueue({ id: 'x14', pool: 'nope', priority: 1, tenant: 'tz', arrival: 0, seq: 14 }),
    ).toBe('unknown-pool')
  })
})
