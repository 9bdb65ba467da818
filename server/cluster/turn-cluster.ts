// Turns in a cluster (docs/agents.md "Turns in a cluster"): every pool has one scheduler, on the
// node holding its lease (turn-leader.ts), running the single node's turn service over the
// JetStream turn stream (turn-stream.ts). Every node answers the turns API: a call on a pool this
// node schedules goes to its service; any other is sent over NATS request-reply to
// `colloquy.turnrpc.<pool>`, which only the pool's scheduler subscribes to. A new scheduler
// rebuilds the pool's queue from the stream; calls wait (bounded) while no node leads the pool.

import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream'
import type { KV } from '@nats-io/kv'
import { Kvm } from '@nats-io/kv'
import { type Msg, type NatsConnection, RequestError, type Subscription } from '@nats-io/transport-node'
import type { Author } from '../../shared/conversation/index.js'
import { ColloquyError, ERRORS, type ErrorCode } from '../../shared/errors.js'
import { parseTurnId } from '../../shared/turns/turn.js'
import type { Logger } from '../observability/log.js'
import {
  type ClaimOptions,
  openTurnService,
  type TurnApi,
  type TurnPoolConfig,
  type TurnService,
  type TurnServiceOptions,
} from '../turns/turn-service.js'
import type { TurnStore } from '../turns/turn-store.js'
import { type PoolLeadership, startPoolLeadership } from './turn-leader.js'
import {
  createStreamTurnStore,
  openTurnStream,
  type TurnStreamNames,
  turnStreamNames,
} from './turn-stream.js'

/** Options of {@link openClusterTurns}. */
export interface ClusterTurnsOptions {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  /** This node's id (the lease holder). */
  readonly nodeId: string
  /** Replicas of the turn stream and the leaders bucket. */
  readonly replicas: number
  readonly pools: readonly TurnPoolConfig[]
  /** Everything of the turn service but its pools, store and logger (the same on every node). */
  readonly service: Omit<TurnServiceOptions, 'pools' | 'store' | 'logger'>
  /** A pool scheduler's lease (ms, default 6 s): how long a pool waits for a new one after a kill -9. */
  readonly leaderTtlMs?: number
  /** How long a call waits for a pool's scheduler when none answers (ms, default 2 leases + 10 s). */
  readonly waitForLeaderMs?: number
  /** See turnStreamNames (tests). */
  readonly namespace?: string
  readonly logger: Logger
}

/** The turns API of a cluster node. */
export interface ClusterTurns extends TurnApi {
  /** Whether this node schedules `pool` now. */
  leads(pool: string): boolean
  /** Claims (long polls) of workers on this node waiting on a pool's scheduler, here or not (metrics). */
  readonly forwardedClaims: number
}

/** Default lifetime of a pool scheduler's lease (ms). */
export const DEFAULT_LEADER_TTL_MS = 6_000
/** Longest a forwarded call (other than a claim's long poll) waits for its answer (ms). */
const CALL_TIMEOUT_MS = 10_000
/** A forwarded claim's long poll goes in slices of at most this (ms). */
const CLAIM_SLICE_MS = 5_000
/** How long past its slice a forwarded claim waits for the scheduler's answer (ms). */
const CLAIM_GRACE_MS = 5_000
/** How often a forwarded claim checks whether its worker went away (ms). */
const ABORT_CHECK_MS = 50

/** How {@link openClusterTurns}' calls are sent. */
interface SendOptions {
  /** How long the scheduler's answer is awaited (ms; default {@link CALL_TIMEOUT_MS}). */
  readonly timeoutMs?: number
  /** A local claim's worker went away. */
  readonly isAborted?: () => boolean
  /** How long to wait for a scheduler when none answers (ms; default the node's). */
  readonly waitForLeaderMs?: number
}

/** How long a node keeps trying to open the turn stream and the leaders bucket at start (ms). */
const OPEN_RETRY_MS = 60_000

/** Runs `open` until it succeeds (each failure logged, backoff 0.1 s doubling to 2 s), at most `forMs`. */
async function retried<T>(logger: Logger, forMs: number, open: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + forMs
  for (let attempt = 1, delay = 100; ; attempt++, delay = Math.min(delay * 2, 2_000)) {
    try {
      return await open()
    } catch (error) {
      if (Date.now() + delay > deadline) throw error
      logger.warn(
        { attempt, retryInMs: delay, err: error instanceof Error ? error.message : String(error) },
        'turn stream or leaders bucket not opened: retrying',
      )
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}

/** A call as it travels to a pool's scheduler. */
type Call =
  | { readonly op: 'create'; readonly args: Parameters<TurnApi['create']> }
  | { readonly op: 'get'; readonly args: Parameters<TurnApi['get']> }
  | { readonly op: 'claim'; readonly args: [string, Omit<ClaimOptions, 'isAborted'>, string?] }
  | { readonly op: 'abortClaim'; readonly args: [string] }
  | { readonly op: 'renew'; readonly args: Parameters<TurnApi['renew']> }
  | { readonly op: 'complete'; readonly args: Parameters<TurnApi['complete']> }
  | { readonly op: 'fail'; readonly args: Parameters<TurnApi['fail']> }
  | { readonly op: 'cancel'; readonly args: [string, Author, string | undefined] }
  | { readonly op: 'pool'; readonly args: Parameters<TurnApi['pool']> }
  | { readonly op: 'endSession'; readonly args: Parameters<TurnApi['endSession']> }

/** The answer of a call: its value, its error, or "not the scheduler (any more): ask again". */
type Answer =
  | { readonly ok: unknown }
  | { readonly error: { code: string; message: string } }
  | { readonly retry: true }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Runs `call` on a pool's own service (`isAborted`: a local claim's worker went away). */
function invoke(service: TurnService, call: Call, isAborted: () => boolean = () => false): Promise<unknown> {
  switch (call.op) {
    case 'create':
      return service.create(...call.args)
    case 'get':
      return Promise.resolve().then(() => service.get(...call.args))
    case 'claim':
      return service.claim(call.args[0], { ...call.args[1], isAborted })
    case 'renew':
      return service.renew(...call.args)
    case 'complete':
      return service.complete(...call.args)
    case 'fail':
      return service.fail(...call.args)
    case 'cancel':
      return service.cancel(call.args[0], call.args[1], call.args[2])
    case 'pool':
      return Promise.resolve().then(() => service.pool(...call.args))
    case 'endSession':
      return service.endSession(...call.args)
    case 'abortClaim':
      return Promise.resolve()
  }
}

/** What a scheduling service's store wrote: see {@link invokeStored}. */
interface WriteTracker {
  /** How many writes were dropped (never stored) so far. */
  readonly dropped: number
  /**
   * Resolves once the writes of `turnId` (of every turn: undefined) now pending settled; rejects
   * with `storage-unavailable` if one of them was dropped after `since` (a {@link dropped} count).
   */
  stored(turnId: string | undefined, since: number): Promise<void>
}

const trackers = new WeakMap<TurnService, WriteTracker>()

/** Wraps `store` so that a call can learn whether the writes it made were stored. */
function trackWrites(store: TurnStore): { store: TurnStore; tracker: WriteTracker } {
  const pending = new Map<string, Promise<void>>()
  const droppedAt = new Map<string, number>()
  let dropped = 0
  const track = (turnId: string, write: Promise<void>): Promise<void> => {
    pending.set(turnId, write)
    const forget = (): void => {
      if (pending.get(turnId) === write) pending.delete(turnId)
    }
    write.then(forget, () => {
      // The queue rejects only what it dropped: a write that failed and was replaced by a newer
      // one waits for that one instead.
      droppedAt.set(turnId, ++dropped)
      forget()
    })
    return write
  }
  return {
    store: {
      save: (turn) => track(turn.id, store.save(turn)),
      delete: (turnId) => track(turnId, store.delete(turnId)),
      loadAll: () => store.loadAll(),
      flush: () => store.flush(),
      close: () => store.close(),
    },
    tracker: {
      get dropped() {
        return dropped
      },
      async stored(turnId, since) {
        const writes =
          turnId === undefined ? [...pending.values()] : [pending.get(turnId)].filter((w) => w !== undefined)
        await Promise.allSettled(writes)
        const last = turnId === undefined ? dropped : (droppedAt.get(turnId) ?? 0)
        if (last > since)
          throw new ColloquyError('storage-unavailable', 'the turn could not be stored: try again')
      },
    },
  }
}

/** The turn a write call changes (undefined: a read, a claim, a create, which await their own writes). */
function turnOfWrite(call: Call): string | undefined {
  switch (call.op) {
    case 'renew':
    case 'complete':
    case 'fail':
    case 'cancel':
      return call.args[0]
    default:
      return undefined
  }
}

/**
 * Runs `call` on `part`'s service and, for a write, answers only once the turn's latest record is
 * stored. Regression (issue 17, no quorum): completing a turn or cancelling a queued one was
 * answered at once while its record could not be written, and dropped when the scheduler stepped
 * down; after the outage the next scheduler found the turn queued again (a cancelled turn answered).
 */
async function invokeStored(service: TurnService, call: Call, isAborted?: () => boolean): Promise<unknown> {
  const tracker = trackers.get(service)
  const since = tracker?.dropped ?? 0
  const result = await invoke(service, call, isAborted)
  const turnId = turnOfWrite(call)
  if (tracker !== undefined && (turnId !== undefined || call.op === 'endSession'))
    await tracker.stored(turnId, since)
  return result
}

function errorOf(code: string, message: string): ColloquyError {
  return Object.hasOwn(ERRORS, code)
    ? new ColloquyError(code as ErrorCode, message)
    : new ColloquyError('internal', `${code}: ${message}`)
}

function isNoResponders(error: unknown): boolean {
  return error instanceof RequestError && error.isNoResponders()
}

/** One pool as this node sees it. */
interface PoolPart {
  readonly config: TurnPoolConfig
  readonly subject: string
  leadership?: PoolLeadership
  /** The service while this node schedules the pool. */
  service?: TurnService
}

/**
 * Opens the turn stream and the leaders bucket, and starts competing for every pool's lease.
 * Resolves at once: a pool's calls wait for a scheduler (this node or another) to be elected.
 */
export async function openClusterTurns(options: ClusterTurnsOptions): Promise<ClusterTurns> {
  const { nc, js, jsm, logger, nodeId } = options
  const names: TurnStreamNames = turnStreamNames(options.namespace)
  const ttlMs = options.leaderTtlMs ?? DEFAULT_LEADER_TTL_MS
  const waitForLeaderMs = options.waitForLeaderMs ?? 2 * ttlMs + 10_000
  /**
   * A read waits for a scheduler one lease at most: long enough for most failovers, and a read is
   * cheap to ask again. Regression (issue 17, no quorum): a GET of a turn or a pool, which no node
   * can answer while none schedules, was held 22 s before its 503.
   */
  const readWait: SendOptions = { waitForLeaderMs: Math.min(waitForLeaderMs, ttlMs) }
  // Every node creates these at start, at once: a creation that times out (seen on the loaded test
  // machine with two at once) is tried again rather than failing the node's start.
  const bucket: KV = await retried(logger, OPEN_RETRY_MS, async () => {
    await openTurnStream({ jsm, names, replicas: options.replicas })
    return new Kvm(js).create(names.leaders, {
      replicas: options.replicas,
      history: 1,
      ttl: ttlMs,
      // Reads through the stream leader: a lagging follower must not show an old holder's revision.
      allow_direct: false,
      timeout: 10_000,
    })
  })
  const parts = new Map<string, PoolPart>(
    options.pools.map((config) => [config.name, { config, subject: `${names.rpcPrefix}.${config.name}` }]),
  )
  let isClosed = false
  /** Forwarded claims this node schedules, by their id: true once their worker went away. */
  const remoteClaims = new Map<string, boolean>()
  let forwardedClaims = 0
  let nextClaimId = 0

  /** Starts scheduling `part`'s pool: rebuilds its queue from the stream, then answers its subject. */
  async function lead(part: PoolPart): Promise<(writableUntil: number) => Promise<void>> {
    const pool = part.config.name
    const startedAt = Date.now()
    const store = createStreamTurnStore({ js, jsm, names, pool, logger })
    // Calls answer only once what they wrote is stored (see invokeStored).
    const { store: tracked, tracker } = trackWrites(store)
    const service = await openTurnService({
      ...options.service,
      pools: [part.config],
      store: tracked,
      logger,
    }).catch(async (error: unknown) => {
      await store.close()
      throw error
    })
    let subscription: Subscription
    try {
      subscription = subscribe(part, service)
    } catch (error) {
      await store.close()
      await service.close().catch(() => undefined)
      throw error
    }
    part.service = service
    trackers.set(service, tracker)
    logger.info(
      { ...service.pool(pool), node: nodeId, rebuildMs: Date.now() - startedAt },
      'turn scheduler: this node schedules the pool (queue rebuilt from the stream)',
    )
    return async (writableUntil) => {
      if (part.service === service) delete part.service
      subscription.unsubscribe()
      // Stops timers and long polls, and flushes what is pending while the lease lasts (a clean
      // shutdown); past it (at once when the lease is lost) pending records are dropped, not
      // retried: another node may schedule the pool by then.
      const closed = service.close().catch(() => undefined)
      const leaseEnd = new Promise<void>((resolve) =>
        setTimeout(resolve, Math.max(0, writableUntil - Date.now())).unref(),
      )
      await Promise.race([closed, leaseEnd])
      await store.close()
      await closed
    }
  }

  /** Answers the calls sent to `part`'s subject with `service`. */
  function subscribe(part: PoolPart, service: TurnService): Subscription {
    return nc.subscribe(part.subject, {
      callback: (error, message) => {
        if (error !== null) {
          logger.warn({ err: error, pool: part.config.name }, 'turn scheduler subscription error')
          return
        }
        void answer(part, service, message)
      },
    })
  }

  async function answer(part: PoolPart, service: TurnService, message: Msg): Promise<void> {
    let reply: Answer
    if (part.service !== service || part.leadership?.isLeader !== true) reply = { retry: true }
    else {
      let claimId: string | undefined
      try {
        const call = JSON.parse(decoder.decode(message.data)) as Call
        if (call.op === 'abortClaim') {
          // The worker of a forwarded long poll went away: it must not be handed a turn.
          if (remoteClaims.has(call.args[0])) {
            remoteClaims.set(call.args[0], true)
            logger.info(
              { pool: part.config.name, claim: call.args[0] },
              'forwarded claim abandoned by its worker',
            )
          }
          return
        }
        claimId = call.op === 'claim' ? call.args[2] : undefined
        if (claimId !== undefined) remoteClaims.set(claimId, false)
        const id = claimId
        reply = {
          ok: await invokeStored(service, call, () => id !== undefined && remoteClaims.get(id) === true),
        }
      } catch (error) {
        const failure =
          error instanceof ColloquyError
            ? error
            : new ColloquyError('internal', error instanceof Error ? error.message : String(error))
        if (failure.code === 'internal')
          logger.error({ err: error, pool: part.config.name }, 'turn call failed')
        reply = { error: { code: failure.code, message: failure.message } }
      } finally {
        if (claimId !== undefined) remoteClaims.delete(claimId)
      }
    }
    try {
      message.respond(encoder.encode(JSON.stringify(reply)))
    } catch (error) {
      logger.warn({ err: error, pool: part.config.name }, 'turn call answer not sent')
    }
  }

  /**
   * Sends `call` to `pool`'s scheduler (this node's service when it is the one) and returns its
   * answer. Waits, retrying with backoff, while no node schedules the pool, up to `waitForLeaderMs`;
   * then (or when the scheduler does not answer in time) `storage-unavailable` (503, retryable).
   */
  async function send<T>(pool: string, call: Call, how: SendOptions = {}): Promise<T> {
    const { timeoutMs = CALL_TIMEOUT_MS, isAborted } = how
    const part = parts.get(pool)
    if (part === undefined) throw new ColloquyError('unknown-pool', `no pool named ${pool}`)
    const deadline = Date.now() + (how.waitForLeaderMs ?? waitForLeaderMs)
    for (let delay = 25; ; delay = Math.min(delay * 2, 1_000)) {
      if (isClosed) throw new ColloquyError('shutting-down')
      const local = part.service
      if (local !== undefined && part.leadership?.isLeader === true) {
        try {
          return (await invokeStored(local, call, isAborted)) as T
        } catch (error) {
          // This node stopped scheduling the pool meanwhile: ask whoever does now.
          if (!(error instanceof ColloquyError && error.code === 'shutting-down' && part.service !== local))
            throw error
        }
      } else {
        let reply: Answer | undefined
        try {
          const message = await nc.request(part.subject, encoder.encode(JSON.stringify(call)), {
            timeout: timeoutMs,
          })
          reply = JSON.parse(decoder.decode(message.data)) as Answer
        } catch (error) {
          if (!isNoResponders(error)) {
            logger.warn({ err: error, pool, op: call.op }, 'turn call: the pool scheduler did not answer')
            throw new ColloquyError('storage-unavailable', `the scheduler of pool ${pool} did not answer`, {
              cause: error,
            })
          }
        }
        // A scheduler that is stopping (its lease lost, its node shutting down) answers
        // `shutting-down`: the next one will answer.
        if (reply !== undefined && 'error' in reply && reply.error.code !== 'shutting-down')
          throw errorOf(reply.error.code, reply.error.message)
        // `{}` is an answer too: `{ ok: undefined }` of a call that returns nothing, as JSON.
        if (reply !== undefined && !('retry' in reply) && !('error' in reply))
          return (reply as { ok?: unknown }).ok as T
      }
      if (Date.now() + delay > deadline) {
        throw new ColloquyError('storage-unavailable', `no node schedules pool ${pool} now: try again`)
      }
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }

  /** The pool a turn id names, or `not-found` (as a single node answers an unknown turn). */
  const poolOfTurn = (turnId: string): string => {
    const parsed = parseTurnId(turnId)
    if (parsed === undefined || !parts.has(parsed.pool)) throw new ColloquyError('not-found', 'no such turn')
    return parsed.pool
  }

  for (const part of parts.values()) {
    part.leadership = startPoolLeadership({
      bucket,
      pool: part.config.name,
      holder: nodeId,
      ttlMs,
      lead: () => lead(part),
      logger,
    })
  }

  /**
   * A long poll of up to `waitMs` for `pool`'s turns through whichever node schedules it, under
   * `claimId` (which an abort names).
   */
  async function forwardClaim(
    pool: string,
    rest: Omit<ClaimOptions, 'isAborted'>,
    waitMs: number,
    isAborted: () => boolean,
    claimId: string,
  ): Promise<Awaited<ReturnType<TurnApi['claim']>>> {
    // A long poll in slices: the answer of a scheduler killed meanwhile never comes, and a slice
    // bounds how long a worker waits on it before it asks the next scheduler.
    const until = Date.now() + waitMs
    for (;;) {
      const slice = Math.max(0, Math.min(until - Date.now(), CLAIM_SLICE_MS))
      let claimed: Awaited<ReturnType<TurnApi['claim']>>
      try {
        claimed = await send(
          pool,
          { op: 'claim', args: [pool, { ...rest, waitMs: slice }, claimId] },
          {
            timeoutMs: slice + CLAIM_GRACE_MS,
            isAborted,
            waitForLeaderMs: Math.max(0, until - Date.now()),
          },
        )
      } catch (error) {
        // The scheduler died during the slice or none answers: ask again (whoever schedules the
        // pool by then) while the wait lasts; after it nothing was claimed, as when none is queued.
        if (!(error instanceof ColloquyError && error.code === 'storage-unavailable')) throw error
        if (Date.now() >= until || isAborted()) return []
        continue
      }
      if (claimed.length > 0 && isAborted()) {
        // The worker went away during the long poll: give its turns back at once rather than
        // when their leases run out.
        for (const { turn, lease } of claimed) {
          void send(pool, {
            op: 'fail',
            args: [turn.id, { leaseId: lease.id, reason: 'worker-gone', retry: true }],
          }).catch(() => undefined)
        }
        return []
      }
      if (claimed.length > 0 || Date.now() >= until || isAborted()) return claimed
    }
  }

  const turns: ClusterTurns = {
    hasPool: (pool) => parts.has(pool),
    leads: (pool) => parts.get(pool)?.leadership?.isLeader === true && parts.get(pool)?.service !== undefined,

    create(request) {
      if (!parts.has(request.pool))
        return Promise.reject(new ColloquyError('unknown-pool', `no pool named ${request.pool}`))
      return send(request.pool, { op: 'create', args: [request] })
    },
    async get(turnId) {
      return send(poolOfTurn(turnId), { op: 'get', args: [turnId] }, readWait)
    },
    async claim(pool, claimOptions) {
      const { isAborted, ...rest } = claimOptions
      const part = parts.get(pool)
      if (part === undefined) throw new ColloquyError('unknown-pool', `no pool named ${pool}`)
      // Regression (issue 17, cluster): a worker gone during a forwarded long poll was handed the
      // next turn (claimed for nobody, an attempt spent). Now its abort follows it to the scheduler.
      const claimId = `${nodeId}/${++nextClaimId}`
      forwardedClaims++
      const watcher = setInterval(() => {
        if (!isAborted()) return
        clearInterval(watcher)
        try {
          nc.publish(part.subject, encoder.encode(JSON.stringify({ op: 'abortClaim', args: [claimId] })))
        } catch {
          // The connection is closing: the claim ends with it.
        }
      }, ABORT_CHECK_MS)
      try {
        return await forwardClaim(pool, rest, claimOptions.waitMs, isAborted, claimId)
      } finally {
        clearInterval(watcher)
        forwardedClaims--
      }
    },
    get forwardedClaims() {
      return forwardedClaims
    },
    async renew(turnId, request) {
      return send(poolOfTurn(turnId), { op: 'renew', args: [turnId, request] })
    },
    async complete(turnId, request) {
      return send(poolOfTurn(turnId), { op: 'complete', args: [turnId, request] })
    },
    async fail(turnId, request) {
      return send(poolOfTurn(turnId), { op: 'fail', args: [turnId, request] })
    },
    async cancel(turnId, by, reasonText) {
      return send(poolOfTurn(turnId), { op: 'cancel', args: [turnId, by, reasonText] })
    },
    async pool(pool) {
      if (!parts.has(pool)) throw new ColloquyError('unknown-pool', `no pool named ${pool}`)
      return send(pool, { op: 'pool', args: [pool] }, readWait)
    },
    async endSession(sessionId) {
      await Promise.all([...parts.keys()].map((pool) => send(pool, { op: 'endSession', args: [sessionId] })))
    },
    pools() {
      const figures = []
      for (const part of parts.values()) {
        if (part.service !== undefined) figures.push(part.service.pool(part.config.name))
      }
      return figures
    },
    async close() {
      isClosed = true
      await Promise.all([...parts.values()].map((part) => part.leadership?.close()))
    },
  }
  return turns
}
