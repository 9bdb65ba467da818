// The OpenAI-compatible adapter against a small fake chat-completions server on 127.0.0.1.

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { GenerateContext } from '../../../../client/agent/model.js'
import { createOpenAiModel, toChatMessages } from '../../../../client/agent/models/openai-model.js'
import type { MessageView } from '../../../../shared/conversation/index.js'

interface Seen {
  body: { model?: string; stream?: boolean; messages?: { role: string; content: string }[] }
  authorization: string | undefined
  url: string | undefined
}

let server: http.Server | undefined
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  server = undefined
})

/** Starts a fake endpoint; `respond` writes the response. Resolves the base URL. */
async function fakeEndpoint(
  respond: (res: http.ServerResponse, seen: Seen) => void,
  seen: Seen[] = [],
): Promise<{ baseUrl: string; seen: Seen[] }> {
  server = http.createServer((req, res) => {
    let raw = ''
    req.on('data', (chunk: Buffer) => {
      raw += chunk.toString()
    })
    req.on('end', () => {
      const record: Seen = {
        body: JSON.parse(raw) as Seen['body'],
        authorization: req.headers.authorization,
        url: req.url,
      }
      seen.push(record)
      respond(res, record)
    })
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { baseUrl: `http://127.0.0.1:${port}/v1`, seen }
}

function sse(res: http.ServerResponse, chunks: readonly string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  for (const content of chunks) {
    res.write(`data: ${JSON.stringify({ choices: [{ delta: { content } }] })}\n\n`)
  }
  res.write('data: [DONE]\n\n')
  res.end()
}

const message = (role: MessageView['role'], content: string, index: number): MessageView => ({
  id: `m${index}`,
  index,
  role,
  author: { id: 'a', kind: 'device' },
  createdAt: index,
  content,
  status: 'complete',
  metadata: {},
})

const context: GenerateContext = {
  sessionId: 's',
  prompt: message('user', 'hello?', 1),
  messages: [message('assistant', 'earlier answer', 0), message('user', 'hello?', 1)],
  summary: {
    id: 'sum',
    coversThroughId: 'm-1',
    text: 'they met',
    author: { id: 'a', kind: 'agent' },
    createdAt: 0,
  },
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const token of iterable) out.push(token)
  return out
}

describe('OpenAI-compatible model', () => {
  it('streams the deltas of a chat-completions SSE response and sends the conversation', async () => {
    const { baseUrl, seen } = await fakeEndpoint((res) => sse(res, ['Hel', 'lo', ' there']))
    const model = createOpenAiModel({ baseUrl, apiKey: 'sk-test', model: 'tiny', system: 'be brief' })
    const tokens = await collect(model.generate(context, new AbortController().signal))
    expect(tokens).toEqual(['Hel', 'lo', ' there'])
    expect(seen[0]?.url).toBe('/v1/chat/completions')
    expect(seen[0]?.authorization).toBe('Bearer sk-test')
    expect(seen[0]?.body.model).toBe('tiny')
    expect(seen[0]?.body.stream).toBe(true)
    expect(seen[0]?.body.messages).toEqual(toChatMessages(context, 'be brief'))
    expect(seen[0]?.body.messages?.[1]).toEqual({
      role: 'system',
      content: 'Summary of the earlier conversation: they met',
    })
  })

  it('handles events split across network chunks', async () => {
    const { baseUrl } = await fakeEndpoint((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const body = `data: ${JSON.stringify({ choices: [{ delta: { content: 'split' } }] })}\n\ndata: [DONE]\n\n`
      res.write(body.slice(0, 7))
      setImmediate(() => {
        res.write(body.slice(7))
        res.end()
      })
    })
    const model = createOpenAiModel({ baseUrl, model: 'tiny' })
    expect(await collect(model.generate(context, new AbortController().signal))).toEqual(['split'])
  })

  it('throws on an HTTP error with the status in the message', async () => {
    const { baseUrl } = await fakeEndpoint((res) => {
      res.writeHead(500)
      res.end('boom')
    })
    const model = createOpenAiModel({ baseUrl, model: 'tiny' })
    await expect(collect(model.generate(context, new AbortController().signal))).rejects.toThrow(/HTTP 500/)
  })

  it('stops when the signal aborts', async () => {
    const { baseUrl } = await fakeEndpoint((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: 'first' } }] })}\n\n`)
      // Never ends: only the abort can stop the reader.
    })
    const model = createOpenAiModel({ baseUrl, model: 'tiny' })
    const abort = new AbortController()
    const tokens: string[] = []
    await expect(
      (async () => {
        for await (const token of model.generate(context, abort.signal)) {
          tokens.push(token)
          abort.abort()
        }
      })(),
    ).rejects.toThrow()
    expect(tokens).toEqual(['first'])
    server?.closeAllConnections()
  })
})
