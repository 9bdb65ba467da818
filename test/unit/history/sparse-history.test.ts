// History over a sparse log (seqs with gaps, as a cluster store numbers them) without a cluster:
// the memory store with a seq step of 7. After every compaction (each trimming the log), state at
// every seq and at the gaps, state at time, load, export and fork equal a replay of a shadow log;
// the log from a seq refuses only what was trimmed. Also the store contract, sparse.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { compactSession } from '../../../server/compaction/compactor.js'
import { createInlineMerger } from '../../../server/compaction/merge.js'
import { readLogFrom } from '../../../server/history/state.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import { runStoreContract } from '../../contract/store-contract.js'
import {
  expectHistoryMatches,
  SHADOW_SESSION,
  type ShadowEntry,
  write,
} from '../../helpers/shadow-history.js'

const retention = { keepLogMs: 0, keepCheckpointsMs: 10 * 365 * 86_400_000, checkpointSpacingMs: 0 }

runStoreContract('memory, sparse (seq step 7)', async () => {
  const store = createMemoryStore({ seqStep: 7 })
  return { store, cleanup: () => store.close() }
})

describe('history over a sparse log', () => {
  it('matches a replay of the shadow log after every compaction, and refuses only what was trimmed', async () => {
    const store = createMemoryStore({ seqStep: 7 })
    const shadow: ShadowEntry[] = []
    const docs = [new Y.Doc(), new Y.Doc()]
    const merger = createInlineMerger()
    // Bounded: 3 rounds of 8 appends from two writers, a trimming compaction after each.
    for (let round = 0; round < 3; round++) {
      await write([store, store], shadow, docs, 8)
      expect(shadow.map((entry) => entry.seq % 7)).toEqual(shadow.map(() => 0))
      const result = await compactSession(SHADOW_SESSION, {
        store,
        merger,
        retention,
        now: () => 1e9,
        pageSize: 3,
      })
      expect(result?.seq).toBe(shadow[shadow.length - 1]!.seq)
      await write([store, store], shadow, docs, 2)
      await expectHistoryMatches(store, shadow)
      const trimmedThrough = (await store.getMeta(SHADOW_SESSION))?.trimmedThrough ?? 0
      expect(trimmedThrough).toBe(result?.seq)
      // The log from just above the trim is whole; from the trim or below it is refused.
      const tail: number[] = []
      for await (const entry of readLogFrom(store, SHADOW_SESSION, { fromSeq: trimmedThrough + 1 }))
        tail.push(entry.seq)
      expect(tail).toEqual(shadow.filter((entry) => entry.seq > trimmedThrough).map((entry) => entry.seq))
      await expect(async () => {
        for await (const _ of readLogFrom(store, SHADOW_SESSION, { fromSeq: trimmedThrough })) break
      }).rejects.toMatchObject({ code: 'history-trimmed' })
    }
  })
})
