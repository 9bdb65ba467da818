import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import {
  type CancelRequest,
  DEFAULT_COALESCE_MS,
  MAX_ERROR_TEXT_LENGTH,
  openStreamingWriter,
  readMessage,
  requestCancel,
  setMessageStatus,
} from '../../../../shared/conversation/index.js'
import { agent, alice, bob, connectedDocs, countUpdates, manualTimer } from './helpers.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('openStreamingWriter', () => {
  it('appends an assistant message with status streaming at once', () => {
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent, metadata: { replyTo: 'u1' }, id: 'w' })
    expect(writer.id).toBe('w')
    expect(readMessage(doc, 'w')).toMatchObject({
      role: 'assistant',
      status: 'streaming',
      content: '',
      author: agent,
      metadata: { replyTo: 'u1' },
    })
    expect(writer.isClosed).toBe(false)
    writer.end()
  })

  it('refuses a negative or non-finite coalescing window', () => {
    const doc = new Y.Doc()
    expect(() => openStreamingWriter(doc, { author: agent, coalesceMs: -1 })).toThrow(RangeError)
    expect(() => openStreamingWriter(doc, { author: agent, coalesceMs: Number.NaN })).toThrow(RangeError)
  })
})

describe('coalescing', () => {
  it('sends N writes within one window as exactly one update', () => {
    const doc = new Y.Doc()
    const timer = manualTimer()
    const writer = openStreamingWriter(doc, { author: agent, ...timer, coalesceMs: 25 })
    const updates = countUpdates(doc)
    for (let i = 0; i < 100; i++) writer.write(`t${i} `)
    expect(updates.count).toBe(0)
    expect(timer.pending).toBe(1)
    expect(timer.delays).toEqual([25])
    timer.fire()
    expect(updates.count).toBe(1)
    expect(readMessage(doc, writer.id)?.content).toBe(
      Array.from({ length: 100 }, (_, i) => `t${i} `).join(''),
    )
    writer.write('next')
    expect(timer.pending).toBe(1)
    timer.fire()
    expect(updates.count).toBe(2)
    writer.end()
  })

  it('uses setTimeout for a 20 ms window by default', () => {
    vi.useFakeTimers()
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent })
    const updates = countUpdates(doc)
    writer.write('a')
    writer.write('b')
    vi.advanceTimersByTime(DEFAULT_COALESCE_MS - 1)
    expect(updates.count).toBe(0)
    vi.advanceTimersByTime(1)
    expect(updates.count).toBe(1)
    expect(readMessage(doc, writer.id)?.content).toBe('ab')
    writer.write('c')
    writer.end()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('with coalesceMs 0 sends one transaction per write and starts no timer', () => {
    const doc = new Y.Doc()
    const timer = manualTimer()
    const writer = openStreamingWriter(doc, { author: agent, coalesceMs: 0, ...timer })
    const updates = countUpdates(doc)
    writer.write('a')
    writer.write('b')
    writer.write('')
    expect(updates.count).toBe(2)
    expect(timer.delays).toEqual([])
    writer.end()
  })

  it('flush writes the buffer now in one transaction and clears the timer', () => {
    const doc = new Y.Doc()
    const timer = manualTimer()
    const writer = openStreamingWriter(doc, { author: agent, ...timer })
    const updates = countUpdates(doc)
    writer.write('x')
    writer.write('y')
    writer.flush()
    expect(updates.count).toBe(1)
    expect(timer.pending).toBe(0)
    writer.flush()
    expect(updates.count).toBe(1)
    writer.end()
  })

  it('passes the origin to every transaction', () => {
    const doc = new Y.Doc()
    const origin = Symbol('agent')
    const origins: unknown[] = []
    doc.on('update', (_u: Uint8Array, o: unknown) => origins.push(o))
    const writer = openStreamingWriter(doc, { author: agent, coalesceMs: 0, origin })
    writer.write('a')
    writer.end()
    expect(origins).toEqual([origin, origin, origin])
  })

  it('keeps token order across many windows on a replica', () => {
    const { a, b } = connectedDocs()
    const timer = manualTimer()
    const writer = openStreamingWriter(a, { author: agent, ...timer })
    let expected = ''
    for (let i = 0; i < 2000; i++) {
      const token = `${i},`
      expected += token
      writer.write(token)
      if (i % 37 === 0) timer.fire()
    }
    writer.end()
    expect(readMessage(b, writer.id)?.content).toBe(expected)
    expect(readMessage(b, writer.id)?.status).toBe('complete')
  })
})

describe('end and fail', () => {
  it('end flushes, merges metadata and sets status complete in one update, leaving no timer', () => {
    const doc = new Y.Doc()
    const timer = manualTimer()
    const writer = openStreamingWriter(doc, { author: agent, metadata: { replyTo: 'u' }, ...timer })
    writer.write('hello')
    const updates = countUpdates(doc)
    writer.end({ completionTokens: 1 })
    expect(updates.count).toBe(1)
    expect(timer.pending).toBe(0)
    expect(readMessage(doc, writer.id)).toMatchObject({
      content: 'hello',
      status: 'complete',
      metadata: { replyTo: 'u', completionTokens: 1 },
    })
    expect(writer.isClosed).toBe(true)
    writer.write('ignored')
    writer.end({ model: 'ignored' })
    writer.fail(new Error('ignored'))
    expect(updates.count).toBe(1)
  })

  it('fail flushes and sets status error with the error text, leaving no timer', () => {
    const doc = new Y.Doc()
    const timer = manualTimer()
    const writer = openStreamingWriter(doc, { author: agent, ...timer })
    writer.write('partial')
    writer.fail(new Error('model unavailable'))
    expect(timer.pending).toBe(0)
    expect(readMessage(doc, writer.id)).toMatchObject({
      content: 'partial',
      status: 'error',
      error: 'model unavailable',
    })
    writer.end()
    expect(readMessage(doc, writer.id)?.status).toBe('error')
  })

  it('describes any thrown value and cuts long error texts', () => {
    const doc = new Y.Doc()
    const cases: [unknown, string][] = [
      ['plain', 'plain'],
      [{ message: 'shaped like an error' }, 'shaped like an error'],
      [Object.create(null), '[object Object]'],
      [42, '42'],
      [undefined, 'undefined'],
    ]
    for (const [thrown, text] of cases) {
      const writer = openStreamingWriter(doc, { author: agent })
      writer.fail(thrown)
      expect(readMessage(doc, writer.id)?.error).toBe(text)
    }
    const writer = openStreamingWriter(doc, { author: agent })
    writer.fail(new Error('x'.repeat(5000)))
    expect(readMessage(doc, writer.id)?.error).toHaveLength(MAX_ERROR_TEXT_LENGTH + 1)
  })

  it('a timer that fires after end writes nothing', () => {
    const doc = new Y.Doc()
    const handles: (() => void)[] = []
    // A scheduler without clearTimer: the callback must be harmless once the writer has ended.
    const writer = openStreamingWriter(doc, {
      author: agent,
      setTimer: (fn) => handles.push(fn),
    })
    writer.write('a')
    writer.end()
    const updates = countUpdates(doc)
    for (const fn of handles) fn()
    expect(updates.count).toBe(0)
    expect(readMessage(doc, writer.id)?.content).toBe('a')
  })
})

describe('cancellation', () => {
  it('a cancel requested on another replica fires onCancel, ends cancelled, and later writes are ignored', () => {
    const { a, b } = connectedDocs()
    const timer = manualTimer()
    const writer = openStreamingWriter(a, { author: agent, ...timer })
    const seen: CancelRequest[] = []
    writer.onCancel((request) => seen.push(request))
    writer.write('one ')
    timer.fire()
    writer.write('two ')
    expect(requestCancel(b, writer.id, bob)).toBe(true)
    expect(seen).toHaveLength(1)
    expect(seen[0]?.by).toEqual(bob)
    expect(writer.isCancelRequested).toBe(true)
    expect(writer.isClosed).toBe(true)
    expect(timer.pending).toBe(0)
    // What was written before the request arrived is kept; the status and that text went out together.
    expect(readMessage(b, writer.id)).toMatchObject({ status: 'cancelled', content: 'one two ' })
    const updates = countUpdates(a)
    writer.write('three')
    writer.flush()
    timer.fire()
    writer.fail(new Error('late'))
    expect(updates.count).toBe(0)
    expect(readMessage(b, writer.id)).toMatchObject({ status: 'cancelled', content: 'one two ' })
  })

  it('end after a cancel keeps status cancelled and only merges the metadata', () => {
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent, coalesceMs: 0 })
    writer.write('partial')
    requestCancel(doc, writer.id, bob)
    writer.end({ completionTokens: 1 })
    expect(readMessage(doc, writer.id)).toMatchObject({
      status: 'cancelled',
      content: 'partial',
      metadata: { completionTokens: 1 },
    })
  })

  it('calls a listener added after the cancel at once, and removed listeners never', () => {
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent })
    const removed = vi.fn()
    const off = writer.onCancel(removed)
    off()
    requestCancel(doc, writer.id, bob)
    expect(removed).not.toHaveBeenCalled()
    const late = vi.fn()
    writer.onCancel(late)
    expect(late).toHaveBeenCalledWith(expect.objectContaining({ by: bob }))
  })

  it('settles the document and calls every listener even when one throws', () => {
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent })
    const second = vi.fn()
    writer.onCancel(() => {
      throw new Error('listener failed')
    })
    writer.onCancel(second)
    expect(() => requestCancel(doc, writer.id, bob)).toThrow('listener failed')
    expect(second).toHaveBeenCalledTimes(1)
    expect(readMessage(doc, writer.id)?.status).toBe('cancelled')
  })

  it('a cancel arriving after end changes nothing', () => {
    const { a, b } = connectedDocs()
    const writer = openStreamingWriter(a, { author: agent, coalesceMs: 0 })
    writer.write('done')
    writer.end()
    const listener = vi.fn()
    writer.onCancel(listener)
    expect(requestCancel(b, writer.id, bob)).toBe(false)
    expect(listener).not.toHaveBeenCalled()
    expect(readMessage(a, writer.id)?.status).toBe('complete')
  })

  it('closes without changing the status when another writer finishes the message', () => {
    const { a, b } = connectedDocs()
    const timer = manualTimer()
    const writer = openStreamingWriter(a, { author: agent, ...timer })
    writer.write('kept')
    setMessageStatus(b, writer.id, 'error', { error: 'interrupted' })
    expect(writer.isClosed).toBe(true)
    expect(writer.isCancelRequested).toBe(false)
    expect(timer.pending).toBe(0)
    writer.write('dropped')
    writer.end()
    expect(readMessage(b, writer.id)).toMatchObject({
      status: 'error',
      error: 'interrupted',
      content: 'kept',
    })
  })
})

describe('openStreamingWriter onStop', () => {
  it("is called when another peer moves the status off streaming, not for the writer's own end", () => {
    const { a, b } = connectedDocs()
    const writer = openStreamingWriter(a, { author: agent, coalesceMs: 0 })
    const stops: string[] = []
    writer.onStop(() => stops.push('stopped'))
    writer.write('partial')
    setMessageStatus(b, writer.id, 'error', { error: 'closed elsewhere' })
    expect(stops).toEqual(['stopped'])
    expect(writer.isClosed).toBe(true)
    const ended = openStreamingWriter(a, { author: agent, coalesceMs: 0 })
    const endStops: string[] = []
    ended.onStop(() => endStops.push('stopped'))
    ended.end()
    expect(endStops).toEqual([])
  })

  it('is called on a cancel request, and at once when registered after the stop', () => {
    const { a, b } = connectedDocs()
    const writer = openStreamingWriter(a, { author: agent, coalesceMs: 0 })
    let stops = 0
    writer.onStop(() => stops++)
    requestCancel(b, writer.id, alice)
    expect(stops).toBe(1)
    writer.onStop(() => stops++)
    expect(stops).toBe(2)
  })
})
