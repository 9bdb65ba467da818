// The turn scheduler: which queued turn of a pool goes to the next free worker slot. Pure: no I/O,
// no timers, an injected clock. The turn service (turn-service.ts) owns storage, leases and the
// documents; this module only orders, counts and refuses. docs/agents.md "Scheduling" is the spec.

/** K of the starvation guard's share when none is given: at most 1 dispatch in 10 is a guard dispatch. */
export const DEFAULT_GUARD_SHARE = 10

/** What the scheduler knows of a turn. */
export interface ScheduledTurn {
  readonly id: string
  readonly pool: string
  /** Class 0 first; an integer in [0, classes). */
  readonly priority: number
  readonly tenant: string
  /** When it joined the queue (ms); a redelivered turn keeps its first arrival. */
  readonly arrival: number
  /** Breaks ties between equal arrivals: the creation order. */
  readonly seq: number
  /** A queued turn is expired at this time (ms); undefined: never. */
  readonly deadline?: number
}

/** The limits of one pool. */
export interface PoolLimits {
  /** Turns running (claimed or streaming) at once. */
  readonly concurrency: number
  /** Queued turns the pool holds; more are refused. */
  readonly maxQueued: number
  /** Queued turns one tenant may hold in this pool; more are refused. */
  readonly maxQueuedPerTenant: number
}

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  readonly pools: ReadonlyMap<string, PoolLimits>
  /** Priority classes (turn priorities are in [0, classes)). */
  readonly classes: number
  /**
   * A turn queued at least this long is past the starvation guard (ms; 0: no guard): it may take a
   * guard dispatch, see {@link guardShare}.
   */
  readonly starvationMs: number
  /**
   * K: at most 1 in every K dispatches of a pool is a guard dispatch (the oldest turn past the
   * guard, whatever its class); the others follow class order. Default 10; 1: every dispatch may be
   * one (the oldest starved turn always first).
   */
  readonly guardShare?: number
  readonly now: () => number
}

/** Why a turn was not queued. */
export const EnqueueRefusal = {
  UnknownPool: 'unknown-pool',
  PoolFull: 'pool-full',
  TenantFull: 'tenant-full',
  Duplicate: 'duplicate',
} as const
export type EnqueueRefusal = (typeof EnqueueRefusal)[keyof typeof EnqueueRefusal]

/** A pool's figures. */
export interface PoolStats {
  readonly queued: number
  readonly running: number
  readonly concurrency: number
  readonly queuedByPriority: readonly number[]
}

/** The scheduler of every pool of one server. */
export interface Scheduler {
  /**
   * Queues a turn; returns why not, or undefined when queued.
   *
   * @param isRestore a turn found queued in storage at start: queued whatever the limits (it was
   * accepted once; refusing it now would lose it)
   */
  enqueue(turn: ScheduledTurn, isRestore?: boolean): EnqueueRefusal | undefined
  /** Records a turn as running without queueing it (a claimed turn found in storage at start). */
  restoreRunning(turn: ScheduledTurn): EnqueueRefusal | undefined
  /**
   * Takes up to `max` queued turns of `pool` for a worker, within the pool's free slots, in
   * scheduling order; they count as running until {@link finish} or {@link requeue}.
   */
  dispatch(pool: string, max: number): ScheduledTurn[]
  /** A running turn ended (done, failed, cancelled): frees its slot. False if it was not running. */
  finish(id: string): boolean
  /** A running turn goes back to the queue with its first arrival (lost lease). False if it was not running. */
  requeue(id: string): boolean
  /** Removes a queued turn (cancel). False if it was not queued. */
  remove(id: string): boolean
  /** Removes and returns every queued turn whose deadline is ≤ now. */
  expire(): ScheduledTurn[]
  /** The earliest deadline of a queued turn, if any (for the caller's timer). */
  nextDeadline(): number | undefined
  /** `queued`, `running` or undefined. */
  stateOf(id: string): 'queued' | 'running' | undefined
  /** The turn as the scheduler holds it. */
  get(id: string): ScheduledTurn | undefined
  /**
   * 1-based dispatch order of every queued turn of `pool` if nothing else arrived, aged, ended or
   * was requeued: the pool's next dispatches simulated from its current guard counter (a guard
   * dispatch, the oldest turn past the guard, whenever the share allows one; else class order).
   *
   * @remarks O(n log n) in the pool's queue; cached until the pool's queue changes, or with
   * `maxAgeMs`, reused for that long even if it changed (a turn queued since is then missing).
   */
  positions(pool: string, maxAgeMs?: number): ReadonlyMap<string, number>
  /** Whether `pool` has free slots and queued turns. */
  hasWork(pool: string): boolean
  stats(pool: string): PoolStats | undefined
}

/** A queued turn; `isQueued` turns false when it leaves the queue (lazy deletion from the heaps). */
interface Entry {
  readonly turn: ScheduledTurn
  isQueued: boolean
  /** The {@link computePositions} run that last placed it (a run's own mark, no set to look up). */
  placedIn: number
}

/** A tenant's list during a positions simulation: its next unplaced entry and its ring slot. */
interface Cursor {
  readonly list: Entry[]
  at: number
  /** Bumped whenever the tenant leaves its ring slot: older slots of it are stale. */
  slot: number
}

/**
 * A class's ring during a positions simulation: a queue of tenants, served from `head`; a tenant
 * served goes to the end. Moving a tenant out of turn (a guard dispatch) leaves its old slot
 * stale (lazy deletion), so every step is O(1).
 */
interface SimRing {
  readonly cursors: Cursor[]
  readonly slots: number[]
  head: number
  /** Tenants with entries left. */
  live: number
}

interface ClassQueue {
  /** Each tenant's entries in (arrival, seq) order. */
  readonly tenants: Map<string, Entry[]>
  /** Tenants with queued entries, in round-robin order: the first is served next. */
  readonly ring: Map<string, true>
  size: number
}

interface PoolState {
  readonly limits: PoolLimits
  readonly classes: ClassQueue[]
  /** Every queued entry, oldest first (lazy deletion): the starvation guard's view. */
  readonly byAge: Heap<Entry>
  readonly queuedPerTenant: Map<string, number>
  queued: number
  running: number
  /**
   * Dispatches of this pool since its last guard dispatch, capped at K − 1: a guard dispatch is
   * allowed when it reaches K − 1 (it starts there, so the first starved turn goes at once).
   */
  sinceGuard: number
  /** Bumped on every queue change: invalidates {@link positionCache}. */
  version: number
  positionCache?: { version: number; until: number; computedAt: number; positions: Map<string, number> }
}

function isOlder(a: ScheduledTurn, b: ScheduledTurn): boolean {
  return a.arrival < b.arrival || (a.arrival === b.arrival && a.seq < b.seq)
}

/** Creates the scheduler. */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const { classes, starvationMs, now } = options
  const guardShare = options.guardShare ?? DEFAULT_GUARD_SHARE
  if (!Number.isInteger(guardShare) || guardShare < 1)
    throw new RangeError(`guardShare ${guardShare} is not an integer ≥ 1`)
  const pools = new Map<string, PoolState>()
  for (const [name, limits] of options.pools) {
    pools.set(name, {
      limits,
      classes: Array.from({ length: classes }, () => ({ tenants: new Map(), ring: new Map(), size: 0 })),
      byAge: createHeap<Entry>((a, b) => isOlder(a.turn, b.turn)),
      queuedPerTenant: new Map(),
      queued: 0,
      running: 0,
      sinceGuard: guardShare - 1,
      version: 0,
    })
  }
  const queued = new Map<string, Entry>()
  const running = new Map<string, ScheduledTurn>()
  const byDeadline = createHeap<Entry>((a, b) => (a.turn.deadline ?? 0) < (b.turn.deadline ?? 0))
  /** Counts {@link computePositions} runs (each marks the entries it placed with its number). */
  let positionRuns = 0

  const classOf = (pool: PoolState, turn: ScheduledTurn): ClassQueue => {
    const queue = pool.classes[turn.priority]
    if (queue === undefined) throw new RangeError(`priority ${turn.priority} outside [0, ${classes})`)
    return queue
  }

  function insert(pool: PoolState, turn: ScheduledTurn): void {
    const entry: Entry = { turn, isQueued: true, placedIn: 0 }
    const queue = classOf(pool, turn)
    let list = queue.tenants.get(turn.tenant)
    if (list === undefined) {
      list = []
      queue.tenants.set(turn.tenant, list)
    }
    // Usually the newest: appended. A redelivered turn keeps its first arrival: inserted in order.
    let at = list.length
    while (at > 0 && isOlder(turn, list[at - 1]!.turn)) at--
    list.splice(at, 0, entry)
    if (!queue.ring.has(turn.tenant)) queue.ring.set(turn.tenant, true)
    queue.size++
    pool.byAge.push(entry)
    if (turn.deadline !== undefined) byDeadline.push(entry)
    pool.queuedPerTenant.set(turn.tenant, (pool.queuedPerTenant.get(turn.tenant) ?? 0) + 1)
    pool.queued++
    pool.version++
    queued.set(turn.id, entry)
  }

  /** Takes `entry` out of its tenant's list; `isServed` moves the tenant to the ring's end. */
  function take(pool: PoolState, entry: Entry, isServed: boolean): void {
    const { turn } = entry
    const queue = classOf(pool, turn)
    const list = queue.tenants.get(turn.tenant)!
    const at = list[0] === entry ? 0 : list.indexOf(entry)
    list.splice(at, 1)
    queue.size--
    if (list.length === 0) {
      queue.tenants.delete(turn.tenant)
      queue.ring.delete(turn.tenant)
    } else if (isServed) {
      queue.ring.delete(turn.tenant)
      queue.ring.set(turn.tenant, true)
    }
    entry.isQueued = false
    const left = (pool.queuedPerTenant.get(turn.tenant) ?? 1) - 1
    if (left > 0) pool.queuedPerTenant.set(turn.tenant, left)
    else pool.queuedPerTenant.delete(turn.tenant)
    pool.queued--
    pool.version++
    queued.delete(turn.id)
  }

  function oldestQueued(pool: PoolState): Entry | undefined {
    let top = pool.byAge.peek()
    while (top !== undefined && !top.isQueued) {
      pool.byAge.pop()
      top = pool.byAge.peek()
    }
    return top
  }

  /**
   * The next entry to serve: the oldest starved one if the pool's guard share allows a guard
   * dispatch now, else the ring's first tenant of the first class. `isGuard` tells which.
   */
  function pick(pool: PoolState): { entry: Entry; isGuard: boolean } | undefined {
    if (starvationMs > 0 && pool.sinceGuard >= guardShare - 1) {
      const oldest = oldestQueued(pool)
      if (oldest !== undefined && oldest.turn.arrival <= now() - starvationMs)
        return { entry: oldest, isGuard: true }
    }
    for (const queue of pool.classes) {
      if (queue.size === 0) continue
      const tenant = queue.ring.keys().next().value as string
      return { entry: queue.tenants.get(tenant)![0]!, isGuard: false }
    }
    return undefined
  }

  /**
   * Simulates the pool's dispatches without touching its queues, from its guard counter: a guard
   * dispatch (the oldest starved turn not yet placed) whenever the share allows one and such a turn
   * is left, else class by class, round robin. A tenant's unplaced turns are always its list from
   * its cursor on (both kinds of dispatch take a list's head). O(n) steps on arrays (plus sorting
   * the starved turns): issue 17's 10,000-deep queue is placed every refresh.
   */
  function computePositions(pool: PoolState): Map<string, number> {
    const positions = new Map<string, number>()
    const run = ++positionRuns
    const threshold = starvationMs > 0 ? now() - starvationMs : Number.NEGATIVE_INFINITY
    const starved: Entry[] = []
    const cursorOf = new Map<Entry[], Cursor>()
    const rings: SimRing[] = pool.classes.map((queue) => {
      const ring: SimRing = { cursors: [], slots: [], head: 0, live: 0 }
      for (const tenant of queue.ring.keys()) {
        const list = queue.tenants.get(tenant)!
        const cursor: Cursor = { list, at: 0, slot: 0 }
        cursorOf.set(list, cursor)
        ring.cursors.push(cursor)
        ring.slots.push(0)
        ring.live++
        for (const entry of list) {
          if (entry.turn.arrival > threshold) break
          starved.push(entry)
        }
      }
      return ring
    })
    starved.sort((a, b) => a.turn.arrival - b.turn.arrival || a.turn.seq - b.turn.seq)
    /** Places the cursor's next entry; the tenant goes to its ring's end, or out when it has no more. */
    const place = (ring: SimRing, cursor: Cursor): void => {
      const entry = cursor.list[cursor.at++]!
      entry.placedIn = run
      positions.set(entry.turn.id, positions.size + 1)
      cursor.slot++
      if (cursor.at < cursor.list.length) {
        ring.cursors.push(cursor)
        ring.slots.push(cursor.slot)
      } else ring.live--
    }
    let nextStarved = 0
    let sinceGuard = pool.sinceGuard
    let first = 0
    while (positions.size < pool.queued) {
      while (nextStarved < starved.length && starved[nextStarved]!.placedIn === run) nextStarved++
      if (sinceGuard >= guardShare - 1 && nextStarved < starved.length) {
        const { turn } = starved[nextStarved]!
        place(rings[turn.priority]!, cursorOf.get(classOf(pool, turn).tenants.get(turn.tenant)!)!)
        sinceGuard = 0
        continue
      }
      while (rings[first]!.live === 0) first++
      const ring = rings[first]!
      while (ring.slots[ring.head] !== ring.cursors[ring.head]!.slot) ring.head++
      place(ring, ring.cursors[ring.head++]!)
      sinceGuard = Math.min(sinceGuard + 1, guardShare - 1)
    }
    return positions
  }

  const poolOf = (name: string): PoolState | undefined => pools.get(name)

  return {
    enqueue(turn, isRestore = false) {
      const pool = poolOf(turn.pool)
      if (pool === undefined) return EnqueueRefusal.UnknownPool
      if (queued.has(turn.id) || running.has(turn.id)) return EnqueueRefusal.Duplicate
      if (!isRestore && pool.queued >= pool.limits.maxQueued) return EnqueueRefusal.PoolFull
      if (!isRestore && (pool.queuedPerTenant.get(turn.tenant) ?? 0) >= pool.limits.maxQueuedPerTenant)
        return EnqueueRefusal.TenantFull
      insert(pool, turn)
      return undefined
    },

    restoreRunning(turn) {
      const pool = poolOf(turn.pool)
      if (pool === undefined) return EnqueueRefusal.UnknownPool
      if (queued.has(turn.id) || running.has(turn.id)) return EnqueueRefusal.Duplicate
      running.set(turn.id, turn)
      pool.running++
      return undefined
    },

    dispatch(name, max) {
      const pool = poolOf(name)
      if (pool === undefined) return []
      const taken: ScheduledTurn[] = []
      while (taken.length < max && pool.running < pool.limits.concurrency) {
        const picked = pick(pool)
        if (picked === undefined) break
        const { entry, isGuard } = picked
        pool.sinceGuard = isGuard ? 0 : Math.min(pool.sinceGuard + 1, guardShare - 1)
        take(pool, entry, true)
        running.set(entry.turn.id, entry.turn)
        pool.running++
        taken.push(entry.turn)
      }
      return taken
    },

    finish(id) {
      const turn = running.get(id)
      if (turn === undefined) return false
      running.delete(id)
      poolOf(turn.pool)!.running--
      return true
    },

    requeue(id) {
      const turn = running.get(id)
      if (turn === undefined) return false
      running.delete(id)
      const pool = poolOf(turn.pool)!
      pool.running--
      // Limits do not apply: the turn was accepted once already.
      insert(pool, turn)
      return true
    },

    remove(id) {
      const entry = queued.get(id)
      if (entry === undefined) return false
      take(poolOf(entry.turn.pool)!, entry, false)
      return true
    },

    expire() {
      const expired: ScheduledTurn[] = []
      const at = now()
      for (;;) {
        const top = byDeadline.peek()
        if (top === undefined) break
        if (!top.isQueued) {
          byDeadline.pop()
          continue
        }
        if ((top.turn.deadline ?? Number.POSITIVE_INFINITY) > at) break
        byDeadline.pop()
        take(poolOf(top.turn.pool)!, top, false)
        expired.push(top.turn)
      }
      return expired
    },

    nextDeadline() {
      for (;;) {
        const top = byDeadline.peek()
        if (top === undefined) return undefined
        if (top.isQueued) return top.turn.deadline
        byDeadline.pop()
      }
    },

    stateOf(id) {
      if (queued.has(id)) return 'queued'
      if (running.has(id)) return 'running'
      return undefined
    },

    get(id) {
      return queued.get(id)?.turn ?? running.get(id)
    },

    positions(name, maxAgeMs = 0) {
      const pool = poolOf(name)
      if (pool === undefined) return new Map()
      const at = now()
      const cached = pool.positionCache
      if (cached !== undefined && at < cached.until) {
        if (cached.version === pool.version || at - cached.computedAt < maxAgeMs) return cached.positions
      }
      const positions = computePositions(pool)
      // The order changes without a queue change only when a turn starts to starve.
      const oldestFresh = [...pool.classes]
        .flatMap((queue) => [...queue.tenants.values()])
        .reduce<number>((min, list) => {
          const fresh = list.find((entry) => entry.turn.arrival > at - starvationMs)
          return fresh === undefined ? min : Math.min(min, fresh.turn.arrival)
        }, Number.POSITIVE_INFINITY)
      const until = starvationMs > 0 ? oldestFresh + starvationMs : Number.POSITIVE_INFINITY
      pool.positionCache = { version: pool.version, until, computedAt: at, positions }
      return positions
    },

    hasWork(name) {
      const pool = poolOf(name)
      return pool !== undefined && pool.queued > 0 && pool.running < pool.limits.concurrency
    },

    stats(name) {
      const pool = poolOf(name)
      if (pool === undefined) return undefined
      return {
        queued: pool.queued,
        running: pool.running,
        concurrency: pool.limits.concurrency,
        queuedByPriority: pool.classes.map((queue) => queue.size),
      }
    },
  }
}

/** A binary min-heap under `isBefore`. */
interface Heap<T> {
  push(value: T): void
  peek(): T | undefined
  pop(): T | undefined
  readonly size: number
}

function createHeap<T>(isBefore: (a: T, b: T) => boolean): Heap<T> {
  const items: T[] = []
  return {
    push(value) {
      items.push(value)
      let i = items.length - 1
      while (i > 0) {
        const parent = (i - 1) >> 1
        if (!isBefore(items[i]!, items[parent]!)) break
        ;[items[i], items[parent]] = [items[parent]!, items[i]!]
        i = parent
      }
    },
    peek: () => items[0],
    pop() {
      const top = items[0]
      const last = items.pop()
      if (items.length > 0 && last !== undefined) {
        items[0] = last
        let i = 0
        for (;;) {
          const left = 2 * i + 1
          const right = left + 1
          let smallest = i
          if (left < items.length && isBefore(items[left]!, items[smallest]!)) smallest = left
          if (right < items.length && isBefore(items[right]!, items[smallest]!)) smallest = right
          if (smallest === i) break
          ;[items[i], items[smallest]] = [items[smallest]!, items[i]!]
          i = smallest
        }
      }
      return top
    },
    get size() {
      return items.length
    },
  }
}
