import { describe, expect, it } from 'vitest'
import {
  answeredPrompts,
  promptContext,
  threadOrder,
  unansweredPrompts,
} from '../../../../client/agent/conversation-view.js'
import {
  latestSummary,
  planSummary,
  SUMMARY_INSTRUCTION,
  summaryContext,
} from '../../../../client/agent/summarizer.js'
import type { MessageView, SummaryView } from '../../../../shared/conversation/index.js'

const countTokens = (text: string): number => text.length

function view(index: number, role: MessageView['role'], content: string, replyTo?: string): MessageView {
  return {
    id: `m${index}`,
    index,
    role,
    author: role === 'user' ? { id: 'device:a', kind: 'device' } : { id: 'agent:x', kind: 'agent' },
    createdAt: index,
    content,
    status: 'complete',
    metadata: replyTo === undefined ? {} : { replyTo },
  }
}

const summary = (coversThroughId: string, text: string): SummaryView => ({
  id: `s-${coversThroughId}`,
  coversThroughId,
  text,
  author: { id: 'agent:x', kind: 'agent' },
  createdAt: 0,
})

describe('which messages are unanswered', () => {
  it('decides by replyTo, not position: a burst of three with the second answered leaves the first and third', () => {
    const messages = [
      view(0, 'user', 'q0'),
      view(1, 'user', 'q1'),
      view(2, 'user', 'q2'),
      view(3, 'assistant', 'a1', 'm1'),
    ]
    expect(unansweredPrompts(messages).map((m) => m.id)).toEqual(['m0', 'm2'])
  })

  it('counts an error reply as answered: the error is the visible reason', () => {
    const messages = [view(0, 'user', 'q'), { ...view(1, 'assistant', '', 'm0'), status: 'error' as const }]
    expect(unansweredPrompts(messages)).toEqual([])
  })

  it('lets a reply without replyTo answer the user message right before it', () => {
    const messages = [view(0, 'user', 'early'), view(1, 'user', 'old'), view(2, 'assistant', 'legacy answer')]
    expect([...answeredPrompts(messages)]).toEqual(['m1'])
    expect(unansweredPrompts(messages).map((m) => m.id)).toEqual(['m0'])
  })
})

describe('promptContext', () => {
  it('gives the third question of a burst the answers to the first two, each after its question', () => {
    const messages = [
      view(0, 'user', 'one'),
      view(1, 'user', 'two'),
      view(2, 'user', 'three'),
      view(3, 'assistant', 'A1', 'm0'),
      view(4, 'assistant', 'A2', 'm1'),
      view(5, 'user', 'four, asked later'),
    ]
    const context = promptContext(messages, [], 'm2', { maxTokens: 1_000, countTokens })!
    expect(context.messages.map((m) => m.content)).toEqual(['one', 'A1', 'two', 'A2', 'three'])
  })

  it('is undefined for a message that is gone', () => {
    expect(promptContext([view(0, 'user', 'q')], [], 'nope', { maxTokens: 10, countTokens })).toBeUndefined()
  })

  it('threadOrder keeps messages without a question in the list where they are', () => {
    const messages = [view(0, 'system', 'sys'), view(1, 'user', 'q'), view(2, 'assistant', 'a', 'elsewhere')]
    expect(threadOrder(messages).map((m) => m.id)).toEqual(['m0', 'm1', 'm2'])
  })
})

describe('planSummary', () => {
  const policy = {
    summarizeAtTokens: 30,
    keepRecentTokens: 10,
    maxInputTokens: 25,
    maxMessageTokens: 100,
    countTokens,
  }
  const messages = Array.from({ length: 10 }, (_, i) =>
    view(i, i % 2 === 0 ? 'user' : 'assistant', `msg-${i}`),
  )

  it('does nothing while what no summary covers stays under the threshold', () => {
    expect(planSummary(messages.slice(0, 5), [], 5, policy)).toBeUndefined()
  })

  it('folds the oldest uncovered messages that fit, keeping the newest out', () => {
    const plan = planSummary(messages, [], 10, policy)!
    expect(plan.previous).toBeUndefined()
    expect(plan.messages.map((m) => m.id)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
    expect(plan.coversThroughId).toBe('m4')
  })

  it('continues from the latest summary and folds it in', () => {
    const earlier = summary('m4', 'S')
    const more = [...messages, ...Array.from({ length: 6 }, (_, i) => view(10 + i, 'user', `msg-${10 + i}`))]
    const plan = planSummary(more, [earlier], 16, policy)!
    expect(plan.previous).toEqual(earlier)
    expect(plan.messages[0]?.id).toBe('m5')
    expect(latestSummary(more, [earlier])?.position).toBe(4)
  })

  it('builds a request that ends with the instruction, the previous summary first', () => {
    const plan = { previous: summary('m1', 'S'), messages: messages.slice(2, 4), coversThroughId: 'm3' }
    const context = summaryContext('s', plan, { id: 'agent:x', kind: 'agent' })
    expect(context.summary?.text).toBe('S')
    expect(context.messages.map((m) => m.content)).toEqual(['msg-2', 'msg-3', SUMMARY_INSTRUCTION])
  })
})
