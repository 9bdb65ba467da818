// What the agent reads from the conversation: which user messages still wait for an answer, and
// the context a model gets for one of them. Pure functions over views; no writes, no I/O.

import {
  type ContextWindowOptions,
  type MessageView,
  type SummaryView,
  selectContextWindow,
} from '../../shared/conversation/index.js'

/**
 * The ids of the user messages that have an answer.
 *
 * @remarks A message is answered when some message's `metadata.replyTo` names it, whatever that
 * reply's status (an `error` or `cancelled` reply is the visible reason). For replies written
 * without `replyTo` (older agents), a non-user message with no `replyTo` answers the nearest user
 * message before it that is not answered yet, so an old conversation is not answered twice.
 */
export function answeredPrompts(messages: readonly MessageView[]): Set<string> {
  const answered = new Set<string>()
  let lastUser: string | undefined
  for (const message of messages) {
    const replyTo = message.metadata.replyTo
    if (replyTo !== undefined) answered.add(replyTo)
    if (message.role === 'user') lastUser = message.id
    else if (replyTo === undefined && lastUser !== undefined) {
      answered.add(lastUser)
      lastUser = undefined
    }
  }
  return answered
}

/** The user messages with no answer, oldest first. */
export function unansweredPrompts(messages: readonly MessageView[]): MessageView[] {
  const answered = answeredPrompts(messages)
  return messages.filter((message) => message.role === 'user' && !answered.has(message.id))
}

/** What {@link promptContext} returns: the model's view of the conversation for one prompt. */
export interface PromptContext {
  readonly summary?: SummaryView
  /** Oldest first, each reply right after the message it answers; the prompt is the last. */
  readonly messages: MessageView[]
  readonly tokens: number
}

/**
 * The context for answering `promptId`, from the document's messages as they are now.
 *
 * @remarks Candidates are every message up to the prompt, plus the replies (non-user messages with
 * `replyTo`) written later to a message before the prompt: after a burst of questions, the third
 * prompt carries the answers to the first two even though they sit after it in the array. Later
 * user messages and their replies are left out. The window rule is `selectContextWindow`'s; the
 * chosen messages are then put in thread order (each reply after its question).
 */
export function promptContext(
  messages: readonly MessageView[],
  summaries: readonly SummaryView[],
  promptId: string,
  options: ContextWindowOptions,
): PromptContext | undefined {
  const prompt = messages.find((message) => message.id === promptId)
  if (prompt === undefined) return undefined
  const positions = new Map<string, number>()
  for (const message of messages) if (!positions.has(message.id)) positions.set(message.id, message.index)
  const candidates = messages.filter((message) => {
    if (message.index <= prompt.index) return true
    if (message.role === 'user') return false
    const target =
      message.metadata.replyTo === undefined ? undefined : positions.get(message.metadata.replyTo)
    return target !== undefined && target < prompt.index
  })
  const window = selectContextWindow(candidates, summaries, options)
  return {
    ...(window.summary === undefined ? {} : { summary: window.summary }),
    messages: threadOrder(window.messages, prompt.id),
    tokens: window.tokens,
  }
}

/** Moves each reply right after the message it answers (when that message is in the list); the prompt goes last. */
export function threadOrder(messages: readonly MessageView[], promptId?: string): MessageView[] {
  const present = new Set(messages.map((message) => message.id))
  const replies = new Map<string, MessageView[]>()
  for (const message of messages) {
    const target = message.metadata.replyTo
    if (target === undefined || target === message.id || !present.has(target)) continue
    const list = replies.get(target) ?? []
    list.push(message)
    replies.set(target, list)
  }
  const isThreaded = (message: MessageView): boolean => {
    const target = message.metadata.replyTo
    return target !== undefined && target !== message.id && present.has(target)
  }
  const ordered: MessageView[] = []
  const emitted = new Set<MessageView>()
  const emit = (message: MessageView, depth: number): void => {
    if (emitted.has(message) || depth > 64) return
    emitted.add(message)
    ordered.push(message)
    for (const reply of replies.get(message.id) ?? []) emit(reply, depth + 1)
  }
  let prompt: MessageView | undefined
  for (const message of messages) {
    if (message.id === promptId) {
      prompt = message
      continue
    }
    if (!isThreaded(message)) emit(message, 0)
  }
  // Replies whose question was emitted later than them by no rule above (cycles) are kept too.
  for (const message of messages) if (message !== prompt && !emitted.has(message)) emit(message, 0)
  if (prompt !== undefined) ordered.push(prompt)
  return ordered
}
