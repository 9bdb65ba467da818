// One compaction of one session: fold the latest checkpoint and the log after it (through seq N)
// into a checkpoint at N, and write it with what retention deletes in one atomic batch.

import { ColloquyError } from '../../shared/errors.js'
import type { Store } from '../persistence/store.js'
import type { Merger } from './merge.js'
import { planRetention, type RetentionPolicy } from './policy.js'

/** Options of {@link compactSession}. */
export interface CompactOptions {
  readonly store: Store
  readonly merger: Merger
  readonly retention: RetentionPolicy
  /** Fold through this seq (default: the session's last durable seq). */
  readonly throughSeq?: number
  readonly now?: () => number
}

/** What one compaction did. */
export interface CompactResult {
  readonly sessionId: string
  /** The seq of the checkpoint written. */
  readonly seq: number
  /** The seq of the checkpoint it started from (0: none). */
  readonly baseSeq: number
  /** Log entries folded into the new checkpoint. */
  readonly folded: number
  readonly stateBytes: number
  /** Log entries with seq ≤ this were deleted (0: none). */
  readonly trimmedLogThrough: number
  readonly deletedCheckpoints: readonly number[]
  readonly durationMs: number
}

/**
 * Compacts one session; resolves `undefined` when there is nothing to do.
 *
 * @remarks
 * - Reads only what is durable (the meta's `lastSeq`): updates still in the group commit, or
 *   arriving while the merge runs, get higher seqs and are never touched.
 * - The new checkpoint, the log trim and the checkpoint deletes are one `putCheckpoint` batch:
 *   a crash before it changes nothing, after it the checkpoint covers everything trimmed.
 * - Refuses (internal error) a log with a gap between the base checkpoint and N rather than
 *   write a checkpoint that claims updates it does not hold.
 */
export async function compactSession(
  sessionId: string,
  options: CompactOptions,
): Promise<CompactResult | undefined> {
  const { store, merger } = options
  const now = options.now ?? Date.now
  const started = performance.now()
  const meta = await store.getMeta(sessionId)
  if (meta === undefined) throw new ColloquyError('session-not-found', `no session ${sessionId}`)
  const target = Math.min(options.throughSeq ?? meta.lastSeq, meta.lastSeq)
  const [base] = await store.listCheckpoints(sessionId, { toSeq: target, reverse: true, limit: 1 })
  const baseSeq = base?.seq ?? 0
  if (target <= baseSeq) return undefined
  const log = await store.readLog(sessionId, { fromSeq: baseSeq + 1, toSeq: target })
  const first = log[0]
  const last = log[log.length - 1]
  if (
    first === undefined ||
    last === undefined ||
    first.seq !== baseSeq + 1 ||
    last.seq !== target ||
    log.length !== target - baseSeq
  ) {
    throw new ColloquyError(
      'internal',
      `session ${sessionId}: log ${baseSeq + 1}…${target} is incomplete (${log.length} entries); not compacting`,
    )
  }
  const inputs = base === undefined ? [] : [base.state]
  for (const entry of log) inputs.push(entry.update)
  const state = await merger.merge(inputs)
  // The checkpoint's time is when its last update arrived, so "state at time T" can use it.
  const checkpoint = { seq: target, time: last.time, state }
  const existing = await store.listCheckpoints(sessionId)
  const points = existing.filter((cp) => cp.seq !== target).map(({ seq, time }) => ({ seq, time }))
  points.push({ seq: target, time: checkpoint.time })
  const plan = planRetention(points, now(), options.retention)
  await store.putCheckpoint(sessionId, checkpoint, {
    ...(plan.trimLogThrough > 0 ? { trimLogThrough: plan.trimLogThrough } : {}),
    ...(plan.deleteCheckpoints.length > 0 ? { deleteCheckpoints: plan.deleteCheckpoints } : {}),
  })
  return {
    sessionId,
    seq: target,
    baseSeq,
    folded: log.length,
    stateBytes: state.byteLength,
    trimmedLogThrough: plan.trimLogThrough,
    deletedCheckpoints: plan.deleteCheckpoints,
    durationMs: performance.now() - started,
  }
}
