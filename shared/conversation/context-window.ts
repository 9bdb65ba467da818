// Choosing what a model sees: the newest messages that fit a token budget, preceded by the latest
// summary that covers the rest. Pure selection over views; no writes.

import type * as Y from 'yjs'
import { readMessages } from './messages.js'
import type { MessageStatus, MessageView, SummaryView } from './schema.js'
import { readSummaries } from './summaries.js'

/** What a model call gets: an optional summary, then messages oldest first, and their token total. */
export interface ContextWindow {
  readonly summary?: SummaryView
  readonly messages: MessageView[]
  /** Tokens of the summary text (if any) plus every message's content, by the given counter. */
  readonly tokens: number
}

/** Options of {@link contextWindow}. */
export interface ContextWindowOptions {
  /** The budget; the window never exceeds it. */
  readonly maxTokens: number
  /** Counts a text's tokens; must return a finite number ≥ 0 and be deterministic. */
  readonly countTokens: (text: string) => number
  /** Messages with other statuses are left out entirely; default {@link DEFAULT_CONTEXT_STATUSES}. */
  readonly includeStatuses?: readonly MessageStatus[]
  /**
   * A message longer than this many tokens enters the window cut to its beginning and end (see
   * {@link truncateContent}) instead of whole, so one huge message cannot push all history out.
   * Default: no limit.
   */
  readonly maxMessageTokens?: number
}

/** The marker put where {@link truncateContent} cut a message. */
export function truncationMarker(cutCharacters: number): string {
  return `\n[… ${cutCharacters} characters cut from this message …]\n`
}

/**
 * Cuts `content` to at most `maxTokens` by `countTokens`, keeping its beginning and its end around
 * a marker that says how much was cut; returns it unchanged when it already fits.
 *
 * @remarks Binary search on the number of characters kept (two thirds from the beginning, one third
 * from the end), so any monotone counter works. If not even the marker fits, returns `''`.
 */
export function truncateContent(
  content: string,
  maxTokens: number,
  countTokens: (text: string) => number,
): string {
  if (countTokens(content) <= maxTokens) return content
  const cut = (keep: number): string => {
    const head = Math.ceil((keep * 2) / 3)
    const tail = keep - head
    return `${content.slice(0, head)}${truncationMarker(content.length - keep)}${tail > 0 ? content.slice(content.length - tail) : ''}`
  }
  let low = 0
  let high = content.length - 1
  if (countTokens(cut(0)) > maxTokens) return ''
  while (low < high) {
    const middle = (low + high + 1) >>> 1
    if (countTokens(cut(middle)) <= maxTokens) low = middle
    else high = middle - 1
  }
  return cut(low)
}

/**
 * Statuses a context includes unless told otherwise: finished messages, and cancelled ones (their
 * partial text was shown to people). Streaming and failed messages are left out.
 */
export const DEFAULT_CONTEXT_STATUSES: readonly MessageStatus[] = ['complete', 'cancelled']

/** A cheap token estimate for demos and tests: one token per four UTF-16 code units, rounded up. */
export function approximateTokens(text: string): number {
  return Math.ceil(text.length / 4)
}

/**
 * Builds the context window for a model call from the document's messages and summaries.
 *
 * @remarks See {@link selectContextWindow} for the exact rule.
 */
export function contextWindow(doc: Y.Doc, options: ContextWindowOptions): ContextWindow {
  return selectContextWindow(readMessages(doc), readSummaries(doc), options)
}

/**
 * The selection behind {@link contextWindow}, over views already read.
 *
 * @remarks
 * Let E be the messages whose status is included, in array order, and n their number.
 * 1. Plain truncation: j0 is the smallest j such that E[j..n-1] fits (walking back from the newest
 *    message and stopping at the first that does not fit). If j0 = 0 everything fits: no summary.
 * 2. A summary *covers* E[j..] when its `coversThroughId` names a message at or after E[j-1] in the
 *    messages array (ids resolve to their first occurrence; a summary naming no message is ignored).
 *    S(j) is the latest such summary, latest meaning last in the summaries array.
 * 3. For j = j0, j0+1, … n-1 (only j = n, summary alone, when even the newest message does not fit):
 *    the first j where S(j) exists and S(j)'s text plus E[j..] fit is the answer. Stop at the first j
 *    with no covering summary: a larger j needs a summary covering even more.
 * 4. Otherwise the answer is the plain truncation of step 1.
 * With `maxMessageTokens`, every message is first cut to that size ({@link truncateContent}, the
 * view's metadata gains `truncatedFrom`: the original length); the rule then runs on the cut texts.
 * The summary's tokens are `countTokens(text)` (its stored `tokens` field is not trusted), so
 * `tokens ≤ maxTokens` always holds.
 */
export function selectContextWindow(
  messages: readonly MessageView[],
  summaries: readonly SummaryView[],
  options: ContextWindowOptions,
): ContextWindow {
  const { maxTokens } = options
  const included = new Set<MessageStatus>(options.includeStatuses ?? DEFAULT_CONTEXT_STATUSES)
  const { maxMessageTokens } = options
  const count = (text: string): number => {
    const tokens = options.countTokens(text)
    if (!Number.isFinite(tokens) || tokens < 0) {
      throw new RangeError(`countTokens must return a finite number ≥ 0, got ${tokens}`)
    }
    return tokens
  }
  const eligible: MessageView[] = []
  for (const message of messages) {
    if (!included.has(message.status)) continue
    if (maxMessageTokens === undefined) {
      eligible.push(message)
      continue
    }
    const content = truncateContent(message.content, maxMessageTokens, count)
    eligible.push(
      content === message.content
        ? message
        : { ...message, content, metadata: { ...message.metadata, truncatedFrom: message.content.length } },
    )
  }

  // Step 1: plain truncation, newest first.
  const costs: number[] = new Array<number>(eligible.length)
  let total = 0
  let j0 = eligible.length
  while (j0 > 0) {
    const cost = count(eligible[j0 - 1]!.content)
    if (!(total + cost <= maxTokens)) break
    total += cost
    costs[j0 - 1] = cost
    j0--
  }
  const truncated: ContextWindow = { messages: eligible.slice(j0), tokens: total }
  if (j0 === 0) return truncated

  const latestCovering = coveringSummaryFinder(messages, summaries)
  const summaryCosts = new Map<SummaryView, number>()
  let messageTokens = total
  const last = j0 === eligible.length ? eligible.length : eligible.length - 1
  for (let j = j0; j <= last; j++) {
    const summary = latestCovering(eligible[j - 1]!.index)
    if (summary === undefined) break
    let summaryTokens = summaryCosts.get(summary)
    if (summaryTokens === undefined) {
      summaryTokens = count(summary.text)
      summaryCosts.set(summary, summaryTokens)
    }
    if (summaryTokens + messageTokens <= maxTokens) {
      return { summary, messages: eligible.slice(j), tokens: summaryTokens + messageTokens }
    }
    if (j < eligible.length) messageTokens -= costs[j]!
  }
  return truncated
}

/**
 * Returns a lookup: given an array position, the last-added summary whose covered message sits at
 * or after it. Built once in O(s log s); each lookup is a binary search.
 */
function coveringSummaryFinder(
  messages: readonly MessageView[],
  summaries: readonly SummaryView[],
): (position: number) => SummaryView | undefined {
  const positions = new Map<string, number>()
  for (const message of messages) {
    if (!positions.has(message.id)) positions.set(message.id, message.index)
  }
  const placed: { readonly position: number; readonly order: number }[] = []
  summaries.forEach((summary, order) => {
    const position = positions.get(summary.coversThroughId)
    if (position !== undefined) placed.push({ position, order })
  })
  // By covered position, furthest first; best[i] = the latest summary among placed[0..i].
  placed.sort((a, b) => b.position - a.position)
  const best: number[] = []
  for (const [i, entry] of placed.entries()) {
    best.push(i === 0 ? entry.order : Math.max(best[i - 1]!, entry.order))
  }
  return (position) => {
    // Count the summaries with position ≥ the given one (they form a prefix of `placed`).
    let low = 0
    let high = placed.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (placed[middle]!.position >= position) low = middle + 1
      else high = middle
    }
    return low === 0 ? undefined : summaries[best[low - 1]!]
  }
}
