// A struct left pending for good (it names content that never arrives) stays in the document's
// pending update; automatic turns read that update's ranges to tell who wrote a message, and must
// do it once per pending update, not once per transaction: else every token streamed into the
// session would pay for the pending update's size.

import { describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'

const parses = vi.hoisted(() => ({ count: 0 }))
vi.mock('yjs', async (importOriginal) => {
  const original = await importOriginal<typeof import('yjs')>()
  return {
    ...original,
    parseUpdateMetaV2: (update: Uint8Array) => {
      parses.count++
      return original.parseUpdateMetaV2(update)
    },
  }
})

const { createSilentLogger } = await import('../../../server/observability/log.js')
const { createAutoTurns } = await import('../../../server/turns/auto-turns.js')
const { appendMessage } = await import('../../../shared/conversation/index.js')

describe('automatic turns beside a struct pending for good', () => {
  it('read the pending update once, not once per transaction', () => {
    const auto = createAutoTurns({
      rules: [{ pool: 'gpu', sessionPrefix: '' }],
      create: async () => {},
      refused: () => {},
      logger: createSilentLogger(),
    })
    const doc = new Y.Doc()
    auto.watch('s1', doc)
    // A message appended after content the server never gets: pending for good.
    const elsewhere = new Y.Doc()
    appendMessage(elsewhere, { id: 'never', role: 'user', author: { id: 'x', kind: 'device' }, content: 'x' })
    const before = Y.encodeStateVector(elsewhere)
    appendMessage(elsewhere, {
      id: 'pending',
      role: 'user',
      author: { id: 'x', kind: 'device' },
      content: 'y',
    })
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(elsewhere, before))
    expect(doc.store.pendingStructs).not.toBeNull()
    const text = doc.getText('streamed')
    for (let i = 0; i < 100; i++) text.insert(text.length, 'token ')
    expect(parses.count).toBe(1)
  })
})
