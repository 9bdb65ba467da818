import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  appendMessage,
  findMessageMap,
  MESSAGES,
  MessageKey,
  type MessageView,
  observeMessages,
  readMessage,
  readMessages,
  readSessionInfo,
  requestCancel,
  SCHEMA_VERSION,
  setMessageStatus,
  updateMessageMetadata,
} from '../../../../shared/conversation/index.js'
import { agent, alice, bob, connectedDocs, countUpdates } from './helpers.js'

describe('appendMessage', () => {
  it('stores every field of the schema in one message map and returns its view', () => {
    const doc = new Y.Doc()
    const view = appendMessage(doc, {
      role: 'user',
      author: alice,
      content: 'hello',
      metadata: { replyTo: 'x', custom: [1, 2] },
      createdAt: 1234,
    })
    expect(view).toEqual({
      id: view.id,
      index: 0,
      role: 'user',
      author: alice,
      createdAt: 1234,
      content: 'hello',
      status: 'complete',
      metadata: { replyTo: 'x', custom: [1, 2] },
    })
    expect(view.id).toMatch(/^[0-9a-f-]{36}$/)
    const map = doc.getArray<Y.Map<unknown>>(MESSAGES).get(0)
    expect(map.get(MessageKey.Content)).toBeInstanceOf(Y.Text)
    expect(map.get(MessageKey.SchemaVersion)).toBe(SCHEMA_VERSION)
    expect(map.get(MessageKey.Author)).toEqual(alice)
  })

  it('is one transaction, so one update, and records the session creation time', () => {
    const doc = new Y.Doc()
    const updates = countUpdates(doc)
    appendMessage(doc, { role: 'user', author: alice, createdAt: 50 })
    expect(updates.count).toBe(1)
    expect(readSessionInfo(doc).createdAt).toBe(50)
    appendMessage(doc, { role: 'user', author: alice, createdAt: 99 })
    expect(readSessionInfo(doc).createdAt).toBe(50)
  })

  it('keeps the given id and passes the origin to the transaction', () => {
    const doc = new Y.Doc()
    const origins: unknown[] = []
    doc.on('update', (_update: Uint8Array, origin: unknown) => origins.push(origin))
    const origin = { kind: 'test' }
    const view = appendMessage(doc, { role: 'system', author: alice, id: 'm-1' }, origin)
    expect(view.id).toBe('m-1')
    expect(origins).toEqual([origin])
  })

  it('stores copies, so changing the input afterwards does not change the document', () => {
    const doc = new Y.Doc()
    const metadata = { toolCalls: [{ name: 'search' }] }
    const author = { id: 'a', kind: 'device' as const, name: 'A' }
    appendMessage(doc, { role: 'user', author, metadata, id: 'm' })
    metadata.toolCalls.push({ name: 'other' })
    author.name = 'B'
    expect(readMessage(doc, 'm')?.metadata.toolCalls).toEqual([{ name: 'search' }])
    expect(readMessage(doc, 'm')?.author.name).toBe('A')
  })

  it('returns views that share nothing with the document', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, id: 'm', metadata: { nested: { n: 1 } } })
    const first = readMessage(doc, 'm')!
    ;(first.metadata.nested as { n: number }).n = 2
    expect(readMessage(doc, 'm')!.metadata.nested).toEqual({ n: 1 })
  })

  it('refuses a role, status or author kind outside the schema', () => {
    const doc = new Y.Doc()
    const badRole = { role: 'robot', author: alice } as unknown as Parameters<typeof appendMessage>[1]
    expect(() => appendMessage(doc, badRole)).toThrow(TypeError)
    const badKind = { role: 'user', author: { id: 'x', kind: 'cat' } } as unknown as Parameters<
      typeof appendMessage
    >[1]
    expect(() => appendMessage(doc, badKind)).toThrow(TypeError)
    expect(readMessages(doc)).toEqual([])
  })

  it('orders messages by the array on every replica', () => {
    const { a, b } = connectedDocs()
    appendMessage(a, { role: 'user', author: alice, id: '1', content: 'one' })
    appendMessage(b, { role: 'assistant', author: agent, id: '2', content: 'two' })
    appendMessage(a, { role: 'user', author: alice, id: '3', content: 'three' })
    expect(readMessages(a).map((m) => m.id)).toEqual(['1', '2', '3'])
    expect(readMessages(b)).toEqual(readMessages(a))
  })
})

describe('readMessage', () => {
  it('finds a message by id and returns undefined for an unknown id', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, id: 'a' })
    appendMessage(doc, { role: 'user', author: alice, id: 'b', content: 'B' })
    expect(readMessage(doc, 'b')).toMatchObject({ id: 'b', index: 1, content: 'B' })
    expect(readMessage(doc, 'zzz')).toBeUndefined()
    expect(findMessageMap(doc, 'b')?.get(MessageKey.Id)).toBe('b')
  })

  it('returns the first of two messages that share an id', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, id: 'dup', content: 'first' })
    appendMessage(doc, { role: 'user', author: alice, id: 'dup', content: 'second' })
    expect(readMessage(doc, 'dup')?.content).toBe('first')
  })
})

describe('setMessageStatus', () => {
  it('sets status and updatedAt, stores an error text with status error, and removes it otherwise', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'assistant', author: agent, id: 'm', status: 'streaming' })
    expect(setMessageStatus(doc, 'm', 'error', { error: 'interrupted' })).toBe(true)
    expect(readMessage(doc, 'm')).toMatchObject({ status: 'error', error: 'interrupted' })
    expect(readMessage(doc, 'm')?.updatedAt).toEqual(expect.any(Number))
    expect(setMessageStatus(doc, 'm', 'complete')).toBe(true)
    const view = readMessage(doc, 'm')!
    expect(view.status).toBe('complete')
    expect('error' in view).toBe(false)
  })

  it('returns false for an unknown message and writes nothing', () => {
    const doc = new Y.Doc()
    const updates = countUpdates(doc)
    expect(setMessageStatus(doc, 'nope', 'complete')).toBe(false)
    expect(updates.count).toBe(0)
  })
})

describe('updateMessageMetadata', () => {
  it('merges keys into the stored metadata', () => {
    const doc = new Y.Doc()
    appendMessage(doc, {
      role: 'assistant',
      author: agent,
      id: 'm',
      metadata: { model: 'demo', replyTo: 'u' },
    })
    expect(updateMessageMetadata(doc, 'm', { completionTokens: 12, model: 'demo-2' })).toBe(true)
    expect(readMessage(doc, 'm')?.metadata).toEqual({ model: 'demo-2', replyTo: 'u', completionTokens: 12 })
    expect(updateMessageMetadata(doc, 'nope', {})).toBe(false)
  })
})

describe('requestCancel', () => {
  it('stores a durable request on a streaming message, seen by every replica', () => {
    const { a, b } = connectedDocs()
    appendMessage(a, { role: 'assistant', author: agent, id: 'm', status: 'streaming' })
    expect(requestCancel(b, 'm', bob)).toBe(true)
    const request = readMessage(a, 'm')?.cancelRequest
    expect(request?.by).toEqual(bob)
    expect(request?.at).toEqual(expect.any(Number))
  })

  it('is a no-op returning false when the message is not streaming or does not exist', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'assistant', author: agent, id: 'done' })
    const updates = countUpdates(doc)
    expect(requestCancel(doc, 'done', bob)).toBe(false)
    expect(requestCancel(doc, 'missing', bob)).toBe(false)
    expect(updates.count).toBe(0)
    expect(readMessage(doc, 'done')?.cancelRequest).toBeUndefined()
  })

  it('keeps the first request when asked twice', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'assistant', author: agent, id: 'm', status: 'streaming' })
    expect(requestCancel(doc, 'm', alice)).toBe(true)
    const updates = countUpdates(doc)
    expect(requestCancel(doc, 'm', bob)).toBe(true)
    expect(updates.count).toBe(0)
    expect(readMessage(doc, 'm')?.cancelRequest?.by).toEqual(alice)
  })
})

describe('observeMessages', () => {
  it('calls the listener once per transaction with all messages, for local and remote changes', () => {
    const { a, b } = connectedDocs()
    const calls: MessageView[][] = []
    const stop = observeMessages(a, (messages) => calls.push(messages))
    appendMessage(a, { role: 'user', author: alice, id: '1' })
    appendMessage(b, { role: 'assistant', author: agent, id: '2', status: 'streaming' })
    const text = findMessageMap(b, '2')?.get(MessageKey.Content)
    if (!(text instanceof Y.Text)) throw new Error('content is not a Y.Text')
    text.insert(0, 'hi')
    expect(calls.map((messages) => messages.map((m) => m.id))).toEqual([['1'], ['1', '2'], ['1', '2']])
    expect(calls[2]?.[1]?.content).toBe('hi')
    stop()
    appendMessage(a, { role: 'user', author: alice, id: '3' })
    expect(calls).toHaveLength(3)
  })

  it('passes the transaction, so a listener can tell local changes from remote ones', () => {
    const { a, b } = connectedDocs()
    const locals: boolean[] = []
    observeMessages(a, (_messages, transaction) => locals.push(transaction.local))
    appendMessage(a, { role: 'user', author: alice })
    appendMessage(b, { role: 'user', author: bob })
    expect(locals).toEqual([true, false])
  })

  it('reuses the views of messages a transaction did not touch', () => {
    const doc = new Y.Doc()
    const calls: MessageView[][] = []
    observeMessages(doc, (messages) => calls.push(messages))
    appendMessage(doc, { role: 'user', author: alice, id: '1' })
    appendMessage(doc, { role: 'assistant', author: agent, id: '2', status: 'streaming' })
    setMessageStatus(doc, '2', 'complete')
    expect(calls[1]?.[0]).toBe(calls[0]?.[0])
    expect(calls[2]?.[0]).toBe(calls[1]?.[0])
    expect(calls[2]?.[1]).not.toBe(calls[1]?.[1])
    expect(calls[2]?.[1]?.status).toBe('complete')
  })

  it('gives a reused view its new index when messages are inserted before it', () => {
    const doc = new Y.Doc()
    const calls: MessageView[][] = []
    observeMessages(doc, (messages) => calls.push(messages))
    appendMessage(doc, { role: 'user', author: alice, id: 'late' })
    const early = new Y.Map<unknown>()
    doc.getArray<unknown>(MESSAGES).insert(0, [early])
    early.set(MessageKey.Id, 'early')
    const last = calls.at(-1)!
    expect(last.map((m) => [m.id, m.index])).toEqual([
      ['early', 0],
      ['late', 1],
    ])
    expect(last).toEqual(readMessages(doc))
  })
})
