import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  addSummary,
  readSummaries,
  SCHEMA_VERSION,
  SUMMARIES,
} from '../../../../shared/conversation/index.js'
import { agent, connectedDocs, countUpdates } from './helpers.js'

describe('addSummary', () => {
  it('appends a summary map in one update and returns its view', () => {
    const doc = new Y.Doc()
    const updates = countUpdates(doc)
    const view = addSummary(doc, {
      coversThroughId: 'm9',
      text: 'They planned a trip.',
      author: agent,
      tokens: 6,
    })
    expect(updates.count).toBe(1)
    expect(view).toEqual({
      id: view.id,
      coversThroughId: 'm9',
      text: 'They planned a trip.',
      author: agent,
      createdAt: expect.any(Number),
      tokens: 6,
    })
    expect(view.id).toMatch(/^[0-9a-f-]{36}$/)
    expect(doc.getArray<Y.Map<unknown>>(SUMMARIES).get(0).get('schemaVersion')).toBe(SCHEMA_VERSION)
  })

  it('keeps the given id and createdAt, and leaves tokens out when not given', () => {
    const doc = new Y.Doc()
    const view = addSummary(doc, { coversThroughId: 'm', text: 't', author: agent, id: 's', createdAt: 5 })
    expect(view).toEqual({ id: 's', coversThroughId: 'm', text: 't', author: agent, createdAt: 5 })
  })
})

describe('readSummaries', () => {
  it('reads summaries in the order they were added, identically on every replica', () => {
    const { a, b } = connectedDocs()
    addSummary(a, { coversThroughId: 'm1', text: 'first', author: agent, id: 's1' })
    addSummary(b, { coversThroughId: 'm5', text: 'second', author: agent, id: 's2' })
    expect(readSummaries(a).map((s) => s.id)).toEqual(['s1', 's2'])
    expect(readSummaries(b)).toEqual(readSummaries(a))
  })

  it('reads nothing from an empty document', () => {
    expect(readSummaries(new Y.Doc())).toEqual([])
  })
})
