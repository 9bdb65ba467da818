// A shadow log for history tests: the test writes conversation updates through one or more stores
// and keeps (seq, time, update) of each; every history read the store offers must then equal a
// replay of the shadow (or be refused as trimmed, never be wrong).

import { expect } from 'vitest'
import * as Y from 'yjs'
import { createInlineMerger } from '../../server/compaction/merge.js'
import { conversationOfState, exportConversation, forkSession } from '../../server/history/snapshots.js'
import { type HistoryDeps, readStateAt } from '../../server/history/state.js'
import type { Store } from '../../server/persistence/store.js'
import { appendMessage, readMessages } from '../../shared/conversation/index.js'
import { ColloquyError } from '../../shared/errors.js'

/** The session every shadow helper writes to. */
export const SHADOW_SESSION = 'chat'
const SESSION = SHADOW_SESSION
const EXPORTED_AT = 42

/** One update as stored: the seq the store gave it. */
export interface ShadowEntry {
  readonly seq: number
  readonly time: number
  readonly update: Uint8Array
}

/** Writes messages from two authors through two stores, one append at a time, into `shadow`. */
export async function write(
  stores: readonly Store[],
  shadow: ShadowEntry[],
  docs: Y.Doc[],
  count: number,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const writer = i % stores.length
    const doc = docs[writer]!
    let update: Uint8Array | undefined
    const capture = (bytes: Uint8Array): void => {
      update = bytes
    }
    doc.on('update', capture)
    appendMessage(doc, {
      id: `m-${shadow.length}`,
      role: 'user',
      author: { id: `w${writer}`, kind: 'device', name: `Writer ${writer}` },
      content: `message ${shadow.length}`,
      createdAt: shadow.length,
    })
    doc.off('update', capture)
    const time = 1_000 + shadow.length
    const [seq] = await stores[writer]!.append([{ sessionId: SESSION, time, update: update! }])
    shadow.push({ seq: seq!, time, update: update! })
  }
}

export function replay(shadow: readonly ShadowEntry[], through: (entry: ShadowEntry) => boolean): Y.Doc {
  const doc = new Y.Doc()
  for (const entry of shadow) if (through(entry)) Y.applyUpdate(doc, entry.update)
  return doc
}

function sameDoc(actual: Uint8Array, expected: Y.Doc, label: string): void {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, actual)
  expect(readMessages(doc), label).toEqual(readMessages(expected))
  expect(Y.encodeStateVector(doc), label).toEqual(Y.encodeStateVector(expected))
}

let forks = 0

/** Every history read the store offers equals the shadow's replay (or is refused as trimmed). */
export async function expectHistoryMatches(store: Store, shadow: readonly ShadowEntry[]): Promise<void> {
  const deps: HistoryDeps = { store, merger: createInlineMerger(), now: () => EXPORTED_AT }
  const meta = await store.getMeta(SESSION)
  const trimmedThrough = meta?.trimmedThrough ?? 0
  const last = shadow[shadow.length - 1]!
  expect(meta?.lastSeq).toBe(last.seq)
  const loaded = await store.load(SESSION)
  const rebuilt = new Y.Doc()
  if (loaded.checkpoint !== undefined) Y.applyUpdate(rebuilt, loaded.checkpoint.state)
  for (const entry of loaded.log) Y.applyUpdate(rebuilt, entry.update)
  sameDoc(
    Y.encodeStateAsUpdate(rebuilt),
    replay(shadow, () => true),
    'load',
  )
  let exact = 0
  // Every seq of the shadow, and the gap below each (sparse seqs).
  for (const entry of shadow) {
    for (const seq of [entry.seq - 1, entry.seq]) {
      try {
        const state = await readStateAt(deps, SESSION, { seq })
        sameDoc(
          state.update,
          replay(shadow, (e) => e.seq <= seq),
          `state at seq ${seq}`,
        )
        exact++
      } catch (error) {
        // Refused, never wrong: only below the trimmed part of the log.
        expect(error, `seq ${seq}`).toBeInstanceOf(ColloquyError)
        expect((error as ColloquyError).code, `seq ${seq}`).toBe('history-trimmed')
        expect(seq, `seq ${seq} refused above the trim at ${trimmedThrough}`).toBeLessThan(trimmedThrough)
      }
    }
    try {
      const state = await readStateAt(deps, SESSION, { time: entry.time })
      sameDoc(
        state.update,
        replay(shadow, (e) => e.time <= entry.time),
        `state at time ${entry.time}`,
      )
    } catch (error) {
      expect((error as ColloquyError).code, `time ${entry.time}`).toBe('history-trimmed')
      expect(entry.seq).toBeLessThan(trimmedThrough)
    }
  }
  expect(exact).toBeGreaterThan(0)
  const latest = await readStateAt(deps, SESSION, { seq: last.seq })
  const exported = await exportConversation(deps, SESSION, { seq: last.seq })
  expect(exported).toEqual(
    conversationOfState(
      { ...latest, update: Y.encodeStateAsUpdate(replay(shadow, () => true)) },
      EXPORTED_AT,
    ),
  )
  const fork = `fork-${++forks}`
  await forkSession(deps, SESSION, fork, { latest: true })
  const forked = await store.load(fork)
  sameDoc(
    forked.checkpoint!.state,
    replay(shadow, () => true),
    'fork',
  )
}
