// The compaction scheduler's spacing: a session compacted a moment ago waits out the policy's
// interval, is checked again without new writes, and compacts once the interval has passed.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createInlineMerger } from '../../../server/compaction/merge.js'
import { DEFAULT_RETENTION } from '../../../server/compaction/policy.js'
import { createCompactionScheduler } from '../../../server/compaction/scheduler.js'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'

function updates(count: number): Uint8Array[] {
  const doc = new Y.Doc()
  const out: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => out.push(update))
  for (let i = 0; i < count; i++) doc.getText('t').insert(i, 'x')
  return out
}

describe('createCompactionScheduler', () => {
  it('compacts a due session at most once per minIntervalMs, and again once it has passed', async () => {
    const store = createMemoryStore()
    let clock = 1_000_000
    const compacted: number[] = []
    const scheduler = createCompactionScheduler({
      store,
      merger: createInlineMerger(),
      policy: { minUpdates: 10, maxUpdates: 20, minIntervalMs: 5_000 },
      retention: DEFAULT_RETENTION,
      intervalMs: 0,
      logger: createSilentLogger(),
      now: () => clock,
      onCompacted: (result) => compacted.push(result.seq),
    })
    const all = updates(60)
    let seq = 0
    const append = async (count: number) => {
      const entries = all.slice(seq, seq + count).map((update) => ({ sessionId: 's', time: clock, update }))
      seq += entries.length
      await store.append(entries)
      scheduler.noteCommit(new Map([['s', seq]]))
    }
    await append(20)
    await scheduler.runOnce()
    expect(compacted).toEqual([20])
    // Due again (20 more), but 1 s after the last compaction: held back, not forgotten.
    clock += 1_000
    await append(20)
    await scheduler.runOnce()
    expect(compacted).toEqual([20])
    // No new writes; the interval passes; the next check compacts it.
    clock += 4_000
    await scheduler.runOnce()
    expect(compacted).toEqual([20, 40])
    await scheduler.close()
  })
})
