// The model interface an agent calls: a pluggable async iterator of text tokens.

import type { MessageView, SummaryView } from '../../shared/conversation/index.js'

/** What a model is given for one reply. */
export interface GenerateContext {
  readonly sessionId: string
  /** The user message being answered. */
  readonly prompt: MessageView
  /** The newest messages that fit the context budget, oldest first (the prompt is the last one). */
  readonly messages: readonly MessageView[]
  /** The summary covering everything older than `messages`, if one exists and fits. */
  readonly summary?: SummaryView
  /**
   * Set when this call resumes an answer another worker started and did not finish: the answer's
   * durable text so far. The model continues from exactly there; the caller appends only what it
   * yields, so nothing already shown is repeated or lost.
   */
  readonly continueFrom?: string
}

/** A model calling a tool: recorded in the answer's `metadata.toolCalls`. */
export interface ToolCallEvent {
  readonly kind: 'tool-call'
  readonly id: string
  readonly name: string
  readonly input: unknown
}

/** A tool's result: recorded as a `tool` message answering the answer (docs/conversation-model.md §10). */
export interface ToolResultEvent {
  readonly kind: 'tool-result'
  readonly id: string
  readonly name: string
  readonly output: unknown
  /** True when the tool failed; `output` is then the error's text. */
  readonly isError?: boolean
}

/** What a model may yield besides text: its tool calls and their results. */
export type ModelEvent = ToolCallEvent | ToolResultEvent

/** True when `value` is a {@link ModelEvent} (anything else a model yields that is not a string is ignored). */
export function isModelEvent(value: unknown): value is ModelEvent {
  if (typeof value !== 'object' || value === null) return false
  const kind = (value as { kind?: unknown }).kind
  const id = (value as { id?: unknown }).id
  return (kind === 'tool-call' || kind === 'tool-result') && typeof id === 'string'
}

/**
 * A model: streams the reply's text, token by token, and may yield {@link ModelEvent}s between
 * tokens (tool calls and their results).
 *
 * @remarks `signal` aborts when any device cancels the reply or the agent stops; a model should
 * stop producing promptly (and may throw an AbortError, which the agent treats as a cancel).
 */
export interface Model {
  readonly name: string
  generate(context: GenerateContext, signal: AbortSignal): AsyncIterable<string | ModelEvent>
}

/** A model that yields text only (the demo and OpenAI-compatible models). */
export interface TextModel extends Model {
  generate(context: GenerateContext, signal: AbortSignal): AsyncIterable<string>
}
