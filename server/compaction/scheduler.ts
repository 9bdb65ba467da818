// Background compaction: notes which sessions got durable writes, checks the policy on a timer,
// and compacts one session at a time with a Merger (a worker thread in the server). Owns no data.

import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import type { Store } from '../persistence/store.js'
import type { LiveSnapshot } from '../session/session.js'
import { type CompactResult, compactSession } from './compactor.js'
import type { CompactionLease, CompactionLeases } from './lease.js'
import type { Merger } from './merge.js'
import { type CompactionPolicy, type RetentionPolicy, shouldCompact, statsFromMeta } from './policy.js'

/** Options of {@link createCompactionScheduler}. */
export interface CompactionSchedulerOptions {
  readonly store: Store
  readonly merger: Merger
  readonly policy: CompactionPolicy
  readonly retention: RetentionPolicy
  /** How often sessions with new writes are checked against the policy (ms); 0 disables the timer. */
  readonly intervalMs: number
  readonly logger: Logger
  readonly now?: () => number
  /** A loaded session's state newer than `afterSeq`, checkpointed instead of a log replay. */
  readonly live?: (sessionId: string, afterSeq: number) => LiveSnapshot | undefined
  /** Called after each compaction that wrote a checkpoint. */
  readonly onCompacted?: (result: CompactResult) => void
  /** Called after every compaction run, whatever its outcome (metrics). */
  readonly onRun?: (run: CompactionRun) => void
  /**
   * Leases across processes (a cluster): a session whose lease another compactor holds is skipped
   * this time. Default none: within one process runs never overlap.
   */
  readonly leases?: CompactionLeases
}

/** One compaction run, as reported to {@link CompactionSchedulerOptions.onRun}. */
export interface CompactionRun {
  readonly sessionId: string
  /** `success`: a checkpoint was written; `skipped`: nothing to fold; `failure`: it threw. */
  readonly result: 'success' | 'failure' | 'skipped'
  /** Wall time of the run, reading and writing included (ms). */
  readonly durationMs: number
  readonly error?: unknown
}

/** The background compactor. */
export interface CompactionScheduler {
  /** Records sessions with new durable writes (the write queue's commit report). */
  noteCommit(durable: ReadonlyMap<string, unknown>): void
  /** Compacts `sessionId` now (after any compaction already running), whatever the policy says. */
  compactNow(sessionId: string, throughSeq?: number): Promise<CompactResult | undefined>
  /** Checks every noted session against the policy and compacts those that qualify; resolves when done. */
  runOnce(): Promise<void>
  /** Stops the timer and waits for the running compaction; later calls are refused. */
  close(): Promise<void>
}

/**
 * Creates the scheduler and starts its timer (unref'd).
 *
 * @remarks Compactions run one at a time, in request order, so two never fold the same session
 * at once and at most one merge occupies the worker thread. A failed compaction is logged and the
 * session stays noted, to be tried again at the next check.
 */
export function createCompactionScheduler(options: CompactionSchedulerOptions): CompactionScheduler {
  const { store, logger } = options
  const dirty = new Set<string>()
  const now = options.now ?? Date.now
  /** When sessions last compacted, kept only while inside the policy's interval. */
  const lastCompactedAt = new Map<string, number>()
  let chain: Promise<unknown> = Promise.resolve()
  let isClosed = false
  let isChecking = false

  /** Reports a run; a throwing callback is logged, never fails the compaction. */
  function report(run: CompactionRun): void {
    try {
      options.onRun?.(run)
    } catch (error) {
      logger.error({ session: run.sessionId, err: error }, 'compaction run callback failed')
    }
  }

  function enqueue(sessionId: string, throughSeq?: number): Promise<CompactResult | undefined> {
    if (isClosed) return Promise.reject(new ColloquyError('shutting-down'))
    const job = chain.then(async () => {
      if (isClosed) throw new ColloquyError('shutting-down')
      logger.info({ session: sessionId, throughSeq }, 'compacting session')
      const started = performance.now()
      let result: CompactResult | undefined
      let lease: CompactionLease | undefined
      try {
        if (options.leases !== undefined) {
          lease = await options.leases.acquire(sessionId)
          if (lease === undefined) {
            logger.info({ session: sessionId }, 'compaction skipped: another node holds the lease')
            report({ sessionId, result: 'skipped', durationMs: performance.now() - started })
            return undefined
          }
        }
        result = await compactSession(sessionId, {
          store,
          merger: options.merger,
          retention: options.retention,
          ...(throughSeq === undefined ? {} : { throughSeq }),
          ...(options.now === undefined ? {} : { now: options.now }),
          ...(options.live === undefined
            ? {}
            : { live: (afterSeq: number) => options.live?.(sessionId, afterSeq) }),
        })
      } catch (error) {
        report({ sessionId, result: 'failure', durationMs: performance.now() - started, error })
        throw error
      } finally {
        await lease?.release().catch((error: unknown) => {
          // It expires by itself: a failed release only delays the next compaction.
          logger.warn({ session: sessionId, err: error }, 'compaction lease release failed')
        })
      }
      report({
        sessionId,
        result: result === undefined ? 'skipped' : 'success',
        durationMs: performance.now() - started,
      })
      if (result !== undefined) {
        lastCompactedAt.set(sessionId, now())
        logger.info(
          {
            session: sessionId,
            seq: result.seq,
            folded: result.folded,
            stateBytes: result.stateBytes,
            trimmedLogThrough: result.trimmedLogThrough,
            deletedCheckpoints: result.deletedCheckpoints.length,
            ms: Math.round(result.durationMs),
          },
          'session compacted',
        )
        options.onCompacted?.(result)
      }
      return result
    })
    chain = job.catch(() => undefined)
    return job
  }

  async function runOnce(): Promise<void> {
    if (isChecking || isClosed) return
    isChecking = true
    try {
      const candidates = [...dirty]
      dirty.clear()
      const checkedAt = now()
      for (const [sessionId, at] of lastCompactedAt) {
        if (checkedAt - at >= (options.policy.minIntervalMs ?? 0)) lastCompactedAt.delete(sessionId)
      }
      for (const sessionId of candidates) {
        if (isClosed) return
        try {
          const meta = await store.getMeta(sessionId)
          if (meta === undefined) continue
          const stats = statsFromMeta(meta)
          const last = lastCompactedAt.get(sessionId)
          const since = last === undefined ? Number.POSITIVE_INFINITY : now() - last
          if (!shouldCompact(stats, options.policy, since)) {
            // Held back only by the interval: check it again later, new writes or not.
            if (shouldCompact(stats, options.policy)) dirty.add(sessionId)
            continue
          }
          await enqueue(sessionId)
        } catch (error) {
          if (isClosed) return
          dirty.add(sessionId)
          logger.error({ session: sessionId, err: error }, 'compaction failed')
        }
      }
    } finally {
      isChecking = false
    }
  }

  const timer =
    options.intervalMs > 0
      ? setInterval(() => {
          void runOnce()
        }, options.intervalMs)
      : undefined
  timer?.unref()

  return {
    noteCommit(durable) {
      if (isClosed) return
      for (const sessionId of durable.keys()) dirty.add(sessionId)
    },
    compactNow: (sessionId, throughSeq) => enqueue(sessionId, throughSeq),
    runOnce,
    async close() {
      isClosed = true
      if (timer !== undefined) clearInterval(timer)
      // Closing the merger first makes a running merge reject at once: shutdown does not wait for
      // a long fold, and nothing was written for it. A checkpoint write already started finishes.
      await options.merger.close()
      await chain
    },
  }
}
