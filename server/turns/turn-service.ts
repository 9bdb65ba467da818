// The turn service: turns created by devices, claimed by pool workers under leases, renewed,
// completed, failed, cancelled, expired; durable in the server's database (turn-store.ts), ordered
// by the pure scheduler (scheduler.ts), shown to devices in their sessions (turn-documents.ts).
// Owns the turn records, leases and their timers; HTTP lives in http/turn-routes.ts.

import { randomUUID } from 'node:crypto'
import type { Author } from '../../shared/conversation/index.js'
import { ColloquyError } from '../../shared/errors.js'
import type {
  ClaimedTurn,
  CompleteRequest,
  CreateTurnRequest,
  CreateTurnResponse,
  FailRequest,
  PoolResponse,
  RenewRequest,
  RenewResponse,
  TurnResponse,
} from '../../shared/turns/api.js'
import type { TurnEntry } from '../../shared/turns/document.js'
import {
  DEFAULT_PRIORITY,
  DEFAULT_TENANT,
  isFinalTurnState,
  type Lease,
  PRIORITY_CLASSES,
  type Turn,
  TurnReason,
  type TurnState,
  turnIdOf,
} from '../../shared/turns/turn.js'
import type { Logger } from '../observability/log.js'
import { createScheduler, type PoolLimits, type ScheduledTurn, type Scheduler } from './scheduler.js'
import type { TurnDocuments } from './turn-documents.js'
import type { StoredTurn, TurnStore } from './turn-store.js'

/** One pool the server serves. */
export interface TurnPoolConfig extends PoolLimits {
  readonly name: string
}

/** What the metrics learn from the service (all optional). */
export interface TurnObserver {
  created?(turn: StoredTurn): void
  refused?(pool: string, reason: string): void
  /** A first claim: `waitMs` from creation to claim. */
  firstClaimed?(turn: StoredTurn, waitMs: number): void
  /** A final state; `runMs` from the last claim when the turn ran. */
  ended?(turn: StoredTurn, runMs: number | undefined): void
  leaseExpired?(turn: StoredTurn): void
}

/** Options of {@link openTurnService}. */
export interface TurnServiceOptions {
  readonly pools: readonly TurnPoolConfig[]
  readonly store: TurnStore
  readonly logger: Logger
  /** A lease's length (ms); workers renew every third of it. */
  readonly leaseMs: number
  /** Claims a turn gets before a lost lease fails it for good. */
  readonly maxAttempts: number
  /** A turn queued this long is past the starvation guard (ms; 0: no guard). */
  readonly starvationMs: number
  /** At most 1 in this many dispatches of a pool goes to the oldest turn past the guard (default 10). */
  readonly starvationShare?: number
  /** How often queue positions are rewritten into the documents (ms; 0: never). */
  readonly positionRefreshMs: number
  /** Final turns are deleted this long after they ended (ms; 0: kept). */
  readonly retentionMs: number
  /** Queued positions rewritten per refresh at most, nearest the front first (default 250). */
  readonly maxPositionWritesPerRefresh?: number
  readonly documents?: TurnDocuments
  readonly observer?: TurnObserver
  readonly now?: () => number
}

/** Who calls a worker route: the token's peer id. */
export interface ClaimOptions {
  readonly max: number
  readonly waitMs: number
  readonly instanceId: string
  readonly name?: string
  readonly peerId: string
  /** True once the worker went away: a long poll then claims nothing for it. */
  readonly isAborted: () => boolean
}

/**
 * The turns API as the HTTP routes use it: the service of a single node ({@link TurnService}), or
 * in a cluster the router that sends each call to the node scheduling the turn's pool
 * (server/cluster/turn-cluster.ts), where reads may wait on the network.
 */
export interface TurnApi {
  hasPool(pool: string): boolean
  create(request: CreateTurnRequest): Promise<CreateTurnResponse>
  /** The turn and its queue position; throws (or rejects with) `not-found`. */
  get(turnId: string): TurnResponse | Promise<TurnResponse>
  claim(pool: string, options: ClaimOptions): Promise<ClaimedTurn[]>
  renew(turnId: string, request: RenewRequest): Promise<RenewResponse>
  complete(turnId: string, request: CompleteRequest): Promise<TurnResponse>
  fail(turnId: string, request: FailRequest): Promise<TurnResponse>
  cancel(turnId: string, by: Author, reasonText?: string): Promise<TurnResponse>
  pool(pool: string): PoolResponse | Promise<PoolResponse>
  /** Ends every turn of a deleted session that has not ended (see {@link TurnService.endSession}). */
  endSession(sessionId: string): Promise<void>
  /** The figures of the pools this process schedules (metrics). */
  pools(): PoolResponse[]
  close(): Promise<void>
}

/** The turn service of one server: the turns API, answering reads at once. */
export interface TurnService extends TurnApi {
  /** The turn and its queue position; throws `not-found`. */
  get(turnId: string): TurnResponse
  pool(pool: string): PoolResponse
  /**
   * Ends every turn of a deleted session that has not ended (`cancelled`, reason
   * `session-deleted`): no worker is handed it (a worker would create the session again by opening
   * it), and a running one's worker learns it on its next renew.
   */
  endSession(sessionId: string): Promise<void>
  /** Every pool's figures (metrics). */
  pools(): PoolResponse[]
  /** Stops timers and long polls, then waits until every change is durable. */
  close(): Promise<void>
}

interface ClaimWaiter {
  readonly options: ClaimOptions
  /** When its long poll ends (service clock). */
  readonly until: number
  readonly resolve: (turns: ClaimedTurn[]) => void
  timer: NodeJS.Timeout | undefined
}

/** Longest claim long-poll (ms). */
export const MAX_CLAIM_WAIT_MS = 30_000
/** Most turns one claim takes. */
export const MAX_CLAIM_TURNS = 64
/** Claims waiting at once per pool; more are refused (429) rather than held. */
export const MAX_WAITING_CLAIMS = 1_000
/** Longest deadline accepted, from now (ms): 7 days. */
const MAX_DEADLINE_MS = 7 * 24 * 3_600_000
/** How stale a position answered by the API may be (ms). */
const POSITION_MAX_AGE_MS = 1_000
/** Turns that ended this recently are shown again in their sessions at start (ms). */
const RESHOW_ENDED_MS = 5 * 60_000
/** How often final turns past their retention are deleted (ms). */
const RETENTION_SWEEP_MS = 60_000

/**
 * Opens the service: loads every stored turn (queued ones back in their queues, claimed ones
 * running until their lease expires, final ones kept for idempotent creation) and starts its timers.
 */
export async function openTurnService(options: TurnServiceOptions): Promise<TurnService> {
  const { store, logger, leaseMs, maxAttempts, documents, observer } = options
  const now = options.now ?? Date.now
  const maxPositionWrites = options.maxPositionWritesPerRefresh ?? 250
  const poolNames = new Set(options.pools.map((pool) => pool.name))
  const scheduler: Scheduler = createScheduler({
    pools: new Map(options.pools.map((pool) => [pool.name, pool])),
    classes: PRIORITY_CLASSES,
    starvationMs: options.starvationMs,
    ...(options.starvationShare === undefined ? {} : { guardShare: options.starvationShare }),
    now,
  })
  const turns = new Map<string, StoredTurn>()
  const leaseTimers = new Map<string, NodeJS.Timeout>()
  const waiters = new Map<string, ClaimWaiter[]>()
  /** The position last written into each queued turn's document entry. */
  const writtenPositions = new Map<string, number>()
  /** The queued turns of each session: the refresh looks up the watched sessions' only. */
  const queuedBySession = new Map<string, Set<string>>()
  const indexQueued = (turn: StoredTurn): void => {
    let ids = queuedBySession.get(turn.sessionId)
    if (turn.state === 'queued') {
      if (ids === undefined) {
        ids = new Set()
        queuedBySession.set(turn.sessionId, ids)
      }
      ids.add(turn.id)
    } else if (ids?.delete(turn.id) === true && ids.size === 0) {
      queuedBySession.delete(turn.sessionId)
    }
  }
  let deadlineTimer: { at: number; timer: NodeJS.Timeout } | undefined
  let isClosed = false
  let nextSeq = 1

  const scheduled = (turn: StoredTurn): ScheduledTurn => ({
    id: turn.id,
    pool: turn.pool,
    priority: turn.priority,
    tenant: turn.tenant,
    arrival: turn.createdAt,
    seq: turn.seq,
    ...(turn.deadline === undefined ? {} : { deadline: turn.deadline }),
  })

  function entryOf(turn: StoredTurn, position?: number): TurnEntry {
    return {
      turnId: turn.id,
      pool: turn.pool,
      state: turn.state,
      attempts: turn.attempts,
      updatedAt: turn.updatedAt,
      ...(position === undefined ? {} : { position }),
      ...(turn.agent === undefined ? {} : { agent: turn.agent }),
      ...(turn.reason === undefined ? {} : { reason: turn.reason }),
      ...(turn.reasonText === undefined ? {} : { reasonText: turn.reasonText }),
      ...(turn.replyId === undefined ? {} : { replyId: turn.replyId }),
    }
  }

  /** The save of each turn not yet durable (a second create of it answers once it is). */
  const saving = new Map<string, Promise<void>>()

  /** Replaces the record, shows it to devices and resolves once it is durable. */
  function commit(turn: StoredTurn, position?: number): Promise<void> {
    turns.set(turn.id, turn)
    indexQueued(turn)
    if (turn.state === 'queued' && position !== undefined) writtenPositions.set(turn.id, position)
    else if (turn.state !== 'queued') writtenPositions.delete(turn.id)
    documents?.write(turn.sessionId, turn.messageId, entryOf(turn, position))
    const saved = store.save(turn)
    saving.set(turn.id, saved)
    const forget = (): void => {
      if (saving.get(turn.id) === saved) saving.delete(turn.id)
    }
    saved.then(forget, forget)
    return saved
  }

  /**
   * A queued turn's position from an order at most {@link POSITION_MAX_AGE_MS} old (undefined for
   * a turn queued since): recomputing the order on every create of a burst would cost O(n²).
   */
  function positionOf(turn: StoredTurn): number | undefined {
    if (turn.state !== 'queued') return undefined
    return scheduler.positions(turn.pool, POSITION_MAX_AGE_MS).get(turn.id)
  }

  function requireTurn(turnId: string): StoredTurn {
    const turn = turns.get(turnId)
    if (turn === undefined) throw new ColloquyError('not-found', 'no such turn')
    return turn
  }

  // ---- Leases ----

  function newLease(at: number): Lease {
    return {
      // node's randomUUID draws from a cached entropy pool: one syscall per 128 ids, not one per id.
      id: randomUUID(),
      expiresAt: at + leaseMs,
      renewIntervalMs: Math.max(1, Math.floor(leaseMs / 3)),
      ttlMs: leaseMs,
    }
  }

  function armLease(turn: StoredTurn): void {
    clearLease(turn.id)
    if (turn.lease === undefined || isClosed) return
    const timer = setTimeout(() => onLeaseTimer(turn.id), Math.max(0, turn.lease.expiresAt - now()))
    timer.unref()
    leaseTimers.set(turn.id, timer)
  }

  function clearLease(turnId: string): void {
    const timer = leaseTimers.get(turnId)
    if (timer !== undefined) clearTimeout(timer)
    leaseTimers.delete(turnId)
  }

  function onLeaseTimer(turnId: string): void {
    leaseTimers.delete(turnId)
    const turn = turns.get(turnId)
    if (turn === undefined || turn.lease === undefined || isFinalTurnState(turn.state)) return
    if (turn.lease.expiresAt > now()) {
      armLease(turn)
      return
    }
    observer?.leaseExpired?.(turn)
    const at = now()
    const { lease: _lease, ...rest } = turn
    if (turn.isCancelRequested === true) {
      void end(rest, 'cancelled', TurnReason.CancelledByDevice, 'cancelled while its worker was gone')
    } else if (turn.attempts >= maxAttempts) {
      void end(
        rest,
        'failed',
        TurnReason.LeaseLostTooOften,
        `no worker finished it in ${turn.attempts} attempts (lease expired)`,
      )
    } else {
      logger.info({ turn: turn.id, attempts: turn.attempts }, 'turn lease expired: queued again')
      scheduler.requeue(turn.id)
      scheduleDeadline()
      const requeued: StoredTurn = { ...rest, state: 'queued', updatedAt: at }
      // Kept in memory either way: the turn runs again; only a restart before a later save loses it.
      void commit(requeued, positionOf(requeued)).catch((error: unknown) => {
        logger.error({ err: error, turn: turn.id }, 'requeued turn not stored')
      })
      wake(turn.pool)
    }
  }

  /** Moves a turn to a final state, frees its slot, stops its timers; resolves once durable. */
  function end(turn: StoredTurn, state: TurnState, reason?: string, reasonText?: string): Promise<void> {
    const at = now()
    clearLease(turn.id)
    const wasRunning = scheduler.stateOf(turn.id) === 'running'
    if (wasRunning) scheduler.finish(turn.id)
    else scheduler.remove(turn.id)
    const { lease: _lease, isCancelRequested: _cancel, ...rest } = turn
    const ended: StoredTurn = {
      ...rest,
      state,
      updatedAt: at,
      endedAt: at,
      ...(reason === undefined ? {} : { reason }),
      ...(reasonText === undefined ? {} : { reasonText }),
    }
    observer?.ended?.(ended, wasRunning && turn.claimedAt !== undefined ? at - turn.claimedAt : undefined)
    if (wasRunning) wake(turn.pool)
    scheduleDeadline()
    return commit(ended).catch((error: unknown) => {
      logger.error({ err: error, turn: turn.id }, 'turn end not stored')
    })
  }

  // ---- Deadlines ----

  function scheduleDeadline(): void {
    if (isClosed) return
    const at = scheduler.nextDeadline()
    if (at === undefined) {
      if (deadlineTimer !== undefined) clearTimeout(deadlineTimer.timer)
      deadlineTimer = undefined
      return
    }
    if (deadlineTimer !== undefined && deadlineTimer.at <= at) return
    if (deadlineTimer !== undefined) clearTimeout(deadlineTimer.timer)
    const timer = setTimeout(onDeadline, Math.min(Math.max(0, at - now()), 2 ** 31 - 1))
    timer.unref()
    deadlineTimer = { at, timer }
  }

  function onDeadline(): void {
    deadlineTimer = undefined
    expireDue()
    scheduleDeadline()
  }

  /**
   * Expires the queued turns whose deadline passed. Run before every dispatch too: a turn requeued
   * after its deadline (a lost lease, a retry) is due at once, and a timer may run late.
   */
  function expireDue(): void {
    for (const expired of scheduler.expire()) {
      const turn = turns.get(expired.id)
      if (turn === undefined) continue
      void end(turn, 'expired', TurnReason.DeadlinePassed, 'its deadline passed while it was queued')
    }
  }

  // ---- Claims ----

  /** Dispatches to the pool's waiting claims, oldest first, while turns and slots are left. */
  function wake(pool: string): void {
    expireDue()
    const queue = waiters.get(pool)
    while (queue !== undefined && queue.length > 0 && scheduler.hasWork(pool)) {
      const waiter = queue.shift()!
      if (waiter.timer !== undefined) clearTimeout(waiter.timer)
      if (waiter.options.isAborted()) {
        waiter.resolve([])
        continue
      }
      void take(pool, waiter.options, waiter.until).then(waiter.resolve, () => waiter.resolve([]))
    }
  }

  /**
   * Takes turns for a worker: attempts + 1, a new lease each; resolves once durable, with those
   * still under their new lease then. `until`: the end of the claim's long poll.
   */
  async function take(pool: string, options: ClaimOptions, until: number): Promise<ClaimedTurn[]> {
    const at = now()
    const claimed: ClaimedTurn[] = []
    const saves: Promise<void>[] = []
    /** Each claimed turn's record before this claim (to give it back as it was). */
    const before = new Map<string, StoredTurn>()
    for (const picked of scheduler.dispatch(pool, options.max)) {
      const turn = turns.get(picked.id)
      if (turn === undefined) continue
      before.set(turn.id, turn)
      const lease = newLease(at)
      const next: StoredTurn = {
        ...turn,
        state: 'claimed',
        attempts: turn.attempts + 1,
        claimedAt: at,
        updatedAt: at,
        lease,
        agent: {
          peerId: options.peerId,
          instanceId: options.instanceId,
          ...(options.name === undefined ? {} : { name: options.name }),
        },
      }
      if (turn.attempts === 0) observer?.firstClaimed?.(next, at - turn.createdAt)
      saves.push(commit(next))
      armLease(next)
      claimed.push({ turn: publicTurn(next), lease })
    }
    // Ack only after the claims are durable: a worker never starts on a turn a restart forgets.
    await Promise.all(saves)
    // Regression: a turn ended meanwhile (its session deleted) was handed out all the same. Only
    // turns still under this claim's lease go out; if that leaves none, the claim tries again.
    const live = claimed.filter(({ turn, lease }) => turns.get(turn.id)?.lease?.id === lease.id)
    if (options.isAborted()) {
      // Regression: the worker went away while the records were written; its answer will not be
      // sent (the router answers nothing once a request is aborted, and nothing asynchronous runs
      // between this and its write), yet the turns stayed leased to nobody for a whole lease, an
      // attempt spent. They go back now, uncounted.
      for (const { turn, lease } of live) {
        void release(before.get(turn.id)!, lease.id).catch((error: unknown) => {
          logger.error({ err: error, turn: turn.id }, 'turn given back by a gone worker not stored')
        })
      }
      return []
    }
    if (live.length > 0 || claimed.length === 0 || isClosed) return live
    return service.claim(pool, { ...options, waitMs: Math.max(0, until - now()) }).catch(() => [])
  }

  /**
   * Gives back a claim its worker never received: queued again at once as it was before the claim
   * (`previous`: attempts, agent), if `leaseId` is still its lease (so nothing was renewed or
   * streamed under it); ended `cancelled` if a device cancelled it meanwhile.
   */
  function release(previous: StoredTurn, leaseId: string): Promise<void> {
    const turn = turns.get(previous.id)
    if (turn === undefined || isFinalTurnState(turn.state) || turn.lease?.id !== leaseId)
      return Promise.resolve()
    const { lease: _lease, agent: _agent, claimedAt: _claimedAt, ...rest } = turn
    if (turn.isCancelRequested === true) {
      return end(turn, 'cancelled', TurnReason.CancelledByDevice, turn.reasonText ?? 'cancelled by a device')
    }
    clearLease(turn.id)
    scheduler.requeue(turn.id)
    scheduleDeadline()
    const requeued: StoredTurn = {
      ...rest,
      ...(previous.agent === undefined ? {} : { agent: previous.agent }),
      ...(previous.claimedAt === undefined ? {} : { claimedAt: previous.claimedAt }),
      state: 'queued',
      attempts: previous.attempts,
      updatedAt: now(),
    }
    const saved = commit(requeued, positionOf(requeued))
    wake(turn.pool)
    return saved
  }

  // ---- Positions ----

  let positionTimer: NodeJS.Timeout | undefined
  if (options.positionRefreshMs > 0 && documents !== undefined) {
    positionTimer = setInterval(refreshPositions, options.positionRefreshMs)
    positionTimer.unref()
  }

  /**
   * Rewrites the positions that moved enough: by at least 1 in the first 20 places, else by at
   * least a tenth, nearest the front first, at most `maxPositionWrites` per refresh. A 10,000-deep
   * queue thus costs a bounded number of writes per refresh however fast it drains.
   *
   * Only into sessions someone has open (`documents.isWatched`): a position nobody sees is not
   * worth a document change (a stored update, a relay, and for a session unloaded since its create
   * a load from disk). Its written position stays as it was, so the first refresh after someone
   * opens the session brings it up to date.
   *
   * When the documents name the watched sessions (a single node), the refresh looks only at their
   * queued turns (O(watched), the order not even computed when none is queued): issue 17's burst
   * walked 10,000 queued turns every 500 ms to find the few someone had open.
   */
  function refreshPositions(): void {
    const watched = documents?.watchedSessions === undefined ? undefined : watchedQueuedByPool()
    for (const pool of poolNames) {
      if ((scheduler.stats(pool)?.queued ?? 0) === 0) continue
      const candidates = watched?.get(pool)
      if (watched !== undefined && candidates === undefined) continue
      const positions = scheduler.positions(pool)
      const changed: [StoredTurn, number][] = []
      if (candidates === undefined) {
        for (const [turnId, position] of positions) {
          if (!isWorthWriting(turnId, position)) continue
          const turn = turns.get(turnId)
          if (turn === undefined || documents?.isWatched?.(turn.sessionId) === false) continue
          changed.push([turn, position])
          if (changed.length >= maxPositionWrites) break
        }
      } else {
        for (const turn of candidates) {
          const position = positions.get(turn.id)
          if (position !== undefined && isWorthWriting(turn.id, position)) changed.push([turn, position])
        }
        // Nearest the front first, as the walk above.
        changed.sort((a, b) => a[1] - b[1])
        changed.length = Math.min(changed.length, maxPositionWrites)
      }
      for (const [turn, position] of changed) {
        writtenPositions.set(turn.id, position)
        documents?.write(turn.sessionId, turn.messageId, entryOf(turn, position))
      }
    }
  }

  /** Moved by 1 within the first 20 places, by at least a tenth beyond, or never written. */
  function isWorthWriting(turnId: string, position: number): boolean {
    const written = writtenPositions.get(turnId)
    return (
      written === undefined ||
      (position <= 20 ? position !== written : Math.abs(written - position) >= written / 10)
    )
  }

  /** The queued turns of the sessions someone has open, by pool (absent: none in that pool). */
  function watchedQueuedByPool(): Map<string, StoredTurn[]> {
    const byPool = new Map<string, StoredTurn[]>()
    for (const sessionId of documents?.watchedSessions?.() ?? []) {
      const ids = queuedBySession.get(sessionId)
      if (ids === undefined || documents?.isWatched?.(sessionId) === false) continue
      for (const turnId of ids) {
        const turn = turns.get(turnId)
        if (turn === undefined || turn.state !== 'queued') continue
        let list = byPool.get(turn.pool)
        if (list === undefined) {
          list = []
          byPool.set(turn.pool, list)
        }
        list.push(turn)
      }
    }
    return byPool
  }

  // ---- Retention ----

  const retentionTimer =
    options.retentionMs > 0
      ? setInterval(sweepRetention, Math.min(RETENTION_SWEEP_MS, options.retentionMs))
      : undefined
  retentionTimer?.unref()

  function sweepRetention(): void {
    const before = now() - options.retentionMs
    for (const turn of [...turns.values()]) {
      if (isFinalTurnState(turn.state) && (turn.endedAt ?? turn.updatedAt) <= before) {
        turns.delete(turn.id)
        void store.delete(turn.id).catch((error: unknown) => {
          logger.warn({ err: error, turn: turn.id }, 'expired turn record not deleted')
        })
      }
    }
  }

  // ---- Start: restore ----

  const startedAt = now()
  for (const turn of await store.loadAll()) {
    nextSeq = Math.max(nextSeq, turn.seq + 1)
    turns.set(turn.id, turn)
    indexQueued(turn)
    // A turn's record and its document entry are not written atomically: a crash between the two
    // leaves a stale entry. Queued turns get theirs again with the first position refresh; the
    // running ones and those that ended lately are shown again now.
    const isRecent = startedAt - turn.updatedAt <= RESHOW_ENDED_MS
    if (turn.state !== 'queued' && (!isFinalTurnState(turn.state) || isRecent)) {
      documents?.write(turn.sessionId, turn.messageId, entryOf(turn))
    }
    if (isFinalTurnState(turn.state)) continue
    if (!poolNames.has(turn.pool)) {
      logger.warn(
        { turn: turn.id, pool: turn.pool },
        'stored turn of a pool this server no longer has: left as is',
      )
      continue
    }
    if (turn.state === 'queued') scheduler.enqueue(scheduled(turn), true)
    else {
      scheduler.restoreRunning(scheduled(turn))
      // Its worker may still be alive and renew; if not, the lease timer puts it back.
      armLease(turn)
    }
  }
  if (options.retentionMs > 0) sweepRetention()
  scheduleDeadline()
  logger.info(
    {
      turns: turns.size,
      pools: [...poolNames],
      queued: [...poolNames].map((p) => scheduler.stats(p)?.queued),
    },
    'turns loaded',
  )

  const workingTurn = (turnId: string, leaseId: string): StoredTurn => {
    const turn = requireTurn(turnId)
    if (isFinalTurnState(turn.state))
      throw new ColloquyError('turn-finished', `the turn is already ${turn.state}`)
    if (turn.lease === undefined || turn.lease.id !== leaseId || turn.lease.expiresAt <= now()) {
      throw new ColloquyError('lease-lost')
    }
    return turn
  }

  const service: TurnService = {
    hasPool: (pool) => poolNames.has(pool),

    async create(request) {
      if (isClosed) throw new ColloquyError('shutting-down')
      if (!poolNames.has(request.pool))
        throw new ColloquyError('unknown-pool', `no pool named ${request.pool}`)
      const id = turnIdOf(request.sessionId, request.messageId, request.pool)
      const existing = turns.get(id)
      if (existing !== undefined) {
        // Regression (issue 17, cluster): a create from a second node answered before the first
        // create's record was durable; now no answer names a turn a crash could still forget.
        await saving.get(id)
        const current = turns.get(id) ?? existing
        const position = positionOf(current)
        return { turn: publicTurn(current), isNew: false, ...(position === undefined ? {} : { position }) }
      }
      const at = now()
      const deadline =
        request.deadline ?? (request.timeoutMs === undefined ? undefined : at + request.timeoutMs)
      if (deadline !== undefined && (deadline <= at || deadline > at + MAX_DEADLINE_MS)) {
        throw new ColloquyError('bad-request', 'the deadline must be in the future, at most 7 days ahead')
      }
      const turn: StoredTurn = {
        id,
        sessionId: request.sessionId,
        messageId: request.messageId,
        pool: request.pool,
        priority: request.priority ?? DEFAULT_PRIORITY,
        tenant: request.tenant ?? DEFAULT_TENANT,
        ...(deadline === undefined ? {} : { deadline }),
        state: 'queued',
        attempts: 0,
        createdAt: at,
        updatedAt: at,
        seq: nextSeq++,
      }
      const refusal = scheduler.enqueue(scheduled(turn))
      if (refusal !== undefined) {
        observer?.refused?.(turn.pool, refusal)
        throw new ColloquyError(
          'queue-full',
          refusal === 'tenant-full'
            ? `tenant ${turn.tenant} has as many turns queued in pool ${turn.pool} as it may`
            : `pool ${turn.pool} has as many turns queued as it may`,
        )
      }
      observer?.created?.(turn)
      // Its position is written by the next refresh (see positionOf).
      const position = positionOf(turn)
      const saved = commit(turn, position)
      scheduleDeadline()
      // Durable before it is handed out: a worker never holds a turn a restart would forget.
      await saved
      wake(turn.pool)
      return {
        turn: publicTurn(turns.get(id) ?? turn),
        isNew: true,
        ...(position === undefined ? {} : { position }),
      }
    },

    get(turnId) {
      const turn = requireTurn(turnId)
      const position = positionOf(turn)
      return { turn: publicTurn(turn), ...(position === undefined ? {} : { position }) }
    },

    claim(pool, claimOptions) {
      if (isClosed) return Promise.reject(new ColloquyError('shutting-down'))
      if (!poolNames.has(pool))
        return Promise.reject(new ColloquyError('unknown-pool', `no pool named ${pool}`))
      expireDue()
      const until = now() + Math.max(0, claimOptions.waitMs)
      if (scheduler.hasWork(pool) || claimOptions.waitMs <= 0) return take(pool, claimOptions, until)
      if ((waiters.get(pool)?.length ?? 0) >= MAX_WAITING_CLAIMS) {
        return Promise.reject(
          new ColloquyError(
            'too-many-connections',
            `more than ${MAX_WAITING_CLAIMS} claims waiting on pool ${pool}`,
          ),
        )
      }
      return new Promise((resolve) => {
        const waiter: ClaimWaiter = { options: claimOptions, until, resolve, timer: undefined }
        waiter.timer = setTimeout(() => {
          const queue = waiters.get(pool)
          const at = queue?.indexOf(waiter) ?? -1
          if (at >= 0) queue!.splice(at, 1)
          resolve([])
        }, claimOptions.waitMs)
        let queue = waiters.get(pool)
        if (queue === undefined) {
          queue = []
          waiters.set(pool, queue)
        }
        queue.push(waiter)
      })
    },

    async renew(turnId, request) {
      const turn = requireTurn(turnId)
      if (turn.lease === undefined || turn.lease.id !== request.leaseId || isFinalTurnState(turn.state)) {
        return turn.state === 'cancelled' && turn.lease === undefined && turn.agent !== undefined
          ? { status: 'cancelled' }
          : { status: 'lost' }
      }
      if (turn.lease.expiresAt <= now()) return { status: 'lost' }
      if (turn.isCancelRequested === true) {
        await end(turn, 'cancelled', TurnReason.CancelledByDevice, turn.reasonText ?? 'cancelled by a device')
        return { status: 'cancelled' }
      }
      const at = now()
      const lease: Lease = { ...turn.lease, expiresAt: at + leaseMs }
      const state = request.state ?? (turn.state === 'streaming' ? 'streaming' : 'claimed')
      const next: StoredTurn = {
        ...turn,
        lease,
        // Never back from streaming to claimed.
        state: turn.state === 'streaming' ? 'streaming' : state,
        ...(request.replyId === undefined ? {} : { replyId: request.replyId }),
      }
      const isVisible = next.state !== turn.state || next.replyId !== turn.replyId
      armLease(next)
      if (isVisible) await commit({ ...next, updatedAt: at })
      else {
        // Only the lease moved: stored (a restart keeps the extended lease), not shown to devices.
        turns.set(next.id, next)
        await store.save(next)
      }
      return { status: 'ok', lease }
    },

    async complete(turnId, request) {
      const turn = workingTurn(turnId, request.leaseId)
      const withReply: StoredTurn =
        request.replyId === undefined ? turn : { ...turn, replyId: request.replyId }
      await end(withReply, 'done')
      return { turn: publicTurn(requireTurn(turnId)) }
    },

    async fail(turnId, request) {
      const turn = workingTurn(turnId, request.leaseId)
      const text = request.reasonText ?? request.reason
      if (turn.isCancelRequested === true) {
        // A device cancelled it: it ends cancelled, as on a renew or a lost lease, whatever the worker's reason.
        await end(turn, 'cancelled', TurnReason.CancelledByDevice, turn.reasonText ?? 'cancelled by a device')
      } else if (request.retry === true && turn.attempts < maxAttempts) {
        clearLease(turn.id)
        scheduler.requeue(turn.id)
        scheduleDeadline()
        const { lease: _lease, ...rest } = turn
        const requeued: StoredTurn = { ...rest, state: 'queued', updatedAt: now(), reasonText: text }
        await commit(requeued, positionOf(requeued))
        wake(turn.pool)
      } else {
        await end(turn, 'failed', request.reason, text)
      }
      return { turn: publicTurn(requireTurn(turnId)) }
    },

    async cancel(turnId, by, reasonText) {
      const turn = requireTurn(turnId)
      if (isFinalTurnState(turn.state))
        throw new ColloquyError('turn-finished', `the turn is already ${turn.state}`)
      const text = reasonText ?? `cancelled by ${by.name ?? by.id}`
      if (turn.state === 'queued') {
        await end(turn, 'cancelled', TurnReason.CancelledByDevice, text)
      } else if (turn.isCancelRequested !== true) {
        // Running: its worker learns it on its next renew; its answer's writer learns it now.
        const next: StoredTurn = { ...turn, isCancelRequested: true, reasonText: text, updatedAt: now() }
        if (turn.replyId !== undefined) documents?.requestCancel(turn.sessionId, turn.replyId, by)
        await commit(next)
      }
      return { turn: publicTurn(requireTurn(turnId)) }
    },

    pool(pool) {
      const stats = scheduler.stats(pool)
      if (stats === undefined) throw new ColloquyError('unknown-pool', `no pool named ${pool}`)
      return { pool, ...stats }
    },

    pools() {
      return [...poolNames].map((pool) => service.pool(pool))
    },

    async endSession(sessionId) {
      const ending: Promise<void>[] = []
      for (const turn of turns.values()) {
        if (turn.sessionId !== sessionId || isFinalTurnState(turn.state)) continue
        ending.push(end(turn, 'cancelled', TurnReason.SessionDeleted, 'its session was deleted'))
      }
      await Promise.all(ending)
    },

    async close() {
      isClosed = true
      for (const timer of leaseTimers.values()) clearTimeout(timer)
      leaseTimers.clear()
      if (deadlineTimer !== undefined) clearTimeout(deadlineTimer.timer)
      if (positionTimer !== undefined) clearInterval(positionTimer)
      if (retentionTimer !== undefined) clearInterval(retentionTimer)
      for (const queue of waiters.values()) {
        for (const waiter of queue) {
          if (waiter.timer !== undefined) clearTimeout(waiter.timer)
          waiter.resolve([])
        }
      }
      waiters.clear()
      await store.flush()
    },
  }
  return service
}

/** The turn as the API returns it: the stored record without its storage-only `seq`. */
function publicTurn(turn: StoredTurn): Turn {
  const { seq: _seq, ...rest } = turn
  return rest
}
