import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  contextWindow,
  findMessageMap,
  MESSAGES,
  observeMessages,
  readMessage,
  readMessages,
  readSessionInfo,
  readSummaries,
  requestCancel,
  SESSION,
  SUMMARIES,
  setMessageStatus,
} from '../../../../shared/conversation/index.js'
import { bob } from './helpers.js'

/** Pushes hand-written entries into the messages array, as a peer that does not use the helpers would. */
function handWritten(doc: Y.Doc, entries: readonly unknown[]): void {
  const array = doc.getArray<unknown>(MESSAGES)
  doc.transact(() => {
    for (const entry of entries) {
      if (entry instanceof Y.AbstractType || !isRecord(entry)) {
        array.push([entry])
        continue
      }
      const map = new Y.Map<unknown>()
      array.push([map])
      for (const [key, value] of Object.entries(entry)) map.set(key, value)
    }
  })
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

describe('message readers on foreign data', () => {
  it('read an empty map with every default', () => {
    const doc = new Y.Doc()
    handWritten(doc, [{}])
    const [view] = readMessages(doc)
    const item = doc.getArray<Y.Map<unknown>>(MESSAGES).get(0)._item!
    expect(view).toEqual({
      id: `yjs-${item.id.client}-${item.id.clock}`,
      index: 0,
      role: 'user',
      author: { id: 'unknown', kind: 'device' },
      createdAt: 0,
      content: '',
      status: 'complete',
      metadata: {},
    })
  })

  it('give a map without an id the same fallback id on every replica, and find it by that id', () => {
    const a = new Y.Doc()
    handWritten(a, [{ content: 'no id' }])
    const b = new Y.Doc()
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    const id = readMessages(a)[0]!.id
    expect(readMessages(b)[0]!.id).toBe(id)
    expect(readMessage(b, id)?.content).toBe('no id')
    expect(setMessageStatus(b, id, 'error', { error: 'x' })).toBe(true)
  })

  it('replace ill-typed fields with defaults and never throw', () => {
    const doc = new Y.Doc()
    handWritten(doc, [
      {
        id: 42,
        role: 'wizard',
        author: { id: 7, kind: 'robot', name: 3 },
        createdAt: 'yesterday',
        updatedAt: 'now',
        content: 99,
        status: 'finished',
        error: { message: 'not a string' },
        metadata: {
          model: 5,
          promptTokens: -1,
          completionTokens: 'many',
          toolCalls: 'none',
          replyTo: 1,
          extra: 'kept',
        },
      },
    ])
    const [view] = readMessages(doc)
    expect(view).toMatchObject({
      role: 'user',
      author: { id: 'unknown', kind: 'device' },
      createdAt: 0,
      content: '',
      status: 'complete',
      metadata: { extra: 'kept' },
    })
    expect(view!.id).toMatch(/^yjs-/)
    expect(Object.keys(view!)).not.toContain('updatedAt')
    expect(Object.keys(view!)).not.toContain('error')
    expect(Object.keys(view!.metadata)).toEqual(['extra'])
    expect(Object.keys(view!.author)).toEqual(['id', 'kind'])
  })

  it('skip entries that are not maps but keep counting their positions', () => {
    const doc = new Y.Doc()
    handWritten(doc, ['a plain string', 12, null, new Y.Text('a text'), { id: 'real' }, ['an', 'array']])
    const views = readMessages(doc)
    expect(views.map((m) => [m.id, m.index])).toEqual([['real', 4]])
    expect(readMessage(doc, 'real')?.index).toBe(4)
  })

  it('read content stored as a plain string', () => {
    const doc = new Y.Doc()
    handWritten(doc, [{ id: 'm', role: 'assistant', content: 'plain text' }])
    expect(readMessage(doc, 'm')).toMatchObject({ role: 'assistant', content: 'plain text' })
  })

  it('read an author given as a bare string, or as a Y.Map', () => {
    const doc = new Y.Doc()
    const authorMap = new Y.Map<unknown>()
    authorMap.set('id', 'phone')
    authorMap.set('kind', 'agent')
    handWritten(doc, [{ id: 's', author: 'someone' }])
    const map = new Y.Map<unknown>()
    handWritten(doc, [map])
    map.set('id', 'm')
    map.set('author', authorMap)
    expect(readMessage(doc, 's')?.author).toEqual({ id: 'someone', kind: 'device' })
    expect(readMessage(doc, 'm')?.author).toEqual({ id: 'phone', kind: 'agent' })
  })

  it('read metadata stored as a Y.Map', () => {
    const doc = new Y.Doc()
    const metadata = new Y.Map<unknown>()
    metadata.set('model', 'm-1')
    metadata.set('promptTokens', 5)
    const map = new Y.Map<unknown>()
    handWritten(doc, [map])
    map.set('id', 'm')
    map.set('metadata', metadata)
    expect(readMessage(doc, 'm')?.metadata).toEqual({ model: 'm-1', promptTokens: 5 })
  })

  it('take any non-null cancelRequest value as a request, with defaults for what it lacks', () => {
    const doc = new Y.Doc()
    handWritten(doc, [
      { id: 'flag', status: 'streaming', cancelRequest: true },
      { id: 'partial', status: 'streaming', cancelRequest: { at: 5 } },
      { id: 'none', status: 'streaming', cancelRequest: null },
    ])
    expect(readMessage(doc, 'flag')?.cancelRequest).toEqual({ by: { id: 'unknown', kind: 'device' }, at: 0 })
    expect(readMessage(doc, 'partial')?.cancelRequest).toEqual({
      by: { id: 'unknown', kind: 'device' },
      at: 5,
    })
    expect(readMessage(doc, 'none')?.cancelRequest).toBeUndefined()
    expect(requestCancel(doc, 'none', bob)).toBe(true)
    expect(readMessage(doc, 'none')?.cancelRequest?.by).toEqual(bob)
  })

  it('keep a metadata key named __proto__ as data', () => {
    const doc = new Y.Doc()
    const metadata = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as unknown
    handWritten(doc, [{ id: 'm', metadata }])
    const view = readMessage(doc, 'm')!
    expect(view.metadata.ok).toBe(1)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.getPrototypeOf(view.metadata)).toBe(Object.prototype)
  })

  it('let the other helpers work on the same foreign data', () => {
    const doc = new Y.Doc()
    handWritten(doc, [{ id: 'x', content: 'hello', status: 'complete' }, 'junk', {}])
    const calls: number[] = []
    observeMessages(doc, (messages) => calls.push(messages.length))
    handWritten(doc, [{ nothing: true }])
    expect(calls).toEqual([3])
    expect(findMessageMap(doc, 'x')).toBeInstanceOf(Y.Map)
    expect(contextWindow(doc, { maxTokens: 100, countTokens: (t) => t.length }).messages).toHaveLength(3)
  })
})

describe('summary readers on foreign data', () => {
  it('fill defaults and skip entries that are not maps', () => {
    const doc = new Y.Doc()
    const array = doc.getArray<unknown>(SUMMARIES)
    const full = new Y.Map<unknown>()
    const odd = new Y.Map<unknown>()
    doc.transact(() => {
      array.push(['junk', full, odd])
      full.set('id', 's1')
      full.set('coversThroughId', 'm3')
      full.set('text', new Y.Text('as a Y.Text'))
      full.set('tokens', 7)
      odd.set('coversThroughId', 3)
      odd.set('tokens', -2)
      odd.set('author', 'bob')
    })
    const [first, second] = readSummaries(doc)
    expect(first).toEqual({
      id: 's1',
      coversThroughId: 'm3',
      text: 'as a Y.Text',
      author: { id: 'unknown', kind: 'device' },
      createdAt: 0,
      tokens: 7,
    })
    expect(second).toMatchObject({ coversThroughId: '', text: '', author: { id: 'bob', kind: 'device' } })
    expect(second!.id).toMatch(/^yjs-/)
    expect('tokens' in second!).toBe(false)
  })
})

describe('session reader on foreign data', () => {
  it('leaves out an ill-typed title and createdAt, and reads a legacy participants object', () => {
    const doc = new Y.Doc()
    const map = doc.getMap<unknown>(SESSION)
    doc.transact(() => {
      map.set('title', 12)
      map.set('createdAt', 'long ago')
      map.set('participants', {
        phone: { kind: 'device', name: 'Phone', lastSeenAt: 3 },
        broken: 'not an object',
        laptop: { id: 'laptop', kind: 'agent', lastSeenAt: 'never' },
      })
      map.set('participant:laptop', { id: 'laptop', kind: 'device', lastSeenAt: 9 })
      map.set('participant:junk', 5)
    })
    expect(readSessionInfo(doc)).toEqual({
      participants: {
        phone: { id: 'phone', kind: 'device', name: 'Phone', lastSeenAt: 3 },
        laptop: { id: 'laptop', kind: 'device', lastSeenAt: 9 },
      },
    })
  })

  it('reads a title stored as a Y.Text', () => {
    const doc = new Y.Doc()
    doc.getMap<unknown>(SESSION).set('title', new Y.Text('Trip plans'))
    expect(readSessionInfo(doc).title).toBe('Trip plans')
  })
})
