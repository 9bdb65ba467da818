// An adapter for any OpenAI-compatible chat-completions endpoint with streaming (server-sent
// events): base URL and key from config. Uses the platform's fetch; nothing else.

import type { GenerateContext, Model } from '../model.js'

/** Options of {@link createOpenAiModel}. */
export interface OpenAiModelOptions {
  /** e.g. `https://api.example.com/v1` (the adapter appends `/chat/completions`). */
  readonly baseUrl: string
  readonly apiKey?: string
  readonly model: string
  readonly temperature?: number
  readonly maxTokens?: number
  /** A system prompt placed before the conversation. */
  readonly system?: string
  readonly fetch?: typeof fetch
}

interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string
}

/** Turns a context window into chat-completions messages (summary first, as a system message). */
export function toChatMessages(context: GenerateContext, system?: string): ChatMessage[] {
  const messages: ChatMessage[] = []
  if (system !== undefined) messages.push({ role: 'system', content: system })
  if (context.summary !== undefined) {
    messages.push({ role: 'system', content: `Summary of the earlier conversation: ${context.summary.text}` })
  }
  for (const message of context.messages) {
    if (message.content.length === 0 && message.role === 'assistant') continue
    messages.push({ role: message.role, content: message.content })
  }
  return messages
}

/** Reads an SSE body and yields each event's `data` payload. */
async function* readServerSentData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  const reader = body.getReader()
  let buffer = ''
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end < 0) break
        const event = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n')
        if (data.length > 0) yield data
      }
    }
  } finally {
    reader.releaseLock()
  }
}

/** Creates a model that streams from an OpenAI-compatible `/chat/completions` endpoint. */
export function createOpenAiModel(options: OpenAiModelOptions): Model {
  const doFetch = options.fetch ?? fetch
  const url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`
  return {
    name: options.model,
    async *generate(context, signal) {
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        accept: 'text/event-stream',
      }
      if (options.apiKey !== undefined) headers.authorization = `Bearer ${options.apiKey}`
      const response = await doFetch(url, {
        method: 'POST',
        headers,
        signal,
        body: JSON.stringify({
          model: options.model,
          stream: true,
          messages: toChatMessages(context, options.system),
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
          ...(options.maxTokens === undefined ? {} : { max_tokens: options.maxTokens }),
        }),
      })
      if (!response.ok || response.body === null) {
        const text = await response.text().catch(() => '')
        throw new Error(`chat completions failed: HTTP ${response.status} ${text.slice(0, 200)}`)
      }
      for await (const data of readServerSentData(response.body)) {
        if (data === '[DONE]') return
        let chunk: { choices?: { delta?: { content?: unknown } }[]; error?: { message?: string } }
        try {
          chunk = JSON.parse(data) as typeof chunk
        } catch (error) {
          throw new Error(`chat completions sent invalid JSON: ${data.slice(0, 100)}`, { cause: error })
        }
        if (chunk.error !== undefined)
          throw new Error(`chat completions error: ${chunk.error.message ?? 'unknown'}`)
        const content = chunk.choices?.[0]?.delta?.content
        if (typeof content === 'string' && content.length > 0) yield content
      }
    },
  }
}
