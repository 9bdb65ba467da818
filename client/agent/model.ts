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
}

/**
 * A model: streams the reply's text, token by token.
 *
 * @remarks `signal` aborts when any device cancels the reply or the agent stops; a model should
 * stop producing promptly (and may throw an AbortError, which the agent treats as a cancel).
 */
export interface Model {
  readonly name: string
  generate(context: GenerateContext, signal: AbortSignal): AsyncIterable<string>
}
