// Records a model's tool calls and their results in the conversation, as docs/conversation-model.md
// §10 says: each call is appended to the answer's `metadata.toolCalls`, each result is a `tool`
// message whose `replyTo` is the answer, so every device sees what the model did and a later model
// call can read it back.

import type * as Y from 'yjs'
import {
  type Author,
  appendMessage,
  readMessage,
  updateMessageMetadata,
} from '../../shared/conversation/index.js'
import type { ModelEvent } from './model.js'

/** One entry of an answer's `metadata.toolCalls`. */
export interface RecordedToolCall {
  readonly id: string
  readonly name: string
  readonly input: unknown
}

/** Longest text of a tool result kept in its message; the rest is cut with a marker. */
export const MAX_TOOL_RESULT_CHARS = 20_000

function asJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value ?? null)) as unknown
  } catch {
    return String(value)
  }
}

function resultText(output: unknown): string {
  let text: string
  if (typeof output === 'string') text = output
  else {
    try {
      text = JSON.stringify(output) ?? String(output)
    } catch {
      text = String(output)
    }
  }
  if (text.length <= MAX_TOOL_RESULT_CHARS) return text
  return `${text.slice(0, MAX_TOOL_RESULT_CHARS)}[… ${text.length - MAX_TOOL_RESULT_CHARS} characters cut]`
}

/**
 * Writes one model event into `doc`: a tool call into the answer's metadata (kept once per call
 * id, so a resumed answer does not record a call twice), a result as a `tool` message.
 *
 * @remarks Returns false when the answer message is gone. Tool result messages get the id
 * `<answerId>:tool:<call id>`, and one that already exists is not written again.
 */
export function recordModelEvent(
  doc: Y.Doc,
  answerId: string,
  event: ModelEvent,
  author: Author,
  origin?: unknown,
): boolean {
  const answer = readMessage(doc, answerId)
  if (answer === undefined) return false
  if (event.kind === 'tool-call') {
    const calls = (answer.metadata.toolCalls ?? []) as readonly Partial<RecordedToolCall>[]
    if (calls.some((call) => call?.id === event.id)) return true
    const call: RecordedToolCall = { id: event.id, name: event.name, input: asJson(event.input) }
    return updateMessageMetadata(doc, answerId, { toolCalls: [...calls, call] }, origin)
  }
  const id = `${answerId}:tool:${event.id}`
  if (readMessage(doc, id) !== undefined) return true
  appendMessage(
    doc,
    {
      id,
      role: 'tool',
      author,
      content: resultText(event.output),
      status: event.isError === true ? 'error' : 'complete',
      metadata: { replyTo: answerId, toolCallId: event.id, toolName: event.name },
    },
    origin,
  )
  return true
}
