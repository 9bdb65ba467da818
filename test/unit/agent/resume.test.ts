// Resuming an answer: the streaming writer continues an existing message instead of appending a
// second one, and the demo model continues its own text so that a resumed answer ends exactly as an
// uninterrupted one.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { GenerateContext } from '../../../client/agent/model.js'
import { createDemoModel } from '../../../client/agent/models/demo-model.js'
import {
  type Author,
  appendMessage,
  openStreamingWriter,
  readMessages,
  requestCancel,
} from '../../../shared/conversation/index.js'

const agent: Author = { id: 'agent:a', kind: 'agent' }
const alice: Author = { id: 'device:alice', kind: 'device' }

async function collect(context: GenerateContext, tokens = 12): Promise<string> {
  const model = createDemoModel({ tokens, delayMs: 0 })
  let text = ''
  for await (const token of model.generate(context, new AbortController().signal)) text += token
  return text
}

describe('a resumed streaming writer', () => {
  it('continues the message with that id: same message, text kept, status streaming again', () => {
    const doc = new Y.Doc()
    const first = openStreamingWriter(doc, { author: agent, id: 'answer-1', coalesceMs: 0 })
    first.write('Hello ')
    // The first worker died: its message stays `streaming` (or was marked `error` by a sweeper).
    const second = openStreamingWriter(doc, {
      author: agent,
      id: 'answer-1',
      resume: true,
      coalesceMs: 0,
      metadata: { resumes: [{ at: 1, offset: 6 }] },
    })
    second.write('world')
    second.end()
    const messages = readMessages(doc)
    expect(messages).toHaveLength(1)
    expect(messages[0]).toMatchObject({
      id: 'answer-1',
      content: 'Hello world',
      status: 'complete',
      metadata: { resumes: [{ at: 1, offset: 6 }] },
    })
  })

  it('reopens an answer marked error (interrupted) and clears the error text', () => {
    const doc = new Y.Doc()
    const first = openStreamingWriter(doc, { author: agent, id: 'a', coalesceMs: 0 })
    first.write('part')
    first.fail('interrupted')
    const second = openStreamingWriter(doc, { author: agent, id: 'a', resume: true, coalesceMs: 0 })
    expect(readMessages(doc)[0]?.status).toBe('streaming')
    expect(readMessages(doc)[0]?.error).toBeUndefined()
    second.write(' two')
    second.end()
    expect(readMessages(doc)[0]).toMatchObject({ content: 'part two', status: 'complete' })
  })

  it('does not reopen a message a device asked to cancel: the writer starts closed and stops at once', () => {
    const doc = new Y.Doc()
    const first = openStreamingWriter(doc, { author: agent, id: 'a', coalesceMs: 0 })
    first.write('kept')
    requestCancel(doc, 'a', alice)
    const second = openStreamingWriter(doc, { author: agent, id: 'a', resume: true, coalesceMs: 0 })
    let stopped = false
    second.onStop(() => {
      stopped = true
    })
    second.write(' more')
    expect(stopped).toBe(true)
    expect(second.isClosed).toBe(true)
    expect(readMessages(doc)[0]).toMatchObject({ content: 'kept', status: 'cancelled' })
  })

  it('appends a new message when none has the id yet', () => {
    const doc = new Y.Doc()
    const writer = openStreamingWriter(doc, { author: agent, id: 'fresh', resume: true, coalesceMs: 0 })
    writer.write('x')
    writer.end()
    expect(readMessages(doc).map((m) => [m.id, m.content])).toEqual([['fresh', 'x']])
  })
})

describe('the demo model asked to continue', () => {
  const doc = new Y.Doc()
  const prompt = appendMessage(doc, { role: 'user', author: alice, content: 'hi' })
  const context: GenerateContext = { sessionId: 's', prompt, messages: [prompt] }

  it('yields only what follows its own text, so the resumed answer equals the uninterrupted one', async () => {
    const whole = await collect(context)
    for (const cut of [1, 5, 11]) {
      const model = createDemoModel({ tokens: 12, delayMs: 0 })
      const tokens: string[] = []
      for await (const token of model.generate(context, new AbortController().signal)) tokens.push(token)
      const prefix = tokens.slice(0, cut).join('')
      const rest = await collect({ ...context, continueFrom: prefix })
      expect(prefix + rest).toBe(whole)
    }
  })

  it('continues after a foreign text with a space rather than repeating it', async () => {
    const rest = await collect({ ...context, continueFrom: 'Something else' })
    expect(rest.startsWith(' ')).toBe(true)
  })
})
