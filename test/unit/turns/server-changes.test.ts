// The registry's server changes, as the turn service uses them to show turns: a stored session not
// in memory is loaded for the change and unloads again; a session that is not stored (never
// written, or deleted) is never created by one.

import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { readTurnEntry, writeTurnEntry } from '../../../shared/turns/document.js'
import { createMemoryHarness, type MemoryHarness } from '../../helpers/memory-server.js'

const entry = { turnId: 'gpu~s~m', pool: 'gpu', state: 'queued' as const, attempts: 0, updatedAt: 1 }
let harness: MemoryHarness

afterEach(async () => {
  await harness.close()
})

describe('server changes to sessions', () => {
  it('loads a stored session that is not in memory, changes it and stores the change', async () => {
    harness = createMemoryHarness()
    const doc = new Y.Doc()
    doc.getArray('messages').push(['hello'])
    await harness.store.append([{ sessionId: 'stored', seq: 1, time: 1, update: Y.encodeStateAsUpdate(doc) }])
    const isDone = await harness.registry.changeAsServer('stored', (d, origin) =>
      writeTurnEntry(d, 'm', entry, origin),
    )
    expect(isDone).toBe(true)
    await harness.settle()
    const stored = await harness.store.load('stored')
    const replayed = new Y.Doc()
    for (const logged of stored.log) Y.applyUpdate(replayed, logged.update)
    expect(readTurnEntry(replayed, 'm')?.state).toBe('queued')
  })

  it('never creates a session that is not stored (regression: a turn entry brought a deleted session back)', async () => {
    harness = createMemoryHarness()
    const isDone = await harness.registry.changeAsServer('ghost', (d, origin) =>
      writeTurnEntry(d, 'm', entry, origin),
    )
    expect(isDone).toBe(false)
    await harness.settle()
    expect(await harness.store.getMeta('ghost')).toBeUndefined()
    expect(harness.registry.get('ghost')).toBeUndefined()
  })
})
