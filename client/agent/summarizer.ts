// Context compression by the agent: when the messages no summary covers pass a threshold, ask the
// model for a summary of the older ones and add it to the document's `summaries`. Decides what
// to summarise; the model call itself is the caller's (so timeouts and aborts apply to it too).

import {
  DEFAULT_CONTEXT_STATUSES,
  type MessageView,
  type SummaryView,
  truncateContent,
} from '../../shared/conversation/index.js'
import type { GenerateContext } from './model.js'

/** Thresholds of {@link planSummary}, in tokens. */
export interface SummaryPolicy {
  /** Summarise once the messages no summary covers exceed this. */
  readonly summarizeAtTokens: number
  /** The newest messages worth this many tokens stay out of a new summary (they go to the model verbatim). */
  readonly keepRecentTokens: number
  /** Budget of one summarisation request: previous summary plus the messages it folds in. */
  readonly maxInputTokens: number
  /** A single message longer than this is cut before it is summarised. */
  readonly maxMessageTokens: number
  readonly countTokens: (text: string) => number
}

/** One summarisation step: fold `messages` into `previous` (if any); the result covers through `coversThroughId`. */
export interface SummaryPlan {
  readonly previous?: SummaryView
  readonly messages: MessageView[]
  readonly coversThroughId: string
}

/** The instruction given to the model as the last user message of a summarisation request. */
export const SUMMARY_INSTRUCTION =
  'Summarise the conversation above for your own later use, in at most 200 words: keep names, facts, ' +
  'decisions, numbers and open questions; leave out small talk. Write only the summary.'

/**
 * The latest summary that names a message present in `messages`, with that message's position.
 *
 * @remarks "Latest" is the furthest coverage; among equal coverage, the last added.
 */
export function latestSummary(
  messages: readonly MessageView[],
  summaries: readonly SummaryView[],
): { readonly summary: SummaryView; readonly position: number } | undefined {
  const positions = new Map<string, number>()
  for (const message of messages) if (!positions.has(message.id)) positions.set(message.id, message.index)
  let best: { summary: SummaryView; position: number } | undefined
  for (const summary of summaries) {
    const position = positions.get(summary.coversThroughId)
    if (position !== undefined && (best === undefined || position >= best.position))
      best = { summary, position }
  }
  return best
}

/**
 * Whether the conversation before `beforeIndex` needs a new summary, and of what.
 *
 * @remarks Only finished messages count (`complete`, `cancelled`). Returns undefined while the
 * uncovered ones stay within `summarizeAtTokens`. Otherwise the plan folds the oldest uncovered
 * messages, as many as fit `maxInputTokens` beside the previous summary, leaving at least the
 * newest `keepRecentTokens` out; several steps may be needed for a long backlog.
 */
export function planSummary(
  messages: readonly MessageView[],
  summaries: readonly SummaryView[],
  beforeIndex: number,
  policy: SummaryPolicy,
): SummaryPlan | undefined {
  const statuses = new Set(DEFAULT_CONTEXT_STATUSES)
  const latest = latestSummary(messages, summaries)
  const uncovered = messages
    .filter(
      (m) =>
        statuses.has(m.status) &&
        m.index < beforeIndex &&
        (latest === undefined || m.index > latest.position),
    )
    .map((m) => {
      const content = truncateContent(m.content, policy.maxMessageTokens, policy.countTokens)
      return content === m.content ? m : { ...m, content }
    })
  const costs = uncovered.map((m) => policy.countTokens(m.content))
  const total = costs.reduce((sum, cost) => sum + cost, 0)
  if (total <= policy.summarizeAtTokens) return undefined
  // Keep the newest messages out, up to keepRecentTokens.
  let keep = 0
  let kept = 0
  for (let i = uncovered.length - 1; i >= 0; i--) {
    if (kept + costs[i]! > policy.keepRecentTokens) break
    kept += costs[i]!
    keep++
  }
  const foldable = uncovered.length - keep
  if (foldable <= 0) return undefined
  let budget = policy.maxInputTokens - (latest === undefined ? 0 : policy.countTokens(latest.summary.text))
  const chosen: MessageView[] = []
  for (let i = 0; i < foldable; i++) {
    if (costs[i]! > budget && chosen.length > 0) break
    budget -= costs[i]!
    chosen.push(uncovered[i]!)
  }
  return {
    ...(latest === undefined ? {} : { previous: latest.summary }),
    messages: chosen,
    coversThroughId: chosen[chosen.length - 1]!.id,
  }
}

/** The model context of a summarisation step: the previous summary, the messages, then the instruction. */
export function summaryContext(
  sessionId: string,
  plan: SummaryPlan,
  author: MessageView['author'],
): GenerateContext {
  const instruction: MessageView = {
    id: `summary-request:${plan.coversThroughId}`,
    index: -1,
    role: 'user',
    author,
    createdAt: Date.now(),
    content: SUMMARY_INSTRUCTION,
    status: 'complete',
    metadata: {},
  }
  return {
    sessionId,
    prompt: instruction,
    messages: [...plan.messages, instruction],
    ...(plan.previous === undefined ? {} : { summary: plan.previous }),
  }
}
