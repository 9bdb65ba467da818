import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { compactSession } from '../../../server/compaction/compactor.js'
import { createInlineMerger } from '../../../server/compaction/merge.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { AppendEntry, Store } from '../../../server/persistence/store.js'
import { ColloquyError } from '../../../shared/errors.js'

const retention = { keepLogMs: 3_600_000, keepCheckpointsMs: 86_400_000, checkpointSpacingMs: 60_000 }

/** Real updates, one insert each, one per tag (times 1000 + tag); the store numbers them 1, 2, …. */
function updates(tags: readonly number[]): { entries: AppendEntry[]; doc: Y.Doc } {
  const doc = new Y.Doc()
  const entries: AppendEntry[] = []
  doc.on('update', (update: Uint8Array) => {
    const tag = tags[entries.length]!
    entries.push({ sessionId: 'paged', time: 1_000 + tag, update })
  })
  for (let i = 0; i < tags.length; i++) doc.getText('t').insert(doc.getText('t').length, `${i},`)
  return { entries, doc }
}

describe('compactSession paging', () => {
  it('folds a log read across many small pages into the same state', async () => {
    const store = createMemoryStore()
    const { entries, doc } = updates(Array.from({ length: 10 }, (_, i) => i + 1))
    await store.append(entries)
    const result = await compactSession('paged', {
      store,
      merger: createInlineMerger(),
      retention,
      pageSize: 3,
    })
    expect(result?.seq).toBe(10)
    expect(result?.folded).toBe(10)
    const loaded = await store.load('paged')
    const rebuilt = new Y.Doc()
    Y.applyUpdate(rebuilt, loaded.checkpoint!.state)
    expect(rebuilt.getText('t').toString()).toBe(doc.getText('t').toString())
    expect(Y.encodeStateVector(rebuilt)).toEqual(Y.encodeStateVector(doc))
  })

  it('refuses to compact a dense log with a gap, whatever page the gap falls on', async () => {
    const inner = createMemoryStore()
    const { entries } = updates([1, 2, 3, 4, 5, 6, 7, 8])
    await inner.append(entries)
    // Entry 5 lost (a damaged disk): a dense store's reads now skip a seq.
    const store: Store = {
      ...inner,
      readLog: async (sessionId, range) =>
        (await inner.readLog(sessionId, range)).filter((entry) => entry.seq !== 5),
    }
    const error = await compactSession('paged', {
      store,
      merger: createInlineMerger(),
      retention,
      pageSize: 3,
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(ColloquyError)
    expect((error as ColloquyError).message).toContain('gap at 5')
    expect((await inner.load('paged')).checkpoint).toBeUndefined()
  })
})
