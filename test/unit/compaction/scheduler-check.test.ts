// The compaction check reads a session's meta only when the session may be due: a session that
// commits a little is read rarely, one that passes the policy compacts at the same check as with a
// read every interval, and one that grows through other nodes is read within maxCheckAgeMs.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createInlineMerger } from '../../../server/compaction/merge.js'
import { type CompactionPolicy, DEFAULT_RETENTION } from '../../../server/compaction/policy.js'
import {
  type CompactionSchedulerOptions,
  createCompactionScheduler,
} from '../../../server/compaction/scheduler.js'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { AppendEntry } from '../../../server/persistence/store.js'

/** One second of writes: through this node (noted) and through others (stored only). */
interface Tick {
  readonly local: number
  readonly remote?: number
  /** Characters per update (bytes grow with it). */
  readonly size?: number
}

interface Outcome {
  /** The tick (1-based) of each compaction. */
  readonly compactedAt: readonly number[]
  readonly metaReads: number
}

/** Runs one check per simulated second over `ticks`, a store counting its meta reads. */
async function simulate(
  ticks: readonly Tick[],
  policy: CompactionPolicy,
  options: Partial<Pick<CompactionSchedulerOptions, 'checkAheadFactor' | 'maxCheckAgeMs'>> = {},
): Promise<Outcome> {
  const memory = createMemoryStore()
  let metaReads = 0
  const store = {
    ...memory,
    getMeta: (sessionId: string) => {
      metaReads++
      return memory.getMeta(sessionId)
    },
  }
  let clock = 1_000_000
  let tick = 0
  const compactedAt: number[] = []
  const scheduler = createCompactionScheduler({
    store,
    merger: createInlineMerger(),
    policy,
    retention: DEFAULT_RETENTION,
    intervalMs: 0,
    logger: createSilentLogger(),
    now: () => clock,
    onCompacted: () => compactedAt.push(tick),
    ...options,
  })
  const doc = new Y.Doc()
  // A fixed client id: an update's size depends on it (a varint), and the byte rule must see the
  // same sizes in every simulation it compares (a random id made one run compact a tick later).
  doc.clientID = 7
  const text = doc.getText('t')
  const write = (count: number, size: number): AppendEntry[] => {
    const out: AppendEntry[] = []
    const onUpdate = (update: Uint8Array) => out.push({ sessionId: 's', time: clock, update })
    doc.on('update', onUpdate)
    for (let i = 0; i < count; i++) text.insert(text.length, 'x'.repeat(size))
    doc.off('update', onUpdate)
    return out
  }
  for (const step of ticks) {
    tick++
    clock += 1_000
    const remote = write(step.remote ?? 0, step.size ?? 1)
    if (remote.length > 0) await memory.append(remote)
    const local = write(step.local, step.size ?? 1)
    if (local.length > 0) {
      const seqs = await memory.append(local)
      scheduler.noteCommit(new Map([['s', seqs[seqs.length - 1]]]), local)
    }
    await scheduler.runOnce()
  }
  await scheduler.close()
  return { compactedAt, metaReads }
}

const POLICY: CompactionPolicy = { minUpdates: 2_000, maxUpdates: 10_000, minIntervalMs: 10_000 }

describe('the compaction check', () => {
  it('reads the meta of a session that commits a few updates a second about once per maxCheckAgeMs', async () => {
    const ticks = Array.from({ length: 120 }, () => ({ local: 5 }))
    const gated = await simulate(ticks, POLICY)
    // The first check, then one per 30 s: not one per second.
    expect(gated.metaReads).toBeGreaterThanOrEqual(4)
    expect(gated.metaReads).toBeLessThanOrEqual(5)
    expect(gated.compactedAt).toEqual([])
    const everyInterval = await simulate(ticks, POLICY, { maxCheckAgeMs: 0 })
    expect(everyInterval.metaReads).toBe(120)
  })

  it('compacts at the same checks as a read every interval when only this node writes', async () => {
    // Bursts and pauses, small and large updates: the count, bytes and interval rules all decide.
    const policy: CompactionPolicy = { minUpdates: 100, maxUpdates: 400, minIntervalMs: 5_000 }
    const ticks: Tick[] = []
    for (let i = 0; i < 90; i++) {
      const phase = Math.floor(i / 15) % 3
      ticks.push(phase === 0 ? { local: 40, size: 1 } : phase === 1 ? { local: 3, size: 200 } : { local: 0 })
    }
    const everyInterval = await simulate(ticks, policy, { maxCheckAgeMs: 0, checkAheadFactor: 1 })
    const gated = await simulate(ticks, policy, { checkAheadFactor: 1 })
    expect(everyInterval.compactedAt.length).toBeGreaterThan(2)
    expect(gated.compactedAt).toEqual(everyInterval.compactedAt)
    expect(gated.metaReads).toBeLessThan(everyInterval.metaReads / 2)
    // The default factor (other nodes allowed for) reads more often, and compacts no later.
    const ahead = await simulate(ticks, policy)
    expect(ahead.compactedAt).toEqual(everyInterval.compactedAt)
    expect(ahead.metaReads).toBeLessThan(everyInterval.metaReads)
  })

  it('compacts a session within one interval of passing the threshold', async () => {
    const ticks = Array.from({ length: 20 }, () => ({ local: 300 }))
    const gated = await simulate(ticks, POLICY)
    // 2,000 updates are stored at tick 7: compacted by that tick's check.
    expect(gated.compactedAt[0]).toBe(7)
  })

  it('reads a session growing through other nodes within maxCheckAgeMs', async () => {
    // One local update a second, 200 a second through other nodes: due at tick 10 (2,000 stored),
    // which local growth alone would not show for minutes.
    const ticks = Array.from({ length: 45 }, () => ({ local: 1, remote: 200 }))
    const gated = await simulate(ticks, POLICY, { maxCheckAgeMs: 10_000 })
    expect(gated.compactedAt[0]).toBeGreaterThanOrEqual(10)
    expect(gated.compactedAt[0]).toBeLessThanOrEqual(11)
    const slow = await simulate(ticks, POLICY)
    // Read at tick 1, then at tick 31 (30 s later): compacted then.
    expect(slow.compactedAt[0]).toBe(31)
  })
})
