// When to compact and what retention lets a compaction delete: pure functions of a session's
// stats and checkpoint times. No I/O; the compactor and the scheduler call these.

import type { SessionMeta } from '../persistence/store.js'

/** When a session is worth compacting. README.md and docs/history.md document the defaults. */
export interface CompactionPolicy {
  /** Never compact fewer updates than this since the latest checkpoint. */
  readonly minUpdates: number
  /** Always compact once this many updates follow the latest checkpoint. */
  readonly maxUpdates: number
  /**
   * A session compacts at most once per this many ms, unless {@link URGENT_FACTOR} × `maxUpdates`
   * updates wait (undefined or 0: no spacing). Why: a compaction re-folds the whole document, so
   * a session streaming thousands of updates a second would otherwise re-fold it every `maxUpdates`
   * (measured: ~7 of ~25 µs per update at 30,000 updates/s); spaced, the fold work per update
   * shrinks as the rate grows, and sessions at ordinary rates are not affected.
   */
  readonly minIntervalMs?: number
}

/** Updates (× `maxUpdates`) after which a session compacts even inside its interval. */
export const URGENT_FACTOR = 5

/** What the policy looks at, derived from a session's meta. */
export interface CompactionStats {
  /** Updates stored after the latest checkpoint (what a load must replay). */
  readonly updatesSinceCheckpoint: number
  /** Estimated bytes of those updates. */
  readonly bytesSinceCheckpoint: number
  /** Bytes of the latest checkpoint's state (0 when none). */
  readonly checkpointBytes: number
}

export const DEFAULT_COMPACTION_POLICY: CompactionPolicy = {
  minUpdates: 2_000,
  maxUpdates: 10_000,
  minIntervalMs: 10_000,
}

/**
 * The stats of a session from its meta.
 *
 * @remarks In a dense log the updates after the checkpoint are exactly `lastSeq − checkpointSeq`.
 * A sparse log (its meta reports `trimmedThrough`) has gaps, so the retained entries (`logCount`)
 * bound them instead. Their bytes are estimated from the average stored update, because the meta
 * sums the bytes of every retained entry, including those kept below the checkpoint. A store that
 * counts the entries after the checkpoint exactly (`sinceCheckpoint`) is taken at its word.
 */
export function statsFromMeta(meta: SessionMeta): CompactionStats {
  if (meta.sinceCheckpoint !== undefined) {
    return {
      updatesSinceCheckpoint: meta.sinceCheckpoint.count,
      bytesSinceCheckpoint: meta.sinceCheckpoint.bytes,
      checkpointBytes: meta.checkpointBytes,
    }
  }
  const span = Math.max(0, meta.lastSeq - meta.checkpointSeq)
  const updatesSinceCheckpoint = meta.trimmedThrough === undefined ? span : Math.min(span, meta.logCount)
  const share = meta.logCount === 0 ? 0 : Math.min(1, updatesSinceCheckpoint / meta.logCount)
  return {
    updatesSinceCheckpoint,
    bytesSinceCheckpoint: Math.round(meta.logBytes * share),
    checkpointBytes: meta.checkpointBytes,
  }
}

/**
 * True when the session should compact: at least `minUpdates` since the checkpoint, not within
 * `minIntervalMs` of its last compaction (unless URGENT_FACTOR × `maxUpdates` wait), and either
 * `maxUpdates` of them or more bytes of log than of checkpoint (the log outweighs the snapshot).
 *
 * @param msSinceLastCompaction time since the session last compacted (Infinity: never, or unknown)
 */
export function shouldCompact(
  stats: CompactionStats,
  policy: CompactionPolicy,
  msSinceLastCompaction = Number.POSITIVE_INFINITY,
): boolean {
  if (stats.updatesSinceCheckpoint === 0 || stats.updatesSinceCheckpoint < policy.minUpdates) return false
  if (
    msSinceLastCompaction < (policy.minIntervalMs ?? 0) &&
    stats.updatesSinceCheckpoint < policy.maxUpdates * URGENT_FACTOR
  ) {
    return false
  }
  if (stats.updatesSinceCheckpoint >= policy.maxUpdates) return true
  return stats.bytesSinceCheckpoint >= stats.checkpointBytes
}

/**
 * How much history is kept. docs/history.md states the rule exactly:
 *
 * 1. every log entry is kept until a checkpoint at or after its seq is older than `keepLogMs`;
 * 2. below that checkpoint (the anchor) only checkpoints remain: for `keepCheckpointsMs`, the last
 *    one of each `checkpointSpacingMs` interval; older ones are deleted;
 * 3. the anchor and every checkpoint above it are kept.
 */
export interface RetentionPolicy {
  /** Fine-grained window: every update younger than this stays replayable (ms). */
  readonly keepLogMs: number
  /** Coarse window: checkpoints younger than this survive thinning (ms). */
  readonly keepCheckpointsMs: number
  /** In the coarse window, at most one checkpoint per interval of this length (ms). */
  readonly checkpointSpacingMs: number
}

const HOUR = 3_600_000
const DAY = 24 * HOUR

export const DEFAULT_RETENTION: RetentionPolicy = {
  keepLogMs: 7 * DAY,
  keepCheckpointsMs: 90 * DAY,
  checkpointSpacingMs: HOUR,
}

/** A checkpoint's position: the seq it covers and the server time of the update at that seq. */
export interface CheckpointPoint {
  readonly seq: number
  readonly time: number
}

/** What retention lets one compaction delete, in the same batch as its checkpoint. */
export interface RetentionPlan {
  /** Delete log entries with seq ≤ this (0: none). Always the seq of a kept checkpoint. */
  readonly trimLogThrough: number
  /** Checkpoints to delete (never the anchor nor the one being written). */
  readonly deleteCheckpoints: readonly number[]
}

/**
 * Applies {@link RetentionPolicy} to a session's checkpoints (`checkpoints` must include the one
 * being written, which has the highest seq).
 *
 * @remarks The log is trimmed only through a checkpoint that stays, so every seq from the anchor
 * on can still be rebuilt exactly (anchor state + log), and a crash between any two compactions
 * leaves a loadable session. Server times follow seq order; a clock that steps back only keeps
 * entries longer, never shorter.
 */
export function planRetention(
  checkpoints: readonly CheckpointPoint[],
  now: number,
  policy: RetentionPolicy,
): RetentionPlan {
  const sorted = [...checkpoints].sort((a, b) => a.seq - b.seq)
  const newest = sorted[sorted.length - 1]
  if (newest === undefined) return { trimLogThrough: 0, deleteCheckpoints: [] }
  const logCutoff = now - policy.keepLogMs
  let anchor: CheckpointPoint | undefined
  for (const checkpoint of sorted) if (checkpoint.time <= logCutoff) anchor = checkpoint
  if (anchor === undefined) return { trimLogThrough: 0, deleteCheckpoints: [] }
  const checkpointCutoff = now - policy.keepCheckpointsMs
  const spacing = Math.max(1, policy.checkpointSpacingMs)
  const deleteCheckpoints: number[] = []
  // Walk the coarse range newest first: the first checkpoint seen in an interval is its last one.
  const keptIntervals = new Set<number>()
  keptIntervals.add(Math.floor(anchor.time / spacing))
  for (let i = sorted.length - 1; i >= 0; i--) {
    const checkpoint = sorted[i]!
    if (checkpoint.seq >= anchor.seq) continue
    const interval = Math.floor(checkpoint.time / spacing)
    if (checkpoint.time < checkpointCutoff || keptIntervals.has(interval)) {
      deleteCheckpoints.push(checkpoint.seq)
    } else {
      keptIntervals.add(interval)
    }
  }
  deleteCheckpoints.sort((a, b) => a - b)
  return { trimLogThrough: anchor.seq, deleteCheckpoints }
}
