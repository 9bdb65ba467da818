// Seeded property: random histories (several writers, concurrent edits, deletes) are stored as a
// log; compaction runs while more updates are appended. Loading after compaction gives the same
// content and state vector as before, and the state at every seq K in the retained window equals
// the document built from the first K updates, before and after compaction.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { compactSession } from '../../server/compaction/compactor.js'
import { createInlineMerger, type Merger } from '../../server/compaction/merge.js'
import { readStateAt } from '../../server/history/state.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'

type Edit =
  | { kind: 'insert'; writer: number; at: number; text: string }
  | { kind: 'delete'; writer: number; at: number; length: number }
  | { kind: 'set'; writer: number; key: string; value: number }
  | { kind: 'sync'; from: number; to: number }

const WRITERS = 3

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    writer: fc.nat(WRITERS - 1),
    at: fc.nat(),
    text: fc.string({ minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    writer: fc.nat(WRITERS - 1),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 3 }),
  }),
  fc.record({
    kind: fc.constant('set' as const),
    writer: fc.nat(WRITERS - 1),
    key: fc.constantFrom('a', 'b', 'c'),
    value: fc.nat(100),
  }),
  fc.record({ kind: fc.constant('sync' as const), from: fc.nat(WRITERS - 1), to: fc.nat(WRITERS - 1) }),
)

/** Runs the edits on several writer docs and returns every update in the order the server got them. */
function historyOf(edits: readonly Edit[]): Uint8Array[] {
  const docs = Array.from({ length: WRITERS }, (_, i) => {
    const doc = new Y.Doc()
    doc.clientID = i + 1
    return doc
  })
  const updates: Uint8Array[] = []
  docs.forEach((doc) => {
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== 'sync') updates.push(update)
    })
  })
  for (const step of edits) {
    if (step.kind === 'sync') {
      const from = docs[step.from]!
      const to = docs[step.to]!
      Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)), 'sync')
      continue
    }
    const doc = docs[step.writer]!
    if (step.kind === 'insert') {
      const text = doc.getText('t')
      text.insert(step.at % (text.length + 1), step.text)
    } else if (step.kind === 'delete') {
      const text = doc.getText('t')
      if (text.length === 0) continue
      const at = step.at % text.length
      text.delete(at, Math.min(step.length, text.length - at))
    } else {
      doc.getMap('m').set(step.key, step.value)
    }
  }
  return updates
}

function docOf(updates: readonly Uint8Array[]): Y.Doc {
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const update of updates) Y.applyUpdate(doc, update)
  })
  return doc
}

function snapshot(doc: Y.Doc): { text: string; map: unknown; stateVector: number[] } {
  return {
    text: doc.getText('t').toString(),
    map: doc.getMap('m').toJSON(),
    stateVector: [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort().flat(),
  }
}

async function loadedSnapshot(store: Store, sessionId: string) {
  const stored = await store.load(sessionId)
  const inputs = stored.checkpoint === undefined ? [] : [stored.checkpoint.state]
  for (const entry of stored.log) inputs.push(entry.update)
  return snapshot(docOf(inputs))
}

/** A merger that lets the test append while a merge is "running". */
function pausingMerger(inner: Merger, duringMerge: () => Promise<void>): Merger {
  return {
    async merge(updates) {
      await duringMerge()
      return inner.merge(updates)
    },
    close: () => inner.close(),
  }
}

describe('compaction and history (property)', () => {
  it('keeps load and state-at-seq equivalent across compactions with concurrent appends', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`compaction property seed: ${seed}`)
    await fc.assert(
      fc.asyncProperty(
        fc.array(edit, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        async (edits, cuts, isTrimming) => {
          const updates = historyOf(edits)
          if (updates.length === 0) return
          const store = createMemoryStore()
          const sessionId = 's'
          let appended = 0
          // Server times: one ms per update, starting at 1000.
          const appendUpTo = async (count: number): Promise<void> => {
            const entries = []
            for (; appended < Math.min(count, updates.length); appended++) {
              // The store numbers them appended + 1 (a dense store).
              entries.push({
                sessionId,
                time: 1000 + appended,
                update: updates[appended]!,
              })
            }
            if (entries.length > 0) await store.append(entries)
          }
          const inline = createInlineMerger()
          const points = [...new Set(cuts.map((cut) => 1 + (cut % updates.length)))].sort((a, b) => a - b)
          const retention = isTrimming
            ? // Keep only what the latest checkpoint needs: everything older is trimmed at once.
              { keepLogMs: 0, keepCheckpointsMs: 0, checkpointSpacingMs: 1 }
            : { keepLogMs: 1e12, keepCheckpointsMs: 1e12, checkpointSpacingMs: 1 }
          let anchor = 0
          for (const [i, point] of points.entries()) {
            await appendUpTo(point)
            const before = await loadedSnapshot(store, sessionId)
            const next = points[i + 1] ?? updates.length
            // Updates arrive while the merge runs; the checkpoint still covers only `point`.
            const merger = pausingMerger(inline, () => appendUpTo(Math.ceil((point + next) / 2)))
            const result = await compactSession(sessionId, { store, merger, retention, now: () => 1e9 })
            if (result !== undefined) {
              expect(result.seq).toBe(point)
              if (isTrimming) anchor = point
            }
            const after = await loadedSnapshot(store, sessionId)
            expect(after, 'load after compaction').toEqual(snapshot(docOf(updates.slice(0, appended))))
            expect(before, 'load before compaction').toEqual(snapshot(docOf(updates.slice(0, point))))
          }
          await appendUpTo(updates.length)
          expect(await loadedSnapshot(store, sessionId)).toEqual(snapshot(docOf(updates)))
          // State at every seq of the retained window equals the prefix document.
          for (let k = anchor; k <= updates.length; k++) {
            const state = await readStateAt({ store, merger: inline }, sessionId, { seq: k })
            expect(state.isExact).toBe(true)
            expect(snapshot(docOf([state.update])), `state at ${k}`).toEqual(
              snapshot(docOf(updates.slice(0, k))),
            )
          }
          if (anchor > 1) {
            await expect(
              readStateAt({ store, merger: inline }, sessionId, { seq: anchor - 1 }),
            ).rejects.toMatchObject({
              code: 'history-trimmed',
            })
          }
          const meta = await store.getMeta(sessionId)
          expect(meta?.lastSeq).toBe(updates.length)
          expect(meta?.logCount).toBe(updates.length - anchor)
        },
      ),
      { seed, numRuns: 100 },
    )
  })
})
