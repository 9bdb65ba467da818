// Background compaction: notes which sessions got durable writes, checks the policy on a timer,
// and compacts one session at a time with a Merger (a worker thread in the server). Owns no data.
// A check reads the session's meta only when what this node committed since the last read could
// have made the session due (or that read is old): on JetStream a meta read is several requests.

import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import type { AppendEntry, Store } from '../persistence/store.js'
import type { LiveSnapshot } from '../session/session.js'
import { type CompactResult, compactSession } from './compactor.js'
import type { CompactionLease, CompactionLeases } from './lease.js'
import type { Merger } from './merge.js'
import {
  type CompactionPolicy,
  type CompactionStats,
  type RetentionPolicy,
  shouldCompact,
  statsFromMeta,
} from './policy.js'

/**
 * Defaults of the check's gating ({@link CompactionSchedulerOptions.checkAheadFactor},
 * {@link CompactionSchedulerOptions.maxCheckAgeMs}).
 */
export const COMPACTION_CHECK_DEFAULTS = {
  /** Local growth counts 3×: writes through other nodes up to twice this node's are not missed. */
  checkAheadFactor: 3,
  /** A session with new local writes has its meta read at least this often (ms). */
  maxCheckAgeMs: 30_000,
} as const

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
  /**
   * The meta of a session is read again only once `checkAheadFactor` × the updates (and bytes) this
   * node committed since the last read could make the policy due. 1 suits a store only this
   * process writes; the default ({@link COMPACTION_CHECK_DEFAULTS}) allows for other nodes' writes.
   */
  readonly checkAheadFactor?: number
  /**
   * A session with new writes whose meta was read longer ago than this is checked anyway, whatever
   * its growth (bounds how late writes through other nodes are noticed); 0: every interval.
   */
  readonly maxCheckAgeMs?: number
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
  /**
   * Records sessions with new durable writes (the write queue's commit report) and, from
   * `entries` (the commit's entries), how much each grew. Without `entries` the growth is unknown:
   * those sessions are checked at the next interval.
   */
  noteCommit(durable: ReadonlyMap<string, unknown>, entries?: readonly AppendEntry[]): void
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
 *
 * A noted session's meta is read (`store.getMeta`, several requests on JetStream) only when it may
 * be due: never read yet, growth unknown, its last read older than `maxCheckAgeMs`, or the stats of
 * that read plus `checkAheadFactor` × this node's growth since (an upper bound of the real growth
 * when only this node writes) pass {@link shouldCompact}. So on a single node a session compacts at
 * the same check as with a read every interval, with far fewer reads.
 */
export function createCompactionScheduler(options: CompactionSchedulerOptions): CompactionScheduler {
  const { store, logger } = options
  const dirty = new Set<string>()
  const now = options.now ?? Date.now
  const aheadFactor = options.checkAheadFactor ?? COMPACTION_CHECK_DEFAULTS.checkAheadFactor
  const maxCheckAgeMs = options.maxCheckAgeMs ?? COMPACTION_CHECK_DEFAULTS.maxCheckAgeMs
  /** What this node knows of sessions it wrote: their last meta read and its growth since. */
  const known = new Map<string, KnownSession>()
  let lastSweepAt = now()
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
      // The stats read before no longer describe it: read the meta at its next commit's check.
      const entry = known.get(sessionId)
      if (entry !== undefined) entry.stats = undefined
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

  /** Whether a session's meta is worth reading: the policy may be due, or what we know is old. */
  function mayBeDue(sessionId: string, at: number): boolean {
    const entry = known.get(sessionId)
    if (entry?.stats === undefined) return true
    if (at - entry.checkedAt >= maxCheckAgeMs) return true
    const { stats } = entry
    // The stats' byte estimate grows by at most the new bytes plus the average entry per update.
    const grownBytes = entry.bytes + entry.updates * entry.avgEntryBytes
    const reach: CompactionStats = {
      updatesSinceCheckpoint: stats.updatesSinceCheckpoint + aheadFactor * entry.updates,
      bytesSinceCheckpoint: stats.bytesSinceCheckpoint + aheadFactor * grownBytes,
      checkpointBytes: stats.checkpointBytes,
    }
    const last = lastCompactedAt.get(sessionId)
    return shouldCompact(reach, options.policy, last === undefined ? Number.POSITIVE_INFINITY : at - last)
  }

  /** Forgets sessions without new writes whose meta read is old (bounds the map). */
  function sweep(at: number): void {
    if (at - lastSweepAt < maxCheckAgeMs) return
    lastSweepAt = at
    for (const [sessionId, entry] of known) {
      if (!dirty.has(sessionId) && at - entry.checkedAt >= 2 * maxCheckAgeMs) known.delete(sessionId)
    }
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
        if (!mayBeDue(sessionId, now())) {
          dirty.add(sessionId)
          continue
        }
        // Counted from now: commits during the read may be counted twice, never missed.
        const entry = knownEntry(sessionId)
        entry.updates = 0
        entry.bytes = 0
        entry.stats = undefined
        try {
          const meta = await store.getMeta(sessionId)
          if (meta === undefined) {
            known.delete(sessionId)
            continue
          }
          const stats = statsFromMeta(meta)
          entry.stats = stats
          entry.checkedAt = now()
          entry.avgEntryBytes = meta.logCount === 0 ? 0 : meta.logBytes / meta.logCount
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
      sweep(now())
    } finally {
      isChecking = false
    }
  }

  function knownEntry(sessionId: string): KnownSession {
    let entry = known.get(sessionId)
    if (entry === undefined) {
      entry = { stats: undefined, checkedAt: 0, avgEntryBytes: 0, updates: 0, bytes: 0 }
      known.set(sessionId, entry)
    }
    return entry
  }

  const timer =
    options.intervalMs > 0
      ? setInterval(() => {
          void runOnce()
        }, options.intervalMs)
      : undefined
  timer?.unref()

  return {
    noteCommit(durable, entries) {
      if (isClosed) return
      for (const sessionId of durable.keys()) {
        dirty.add(sessionId)
        // Growth unknown: read the meta at the next check.
        if (entries === undefined) {
          const entry = known.get(sessionId)
          if (entry !== undefined) entry.stats = undefined
        }
      }
      if (entries === undefined) return
      // Entries of one session mostly come in runs: one map lookup per run.
      let entry: KnownSession | undefined
      let entrySession: string | undefined
      for (const { sessionId, update } of entries) {
        if (entry === undefined || sessionId !== entrySession) {
          entrySession = sessionId
          entry = knownEntry(sessionId)
        }
        entry.updates++
        entry.bytes += update.byteLength
      }
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

/** What the scheduler knows of one session between two reads of its meta. */
interface KnownSession {
  /** The stats of the last read (undefined: none yet, or no longer valid: read at the next check). */
  stats: CompactionStats | undefined
  /** When that read was (the scheduler's clock). */
  checkedAt: number
  /** Average bytes of a stored entry at that read. */
  avgEntryBytes: number
  /** Updates and bytes this node committed since. */
  updates: number
  bytes: number
}
