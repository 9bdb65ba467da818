// The compaction policy and the retention plan: pure functions, checked on hand-made cases.

import { describe, expect, it } from 'vitest'
import { planRetention, shouldCompact, statsFromMeta } from '../../../server/compaction/policy.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR

describe('shouldCompact', () => {
  const policy = { minUpdates: 10, maxUpdates: 100 }
  it('waits for the minimum, then compacts when the log outweighs the checkpoint or passes the maximum', () => {
    expect(
      shouldCompact({ updatesSinceCheckpoint: 9, bytesSinceCheckpoint: 1e6, checkpointBytes: 0 }, policy),
    ).toBe(false)
    expect(
      shouldCompact({ updatesSinceCheckpoint: 10, bytesSinceCheckpoint: 500, checkpointBytes: 1000 }, policy),
    ).toBe(false)
    expect(
      shouldCompact(
        { updatesSinceCheckpoint: 10, bytesSinceCheckpoint: 1000, checkpointBytes: 1000 },
        policy,
      ),
    ).toBe(true)
    expect(
      shouldCompact({ updatesSinceCheckpoint: 100, bytesSinceCheckpoint: 1, checkpointBytes: 1e9 }, policy),
    ).toBe(true)
  })
})

describe('statsFromMeta', () => {
  const base = {
    sessionId: 's',
    checkpointSeq: 5_000,
    checkpointBytes: 40_000,
    createdAt: 0,
    updatedAt: 0,
  }

  it("takes a dense log's seq span after the checkpoint", () => {
    expect(statsFromMeta({ ...base, lastSeq: 5_300, logCount: 5_300, logBytes: 53_000 })).toEqual({
      updatesSinceCheckpoint: 300,
      bytesSinceCheckpoint: 3_000,
      checkpointBytes: 40_000,
    })
  })

  // Regression (session 8): on the JetStream store a session's seqs are a shared stream's, and the
  // entries kept below the checkpoint (retention) stay counted, so a session compacted a moment ago
  // with 12 new updates looked due again (min of span and retained count: 2,012).
  it("takes a sparse store's exact count after the checkpoint, not the retained entries", () => {
    const sparse = {
      ...base,
      lastSeq: 90_000,
      logCount: 2_012,
      logBytes: 20_120,
      trimmedThrough: 0,
      sinceCheckpoint: { count: 12, bytes: 120 },
    }
    expect(statsFromMeta(sparse)).toEqual({
      updatesSinceCheckpoint: 12,
      bytesSinceCheckpoint: 120,
      checkpointBytes: 40_000,
    })
    expect(shouldCompact(statsFromMeta(sparse), { minUpdates: 2_000, maxUpdates: 10_000 })).toBe(false)
  })
})

describe('planRetention', () => {
  const policy = { keepLogMs: 7 * DAY, keepCheckpointsMs: 90 * DAY, checkpointSpacingMs: HOUR }
  const now = 100 * DAY

  it('trims nothing while every checkpoint is younger than the log window', () => {
    expect(planRetention([{ seq: 10, time: now - DAY }], now, policy)).toEqual({
      trimLogThrough: 0,
      deleteCheckpoints: [],
    })
  })

  it('trims the log through the newest checkpoint older than the window and thins older ones', () => {
    const checkpoints = [
      { seq: 1, time: now - 95 * DAY }, // older than 90 days: deleted
      { seq: 2, time: now - 20 * DAY }, // same hour as seq 3: only the later one stays
      { seq: 3, time: now - 20 * DAY + 1 },
      { seq: 4, time: now - 10 * DAY }, // kept (its own hour)
      { seq: 5, time: now - 8 * DAY }, // the anchor: newest older than 7 days
      { seq: 6, time: now - DAY }, // above the anchor: kept
      { seq: 7, time: now }, // being written
    ]
    expect(planRetention(checkpoints, now, policy)).toEqual({ trimLogThrough: 5, deleteCheckpoints: [1, 2] })
  })

  it('keeps only the latest checkpoint when nothing is retained', () => {
    const none = { keepLogMs: 0, keepCheckpointsMs: 0, checkpointSpacingMs: 1 }
    expect(
      planRetention(
        [
          { seq: 3, time: 5 },
          { seq: 8, time: 9 },
        ],
        10,
        none,
      ),
    ).toEqual({
      trimLogThrough: 8,
      deleteCheckpoints: [3],
    })
  })
})

describe('shouldCompact with a minimum interval', () => {
  const policy = { minUpdates: 10, maxUpdates: 100, minIntervalMs: 1_000 }
  const due = { updatesSinceCheckpoint: 100, bytesSinceCheckpoint: 1, checkpointBytes: 1e9 }
  it('holds a due session back inside the interval, and lets it go after it or when 5 × the maximum wait', () => {
    expect(shouldCompact(due, policy)).toBe(true)
    expect(shouldCompact(due, policy, 999)).toBe(false)
    expect(shouldCompact(due, policy, 1_000)).toBe(true)
    expect(shouldCompact({ ...due, updatesSinceCheckpoint: 499 }, policy, 10)).toBe(false)
    expect(shouldCompact({ ...due, updatesSinceCheckpoint: 500 }, policy, 10)).toBe(true)
  })
})
