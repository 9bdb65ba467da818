// One compaction of one session: fold the latest checkpoint and the log after it (through seq N)
// into a checkpoint at N, and write it with what retention deletes in one atomic batch.

import { setImmediate as nextTurn } from 'node:timers/promises'
import { ColloquyError } from '../../shared/errors.js'
import { hasSparseSeqs, listCheckpointInfo, type Store } from '../persistence/store.js'
import type { LiveSnapshot } from '../session/session.js'
import { createPacker, type Merger, unpackUpdates } from './merge.js'
import { planRetention, type RetentionPolicy } from './policy.js'

/** Options of {@link compactSession}. */
export interface CompactOptions {
  readonly store: Store
  readonly merger: Merger
  readonly retention: RetentionPolicy
  /** Fold through this seq (default: the session's last durable seq). */
  readonly throughSeq?: number
  readonly now?: () => number
  /** Log entries read per page (default {@link LOG_PAGE}). */
  readonly pageSize?: number
  /**
   * The loaded session's state newer than `afterSeq`, when it is in memory (`Session.snapshot`):
   * used instead of replaying the log when no `throughSeq` is asked for.
   */
  readonly live?: (afterSeq: number) => LiveSnapshot | undefined
}

/** How long a compaction waits for a live snapshot's seq to become durable before it fails. */
const LIVE_DURABLE_TIMEOUT_MS = 10_000

/**
 * Log entries the compactor reads at once. Between pages it yields to the event loop, so reading a
 * 100,000-entry log never holds it for more than a few ms (one read took ~100 ms of one turn).
 */
export const LOG_PAGE = 2048

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
 * - Keeps the event loop free for live sessions: the log is read in pages packed straight into one
 *   buffer that the merger takes without a copy (a worker thread, by transfer), retention is planned
 *   from checkpoint seqs and times without loading their states, and the store builds the big
 *   batch in slices.
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
  if (options.throughSeq === undefined && options.live !== undefined) {
    const [latest] = await store.listCheckpoints(sessionId, { reverse: true, limit: 1 })
    const baseSeq = latest?.seq ?? 0
    const live = options.live(baseSeq)
    if (live !== undefined)
      return compactFromSnapshot(sessionId, live, baseSeq, store, now(), options, started)
  }
  const target = Math.min(options.throughSeq ?? meta.lastSeq, meta.lastSeq)
  const [base] = await store.listCheckpoints(sessionId, { toSeq: target, reverse: true, limit: 1 })
  const baseSeq = base?.seq ?? 0
  if (target <= baseSeq) return undefined
  const pageSize = Math.max(1, options.pageSize ?? LOG_PAGE)
  // Size the buffer from the meta's average entry; it grows if the estimate is short.
  const share = meta.logCount === 0 ? 0 : meta.logBytes / meta.logCount
  // A sparse log's seq span says nothing of its entry count: its retained entries bound it.
  const expected = hasSparseSeqs(store) ? meta.logCount : target - baseSeq
  const packer = createPacker((base?.state.byteLength ?? 0) + Math.ceil(share * expected * 1.1), expected + 1)
  if (base !== undefined) packer.push(base.state)
  // A dense log must hold every seq of base+1…target; a sparse one has gaps by design, and is
  // complete when nothing above the base was trimmed.
  const isSparse = hasSparseSeqs(store)
  if (isSparse && (meta.trimmedThrough ?? 0) > baseSeq) {
    throw new ColloquyError(
      'internal',
      `session ${sessionId}: log trimmed through ${meta.trimmedThrough} above checkpoint ${baseSeq}; not compacting`,
    )
  }
  let nextSeq = baseSeq + 1
  let lastTime = 0
  let folded = 0
  while (nextSeq <= target) {
    const page = await store.readLog(sessionId, { fromSeq: nextSeq, toSeq: target, limit: pageSize })
    let isBroken = false
    for (const entry of page) {
      if (!isSparse && entry.seq !== nextSeq) {
        isBroken = true
        break
      }
      packer.push(entry.update)
      lastTime = entry.time
      folded++
      nextSeq = entry.seq + 1
    }
    if (isBroken || page.length < pageSize) break
    // Let live sessions run between pages.
    if (nextSeq <= target) await nextTurn()
  }
  if (isSparse) {
    // The checkpoint stands for every seq ≤ target; nothing folded means nothing to do.
    if (folded === 0) return undefined
    // Another compactor may have trimmed while we read (a lease expired, or none): its trim marker
    // is stored before its purge, so if we missed purged entries we see the marker now.
    const after = await store.getMeta(sessionId)
    if (after === undefined) throw new ColloquyError('session-not-found', `no session ${sessionId}`)
    if ((after.trimmedThrough ?? 0) > baseSeq) {
      throw new ColloquyError(
        'internal',
        `session ${sessionId}: log trimmed through ${after.trimmedThrough} while folding from ${baseSeq}; not compacting`,
      )
    }
    nextSeq = target + 1
  }
  if (nextSeq !== target + 1) {
    throw new ColloquyError(
      'internal',
      `session ${sessionId}: log ${baseSeq + 1}…${target} is incomplete (gap at ${nextSeq}); not compacting`,
    )
  }
  const packed = packer.finish()
  const state = await (merger.mergePacked === undefined
    ? merger.merge(unpackUpdates(packed))
    : merger.mergePacked(packed))
  // The checkpoint's time is when its last update arrived, so "state at time T" can use it.
  const checkpoint = { seq: target, time: lastTime, state }
  const plan = await writeCheckpoint(sessionId, checkpoint, store, now(), options.retention)
  return {
    sessionId,
    seq: target,
    baseSeq,
    folded,
    stateBytes: state.byteLength,
    trimmedLogThrough: plan.trimLogThrough,
    deletedCheckpoints: plan.deleteCheckpoints,
    durationMs: performance.now() - started,
  }
}

/** Plans retention with `checkpoint` added and writes both in one batch; returns the plan. */
async function writeCheckpoint(
  sessionId: string,
  checkpoint: { readonly seq: number; readonly time: number; readonly state: Uint8Array },
  store: Store,
  now: number,
  retention: RetentionPolicy,
): Promise<ReturnType<typeof planRetention>> {
  // Seqs and times only: the states of older checkpoints are not needed to plan retention.
  const existing = await listCheckpointInfo(store, sessionId)
  const points = existing.filter((cp) => cp.seq !== checkpoint.seq).map(({ seq, time }) => ({ seq, time }))
  points.push({ seq: checkpoint.seq, time: checkpoint.time })
  const plan = planRetention(points, now, retention)
  await store.putCheckpoint(sessionId, checkpoint, {
    // A delete that ran while we folded wins: the checkpoint must not resurrect the session.
    requireExisting: true,
    ...(plan.trimLogThrough > 0 ? { trimLogThrough: plan.trimLogThrough } : {}),
    ...(plan.deleteCheckpoints.length > 0 ? { deleteCheckpoints: plan.deleteCheckpoints } : {}),
  })
  return plan
}

/**
 * Writes `live` as the checkpoint once its seq is durable (waiting on the session, without hurrying
 * the group commit), after checking that the stored meta holds that seq.
 */
async function compactFromSnapshot(
  sessionId: string,
  live: LiveSnapshot,
  baseSeq: number,
  store: Store,
  now: number,
  options: CompactOptions,
  started: number,
): Promise<CompactResult> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ColloquyError('storage-unavailable', 'live snapshot not durable in time')),
      LIVE_DURABLE_TIMEOUT_MS,
    )
  })
  let seq: number
  try {
    // The log gives the snapshot's last update its seq when it commits: only then is it known.
    seq = await Promise.race([live.durable(), timeout])
  } finally {
    clearTimeout(timer)
  }
  // Read after the wait: the stored log must hold every seq the checkpoint claims.
  const meta = await store.getMeta(sessionId)
  if (meta === undefined) throw new ColloquyError('session-not-found', `no session ${sessionId}`)
  if (meta.lastSeq < seq || seq <= baseSeq) {
    throw new ColloquyError('internal', `session ${sessionId}: seq ${seq} is not stored; not compacting`)
  }
  const checkpoint = { seq, time: live.time, state: live.state }
  const plan = await writeCheckpoint(sessionId, checkpoint, store, now, options.retention)
  return {
    sessionId,
    seq,
    baseSeq,
    // Live snapshots are taken only from dense logs (see Session.snapshot).
    folded: seq - baseSeq,
    stateBytes: live.state.byteLength,
    trimmedLogThrough: plan.trimLogThrough,
    deletedCheckpoints: plan.deleteCheckpoints,
    durationMs: performance.now() - started,
  }
}
