// Seeded property: random conversations, summaries, budgets and statuses. The window never exceeds
// the budget, is a contiguous suffix, keeps the newest message that fits, and uses the latest summary
// that covers the rest whenever one fits. Replay a failure with SEED=<printed seed>.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  type Author,
  addSummary,
  appendMessage,
  type ContextWindow,
  contextWindow,
  DEFAULT_CONTEXT_STATUSES,
  type MessageStatus,
  type MessageView,
  readMessages,
  readSummaries,
  type SummaryView,
} from '../../shared/conversation/index.js'

const author: Author = { id: 'peer', kind: 'device' }
const WORDS = ['a', 'tok', 'en', 'streaming', 'yjs', 'summary', '—', 'ü', ' ']

interface Case {
  readonly messages: readonly { readonly text: string; readonly status: MessageStatus }[]
  /** `fromEnd` counts back from the newest message (0); outside the conversation it names no message. */
  readonly summaries: readonly { readonly fromEnd: number; readonly text: string }[]
  readonly maxTokens: number
  readonly statuses: readonly MessageStatus[] | undefined
}

const text = fc.array(fc.constantFrom(...WORDS), { maxLength: 12 }).map((words) => words.join(''))
const shortText = fc.array(fc.constantFrom(...WORDS), { maxLength: 6 }).map((words) => words.join(''))
const status = fc.constantFrom<MessageStatus>(
  'complete',
  'complete',
  'complete',
  'cancelled',
  'error',
  'streaming',
)
const arbitraryCase: fc.Arbitrary<Case> = fc.record({
  messages: fc.array(fc.record({ text, status }), { maxLength: 30, size: 'medium' }),
  summaries: fc.array(fc.record({ fromEnd: fc.integer({ min: -1, max: 12 }), text: shortText }), {
    maxLength: 6,
  }),
  maxTokens: fc.integer({ min: 0, max: 40 }),
  statuses: fc.option(fc.subarray<MessageStatus>(['streaming', 'complete', 'cancelled', 'error']), {
    nil: undefined,
  }),
})

/** Deterministic, not additive over characters (rounding), and zero for empty text. */
const countTokens = (value: string): number => Math.ceil(value.length / 3)

function build(testCase: Case): Y.Doc {
  const doc = new Y.Doc()
  testCase.messages.forEach((message, i) => {
    appendMessage(doc, { role: 'user', author, id: `m${i}`, content: message.text, status: message.status })
  })
  for (const summary of testCase.summaries) {
    const covers = testCase.messages.length - 1 - summary.fromEnd
    addSummary(doc, { coversThroughId: `m${covers}`, text: summary.text, author })
  }
  return doc
}

const sum = (messages: readonly MessageView[]): number =>
  messages.reduce((total, message) => total + countTokens(message.content), 0)

/** The latest (last added) summary whose covered message (any status) sits at or after `position`. */
function latestCovering(
  summaries: readonly SummaryView[],
  messages: readonly MessageView[],
  position: number,
): SummaryView | undefined {
  const covered = (summary: SummaryView): number =>
    messages.find((m) => m.id === summary.coversThroughId)?.index ?? Number.NEGATIVE_INFINITY
  return summaries.filter((summary) => covered(summary) >= position).at(-1)
}

function check(testCase: Case): void {
  const doc = build(testCase)
  const options = {
    maxTokens: testCase.maxTokens,
    countTokens,
    ...(testCase.statuses === undefined ? {} : { includeStatuses: testCase.statuses }),
  }
  const window: ContextWindow = contextWindow(doc, options)
  const included = new Set(testCase.statuses ?? DEFAULT_CONTEXT_STATUSES)
  const all = readMessages(doc)
  const eligible = all.filter((m) => included.has(m.status))
  const summaries = readSummaries(doc)
  const n = eligible.length
  const start = n - window.messages.length
  const { maxTokens } = testCase

  // Never exceeds the budget, and `tokens` is what the counter says.
  const summaryTokens = window.summary === undefined ? 0 : countTokens(window.summary.text)
  expect(window.tokens).toBe(summaryTokens + sum(window.messages))
  expect(window.tokens).toBeLessThanOrEqual(maxTokens)

  // A contiguous suffix of the included messages, in order.
  expect(window.messages).toEqual(eligible.slice(start))

  // The newest message is kept whenever it fits on its own.
  const newest = eligible.at(-1)
  if (newest !== undefined && countTokens(newest.content) <= maxTokens) {
    expect(window.messages.at(-1)?.id).toBe(newest.id)
  }

  // Plain truncation: the longest suffix that fits.
  let plainStart = n
  while (plainStart > 0 && sum(eligible.slice(plainStart - 1)) <= maxTokens) plainStart--

  // A summary used is the latest one covering everything before the window, and something is left out.
  if (window.summary !== undefined) {
    expect(start).toBeGreaterThan(0)
    expect(window.summary).toEqual(latestCovering(summaries, all, eligible[start - 1]!.index))
  } else if (start !== plainStart) {
    throw new Error(`without a summary the window must be the plain truncation (${start} ≠ ${plainStart})`)
  }

  // When a covering summary fits with at least the newest message, it is used, with as many messages
  // as possible; nothing fits better than what was chosen.
  if (plainStart > 0) {
    let best: number | undefined
    const last = plainStart === n ? n : n - 1
    for (let j = plainStart; j <= last && best === undefined; j++) {
      const summary = latestCovering(summaries, all, eligible[j - 1]!.index)
      if (summary !== undefined && countTokens(summary.text) + sum(eligible.slice(j)) <= maxTokens) best = j
    }
    if (best === undefined) {
      expect(window.summary).toBeUndefined()
      expect(start).toBe(plainStart)
    } else {
      expect(window.summary).toBeDefined()
      expect(start).toBe(best)
    }
  } else {
    expect(window.summary).toBeUndefined()
    expect(start).toBe(0)
  }

  // Every replica builds the same window.
  const replica = new Y.Doc()
  Y.applyUpdate(replica, Y.encodeStateAsUpdate(doc))
  expect(contextWindow(replica, options)).toEqual(window)
}

describe('contextWindow (property)', () => {
  it('fits the budget, keeps a contiguous newest suffix and uses the latest covering summary', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`context-window property seed: ${seed}`)
    fc.assert(
      fc.property(arbitraryCase, (testCase) => check(testCase)),
      { seed, numRuns: 500 },
    )
  })

  it('covers the edge cases every run', () => {
    const base = { statuses: undefined, summaries: [] }
    check({ ...base, messages: [], maxTokens: 10 })
    check({ ...base, messages: [{ text: 'yjs', status: 'complete' }], maxTokens: 0 })
    check({
      messages: [
        { text: 'streaming streaming', status: 'complete' },
        { text: 'yjs yjs yjs', status: 'complete' },
      ],
      summaries: [{ fromEnd: 0, text: 'a' }],
      maxTokens: 2,
      statuses: undefined,
    })
  })
})
