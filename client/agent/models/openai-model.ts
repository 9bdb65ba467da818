// An adapter for any OpenAI-compatible chat-completions endpoint with streaming (server-sent
// events): base URL and key from config. Uses the platform's fetch; nothing else.

import type { GenerateContext, TextModel } from '../model.js'
import { ModelError, ModelErrorCode, parseRetryAfter } from '../model-error.js'

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

/** Sent after the partial answer of a resumed turn: the model continues it rather than restart. */
export const CONTINUE_INSTRUCTION =
  'Your previous answer (above) was cut off. Continue it from exactly where it stopped, without repeating any of it.'

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
  if (context.continueFrom !== undefined && context.continueFrom.length > 0) {
    messages.push({ role: 'assistant', content: context.continueFrom })
    messages.push({ role: 'system', content: CONTINUE_INSTRUCTION })
  }
  return messages
}

/** The error codes of a connection the other side closed or reset (undici's, then Node's). */
const RESET_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED'])

function errorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (typeof e === 'object' && 'code' in e && typeof e.code === 'string') return e.code
    e = typeof e === 'object' && 'cause' in e ? e.cause : undefined
  }
  return undefined
}

/** Turns a failure of the body read (not an abort) into a {@link ModelError} that says what happened. */
function bodyReadError(error: unknown): ModelError {
  const code = errorCode(error)
  if (code !== undefined && RESET_CODES.has(code)) {
    return new ModelError(ModelErrorCode.ConnectionReset, 'connection reset by the model server', {
      cause: error,
    })
  }
  const detail = error instanceof Error ? error.message : String(error)
  return new ModelError(ModelErrorCode.ConnectionReset, `the model's stream failed: ${detail}`, {
    cause: error,
  })
}

/**
 * Reads an SSE body and yields each event's `data` payload.
 *
 * @remarks The reader is cancelled (not only released) when the consumer stops early, so the HTTP
 * response is closed rather than left streaming. A read that fails is reported as a
 * {@link ModelError}; the caller decides what an end without an end marker means.
 */
async function* readServerSentData(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  const reader = body.getReader()
  let buffer = ''
  let isFinished = false
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (error) {
        if (signal.aborted) throw error
        throw bodyReadError(error)
      }
      if (chunk.done) break
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, '\n')
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
    isFinished = true
  } finally {
    // Cancel on every early exit: releasing the lock alone would leave the response streaming.
    if (!isFinished) await reader.cancel().catch(() => {})
    reader.releaseLock()
  }
}

interface ChatChunk {
  choices?: { delta?: { content?: unknown }; finish_reason?: unknown }[]
  error?: { message?: string }
}

/**
 * Creates a model that streams from an OpenAI-compatible `/chat/completions` endpoint.
 *
 * @remarks The stream counts as finished only on `data: [DONE]` or a chunk with a `finish_reason`;
 * a body that ends otherwise throws {@link ModelError} `stream-ended-early`, a closed or reset
 * connection `connection-reset`. An HTTP error status throws `http` with the status and the
 * server's `Retry-After` (the agent retries 429 and 5xx before the first token). The request is
 * made with the given signal, so aborting it closes the connection.
 */
export function createOpenAiModel(options: OpenAiModelOptions): TextModel {
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
      let response: Response
      try {
        response = await doFetch(url, {
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
      } catch (error) {
        if (signal.aborted) throw error
        const code = errorCode(error)
        throw new ModelError(
          ModelErrorCode.Unreachable,
          `could not reach the model server${code === undefined ? '' : ` (${code})`}`,
          { cause: error },
        )
      }
      if (!response.ok || response.body === null) {
        const text = await response.text().catch(() => '')
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'))
        throw new ModelError(
          ModelErrorCode.Http,
          `the model server answered HTTP ${response.status}${text.length > 0 ? `: ${text.slice(0, 200)}` : ''}`,
          { status: response.status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) },
        )
      }
      let hasFinishReason = false
      for await (const data of readServerSentData(response.body, signal)) {
        if (data === '[DONE]') return
        let chunk: ChatChunk
        try {
          chunk = JSON.parse(data) as ChatChunk
        } catch (error) {
          throw new ModelError(
            ModelErrorCode.InvalidResponse,
            `the model server sent invalid JSON: ${data.slice(0, 100)}`,
            { cause: error },
          )
        }
        if (chunk.error !== undefined) {
          throw new ModelError(
            ModelErrorCode.ModelReported,
            `the model reported an error: ${chunk.error.message ?? 'unknown'}`,
          )
        }
        const choice = chunk.choices?.[0]
        const content = choice?.delta?.content
        if (typeof content === 'string' && content.length > 0) yield content
        if (typeof choice?.finish_reason === 'string') hasFinishReason = true
      }
      if (!hasFinishReason) {
        throw new ModelError(ModelErrorCode.StreamEndedEarly, "the model's stream ended early")
      }
    },
  }
}
