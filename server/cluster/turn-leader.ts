// Which node schedules a pool: the holder of the pool's lease, a key of a KV bucket whose entries
// expire (max_age = the lease's lifetime). A node takes it with KV `create` (checked by nats-server
// when it applies the write, so two nodes never both get it), keeps it by rewriting its own key
// before it expires, and leads only while its own clock says the lease it last renewed is valid,
// with a margin: it stops before the key can expire on the servers and another node take it.
// Never KV `update(revision)`: nats-server 2.9.10 checks revisions before Raft, unsafe in a cluster.

import type { KV } from '@nats-io/kv'
import type { Logger } from '../observability/log.js'

/**
 * What a node runs while it leads a pool: started by `lead`, stopped by the function it returns,
 * which is given the time (ms, this node's clock) until which it may still write: the end of the
 * lease when the node shuts down (time to flush), now when the lease is lost.
 */
export type LeadPool = () => Promise<(writableUntil: number) => Promise<void>>

/** Options of {@link startPoolLeadership}. */
export interface PoolLeadershipOptions {
  /** A bucket created with `ttl` = {@link ttlMs}. */
  readonly bucket: KV
  readonly pool: string
  /** This node's id, written as the lease's value. */
  readonly holder: string
  /** The lease's lifetime on the servers (the bucket's ttl, ms). */
  readonly ttlMs: number
  /** Starts leading (rebuilds the pool's queue); rejects if it cannot, and is tried again later. */
  readonly lead: LeadPool
  readonly logger: Logger
  readonly now?: () => number
}

/** One node's part in the election of a pool's scheduler. */
export interface PoolLeadership {
  /** True while this node leads the pool (its lease valid by its own clock and `lead` done). */
  readonly isLeader: boolean
  /** Stops: leads no more (the lease is left to expire: deleting a KV key is no safe release on 2.9). */
  close(): Promise<void>
}

/** Fractions of the lease: how often the loop runs, and the part of it a leader gives up early. */
const LeaseFraction = { tick: 4, margin: 4 } as const

/** The pool's key in the leaders bucket (pool names are valid KV keys). */
export function leaderKey(pool: string): string {
  return `pool.${pool}`
}

/**
 * Starts trying to lead `pool`: every ttl/4 a follower tries to `create` the key; a leader rewrites
 * it (after checking it still holds its own revision) and steps down when its lease, counted from
 * when it sent its last successful renewal less a quarter of the lease, runs out.
 *
 * @remarks The fence assumes the clocks of the nodes and the servers run at the same rate over one
 * lease, and that a renewal is not held up in the network for more than the margin (a quarter of
 * the lease): a put sent in time but applied after the key expired and another node created it
 * would overwrite the new holder's lease, and both would lead until the new holder's next check
 * (a quarter of the lease later), when it sees another revision and steps down.
 */
export function startPoolLeadership(options: PoolLeadershipOptions): PoolLeadership {
  const { bucket, pool, holder, ttlMs, logger } = options
  const now = options.now ?? Date.now
  const key = leaderKey(pool)
  const tickMs = Math.max(10, Math.floor(ttlMs / LeaseFraction.tick))
  const marginMs = Math.floor(ttlMs / LeaseFraction.margin)
  /**
   * How long one request of the loop waits: a tick. Regression (issue 17): a take of the lease
   * whose answer never came held the loop for the JetStream timeout (10 s), and a pool went 10.5 s
   * without a scheduler after a kill -9 instead of at most 7.5 s.
   */
  const opTimeoutMs = Math.max(tickMs, 250)
  /** Our revision of the key and until when (our clock) we may lead; undefined while following. */
  let held: { revision: number; until: number } | undefined
  /** Counts the times this node took or lost the lease: a start begun under one tenure ends with it. */
  let tenure = 0
  let stop: ((writableUntil: number) => Promise<void>) | undefined
  /** The start (`lead`) under way, if any: the loop keeps renewing meanwhile. */
  let starting: Promise<void> | undefined
  let isClosed = false
  let timer: NodeJS.Timeout | undefined
  /** Fires when the lease runs out by our clock: a leader stops then, not at its next tick. */
  let fence: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined

  function hold(revision: number, sentAt: number): void {
    held = { revision, until: sentAt + ttlMs - marginMs }
    if (fence !== undefined) clearTimeout(fence)
    fence = setTimeout(
      () => {
        fence = undefined
        if (held !== undefined && now() >= held.until) void stepDown('lease not renewed in time')
      },
      Math.max(0, held.until - now()),
    )
  }

  const value = (): Uint8Array => new TextEncoder().encode(JSON.stringify({ holder, at: Date.now() }))

  async function stepDown(why: string, writableUntil = now()): Promise<void> {
    held = undefined
    tenure++
    if (fence !== undefined) clearTimeout(fence)
    fence = undefined
    const stopping = stop
    stop = undefined
    if (stopping !== undefined) {
      logger.warn({ pool, node: holder, why }, 'turn scheduler: this node stops scheduling the pool')
      await stopping(writableUntil).catch((error: unknown) => {
        logger.error({ err: error, pool }, 'turn scheduler did not stop cleanly')
      })
    }
  }

  async function tick(): Promise<void> {
    if (held !== undefined && now() >= held.until) {
      await stepDown('lease not renewed in time')
    }
    if (held === undefined) {
      const sentAt = now()
      try {
        // KV create's own request (expected last subject seq 0, checked when applied), with a
        // timeout of one tick: `create` waits the connection's JetStream timeout (10 s) for an
        // answer that may never come, and its fallback for a deleted key is an unsafe update.
        hold(
          await withTimeout(bucket.put(key, value(), { previousSeq: 0, timeout: opTimeoutMs }), opTimeoutMs),
          sentAt,
        )
        tenure++
        logger.info({ pool, node: holder }, 'turn scheduler: this node took the pool lease')
      } catch (error) {
        if (!isExistsError(error)) logger.warn({ err: error, pool }, 'turn scheduler lease: create failed')
        return
      }
    } else {
      const sentAt = now()
      try {
        const current = await withTimeout(bucket.get(key), opTimeoutMs)
        if (current === null || current.revision !== held.revision || current.operation !== 'PUT') {
          await stepDown('the pool lease is held by another node')
          return
        }
        if (now() >= held.until) {
          await stepDown('lease not renewed in time')
          return
        }
        hold(await withTimeout(bucket.put(key, value(), { timeout: opTimeoutMs }), opTimeoutMs), sentAt)
      } catch (error) {
        logger.warn({ err: error, pool }, 'turn scheduler lease: renewal failed')
        if (now() >= held.until) await stepDown('lease not renewed in time')
        return
      }
    }
    if (stop === undefined && starting === undefined && held !== undefined && !isClosed) start()
  }

  /**
   * Starts leading without holding up the loop: the lease is renewed while the queue is rebuilt.
   * Regression (issue 17, no quorum): after quorum returned, the node that took the lease could not
   * read the queue back for 10 s (JetStream still electing its stream leaders); its loop waited on
   * the start, renewed nothing, and the lease lapsed to another node: 17–29 s with no scheduler.
   * A start that ends after its tenure (the lease lost, or lost and taken again) is stopped at once:
   * another node may have led meanwhile, and the queue it read may be stale.
   */
  function start(): void {
    const startedIn = tenure
    starting = options
      .lead()
      .then(
        async (stopping) => {
          if (!isClosed && held !== undefined && tenure === startedIn && now() < held.until) {
            stop = stopping
            return
          }
          logger.warn({ pool, node: holder }, 'turn scheduler: lease lost while starting')
          await stopping(now()).catch((error: unknown) => {
            logger.error({ err: error, pool }, 'turn scheduler did not stop cleanly')
          })
        },
        (error: unknown) => {
          logger.error({ err: error, pool }, 'turn scheduler did not start: retrying')
        },
      )
      .finally(() => {
        starting = undefined
      })
  }

  function schedule(delayMs: number): void {
    if (isClosed) return
    timer = setTimeout(() => {
      timer = undefined
      running = tick()
        .catch((error: unknown) => logger.error({ err: error, pool }, 'turn scheduler lease loop failed'))
        .finally(() => {
          running = undefined
          schedule(tickMs)
        })
    }, delayMs)
  }
  schedule(0)

  return {
    get isLeader() {
      return stop !== undefined && held !== undefined && now() < held.until
    },
    async close() {
      isClosed = true
      if (timer !== undefined) clearTimeout(timer)
      await running
      // A start under way stops itself when it ends (closed).
      await starting
      await stepDown('node shutting down', held?.until ?? now())
    },
  }
}

/** `promise`, or a rejection after `ms` (the request itself is left to end on its own). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

function isExistsError(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } })?.api_error?.err_code
  return code === 10071 || (error instanceof Error && /wrong last sequence|key exists/i.test(error.message))
}
