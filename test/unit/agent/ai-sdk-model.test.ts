// The Vercel AI SDK adapter against the SDK's own mock models: text streams as tokens, tool calls
// and results are recorded as the conversation model says, provider failures become ModelErrors
// the agent retries, a cancel aborts the provider's stream, and a resumed answer asks to continue.

import type { LanguageModelV3StreamPart } from '@ai-sdk/provider'
import { APICallError, tool } from 'ai'
import { MockLanguageModelV3, simulateReadableStream } from 'ai/test'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { z } from 'zod'
import type { GenerateContext, ModelEvent } from '../../../client/agent/model.js'
import { callModel, DEFAULT_MODEL_TIMEOUTS } from '../../../client/agent/model-call.js'
import { ModelError } from '../../../client/agent/model-error.js'
import { createAiSdkModel, toModelMessages } from '../../../client/agent/models/ai-sdk.js'
import { recordModelEvent } from '../../../client/agent/tool-messages.js'
import {
  type Author,
  appendMessage,
  openStreamingWriter,
  readMessages,
} from '../../../shared/conversation/index.js'

type StreamPart = LanguageModelV3StreamPart

const usage = {
  inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 2, text: 2, reasoning: undefined },
}
const finish = (unified: 'stop' | 'tool-calls'): StreamPart => ({
  type: 'finish',
  finishReason: { unified, raw: unified },
  usage,
})
function textParts(...deltas: string[]): StreamPart[] {
  return [
    { type: 'stream-start', warnings: [] },
    { type: 'text-start', id: 't' },
    ...deltas.map((delta) => ({ type: 'text-delta', id: 't', delta })),
    { type: 'text-end', id: 't' },
    finish('stop'),
  ] as StreamPart[]
}
const streamOf = (chunks: StreamPart[], chunkDelayInMs: number | null = null) => ({
  stream: simulateReadableStream<StreamPart>({ chunks, chunkDelayInMs }),
})

const alice: Author = { id: 'device:alice', kind: 'device' }
const agent: Author = { id: 'agent:sdk', kind: 'agent', name: 'sdk' }

function contextOf(doc: Y.Doc, extra: Partial<GenerateContext> = {}): GenerateContext {
  const messages = readMessages(doc).filter((m) => m.status === 'complete')
  const prompt = messages[messages.length - 1]
  if (prompt === undefined) throw new Error('no prompt')
  return { sessionId: 's', prompt, messages, ...extra }
}

async function run(
  model: ReturnType<typeof createAiSdkModel>,
  context: GenerateContext,
  options: { signal?: AbortSignal; onEvent?: (event: ModelEvent) => void } = {},
) {
  const tokens: string[] = []
  const outcome = await callModel({
    model,
    context: () => context,
    signal: options.signal ?? new AbortController().signal,
    timeouts: DEFAULT_MODEL_TIMEOUTS,
    retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 5, maxRetryAfterMs: 1_000 },
    onToken: (token) => tokens.push(token),
    ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
  })
  return { outcome, tokens }
}

describe('the AI SDK adapter', () => {
  it('streams a LanguageModel’s text deltas as tokens and sends it the conversation', async () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'first' })
    appendMessage(doc, { role: 'assistant', author: agent, content: 'an answer' })
    appendMessage(doc, { role: 'user', author: alice, content: 'and now?' })
    const mock = new MockLanguageModelV3({
      doStream: async () => streamOf(textParts('Hello', ', ', 'world')),
    })
    const model = createAiSdkModel({ model: mock, system: 'be brief' })
    const { outcome, tokens } = await run(model, contextOf(doc))
    expect(outcome).toEqual({ kind: 'complete', tokens: 3 })
    expect(tokens.join('')).toBe('Hello, world')
    expect(model.name).toBe('mock-provider:mock-model-id')
    const prompt = mock.doStreamCalls[0]?.prompt ?? []
    expect(prompt.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user'])
    expect(JSON.stringify(prompt[3])).toContain('and now?')
  })

  it('records a tool call in the answer’s metadata and its result as a tool message answering the answer', async () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'weather in Lyon?' })
    const steps = [
      streamOf([
        { type: 'stream-start', warnings: [] },
        { type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: '{"city":"Lyon"}' },
        finish('tool-calls'),
      ] as StreamPart[]),
      streamOf(textParts('It is ', 'sunny.')),
    ]
    let step = 0
    const mock = new MockLanguageModelV3({
      doStream: async () => {
        const next = steps[step++]
        if (next === undefined) throw new Error('no more steps')
        return next
      },
    })
    const weather = tool({
      description: 'the weather in a city',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => ({ city, sky: 'sunny' }),
    })
    const model = createAiSdkModel({ model: mock, tools: { weather } })
    const writer = openStreamingWriter(doc, { author: agent, coalesceMs: 0 })
    const { outcome } = await (async () => {
      const tokens: string[] = []
      const result = await callModel({
        model,
        context: () => contextOf(doc),
        signal: new AbortController().signal,
        timeouts: DEFAULT_MODEL_TIMEOUTS,
        retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1 },
        onToken: (token) => {
          tokens.push(token)
          writer.write(token)
        },
        onEvent: (event) => recordModelEvent(doc, writer.id, event, agent),
      })
      return { outcome: result }
    })()
    writer.end()
    expect(outcome.kind).toBe('complete')
    const messages = readMessages(doc)
    const answer = messages.find((m) => m.id === writer.id)
    expect(answer?.content).toBe('It is sunny.')
    expect(answer?.metadata.toolCalls).toEqual([{ id: 'call-1', name: 'weather', input: { city: 'Lyon' } }])
    const result = messages.find((m) => m.role === 'tool')
    expect(result).toMatchObject({
      id: `${writer.id}:tool:call-1`,
      status: 'complete',
      metadata: { replyTo: writer.id, toolCallId: 'call-1', toolName: 'weather' },
    })
    expect(JSON.parse(result?.content ?? '')).toEqual({ city: 'Lyon', sky: 'sunny' })
    // The second step saw the tool's result.
    expect(JSON.stringify(mock.doStreamCalls[1]?.prompt)).toContain('sunny')
  })

  it('records a call and its result once when a resumed answer reports them again', () => {
    const doc = new Y.Doc()
    const answer = appendMessage(doc, { role: 'assistant', author: agent, status: 'streaming' })
    const call: ModelEvent = { kind: 'tool-call', id: 'c', name: 'n', input: { a: 1 } }
    const result: ModelEvent = { kind: 'tool-result', id: 'c', name: 'n', output: 'ok' }
    for (let i = 0; i < 2; i++) {
      recordModelEvent(doc, answer.id, call, agent)
      recordModelEvent(doc, answer.id, result, agent)
    }
    const messages = readMessages(doc)
    expect(messages.filter((m) => m.role === 'tool')).toHaveLength(1)
    expect(messages[0]?.metadata.toolCalls).toHaveLength(1)
  })

  it('turns an HTTP 503 before the first token into a retryable ModelError, and the call is retried', async () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'q' })
    let calls = 0
    const mock = new MockLanguageModelV3({
      doStream: async () => {
        calls++
        if (calls === 1) {
          throw new APICallError({
            message: 'overloaded',
            url: 'http://127.0.0.1/v1',
            requestBodyValues: {},
            statusCode: 503,
            responseHeaders: { 'retry-after': '0' },
          })
        }
        return streamOf(textParts('fine'))
      },
    })
    const { outcome, tokens } = await run(createAiSdkModel({ model: mock }), contextOf(doc))
    expect(calls).toBe(2)
    expect(outcome.kind).toBe('complete')
    expect(tokens).toEqual(['fine'])
  })

  it('ends the call in error with the provider’s reason when a 400 is not retryable', async () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'q' })
    const mock = new MockLanguageModelV3({
      doStream: async () => {
        throw new APICallError({
          message: 'bad request',
          url: 'http://127.0.0.1/v1',
          requestBodyValues: {},
          statusCode: 400,
        })
      },
    })
    const { outcome } = await run(createAiSdkModel({ model: mock }), contextOf(doc))
    expect(outcome.kind).toBe('error')
    if (outcome.kind !== 'error') return
    expect(outcome.error).toBeInstanceOf(ModelError)
    expect(outcome.reason).toContain('HTTP 400')
  })

  it('stops at once when the agent aborts: the provider’s request gets the abort', async () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'a long story' })
    let providerSignal: AbortSignal | undefined
    const mock = new MockLanguageModelV3({
      doStream: async (options) => {
        providerSignal = options.abortSignal
        return streamOf(textParts(...Array.from({ length: 200 }, () => 'word ')), 5)
      },
    })
    const abort = new AbortController()
    const tokens: string[] = []
    const outcome = await callModel({
      model: createAiSdkModel({ model: mock }),
      context: () => contextOf(doc),
      signal: abort.signal,
      timeouts: DEFAULT_MODEL_TIMEOUTS,
      retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1 },
      onToken: (token) => {
        tokens.push(token)
        if (tokens.length === 3) abort.abort()
      },
    })
    expect(outcome.kind).toBe('aborted')
    expect(tokens.length).toBeLessThan(10)
    expect(providerSignal?.aborted).toBe(true)
  })

  it('asks the model to continue a resumed answer from its text, after the conversation', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, content: 'tell me' })
    const messages = toModelMessages(contextOf(doc, { continueFrom: 'Once upon a' }))
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'system'])
    expect(messages[1]?.content).toBe('Once upon a')
    expect(String(messages[2]?.content)).toMatch(/continue/i)
  })
})
