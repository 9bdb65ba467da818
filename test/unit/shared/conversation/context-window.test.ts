import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  addSummary,
  appendMessage,
  approximateTokens,
  contextWindow,
  type MessageStatus,
  openStreamingWriter,
} from '../../../../shared/conversation/index.js'
import { agent, alice } from './helpers.js'

/** One token per character keeps the arithmetic of these examples visible. */
const countTokens = (text: string): number => text.length

/** A conversation of messages m0…m(n-1) whose contents have the given lengths. */
function conversation(lengths: readonly number[], statuses: readonly MessageStatus[] = []): Y.Doc {
  const doc = new Y.Doc()
  lengths.forEach((length, i) => {
    appendMessage(doc, {
      role: i % 2 === 0 ? 'user' : 'assistant',
      author: i % 2 === 0 ? alice : agent,
      id: `m${i}`,
      content: 'x'.repeat(length),
      status: statuses[i] ?? 'complete',
    })
  })
  return doc
}

const ids = (window: { messages: readonly { id: string }[] }): string[] => window.messages.map((m) => m.id)

describe('contextWindow', () => {
  it('returns everything, without a summary, when everything fits', () => {
    const doc = conversation([3, 3, 3])
    addSummary(doc, { coversThroughId: 'm1', text: 'sum', author: agent })
    const window = contextWindow(doc, { maxTokens: 9, countTokens })
    expect(ids(window)).toEqual(['m0', 'm1', 'm2'])
    expect(window.summary).toBeUndefined()
    expect(window.tokens).toBe(9)
  })

  it('truncates to the newest messages that fit when no summary covers the rest', () => {
    const doc = conversation([5, 3, 3, 3])
    const window = contextWindow(doc, { maxTokens: 7, countTokens })
    expect(ids(window)).toEqual(['m2', 'm3'])
    expect(window.tokens).toBe(6)
  })

  it('stops at the first message that does not fit, even if an older one would', () => {
    const doc = conversation([1, 9, 2])
    expect(ids(contextWindow(doc, { maxTokens: 5, countTokens }))).toEqual(['m2'])
  })

  it('puts the summary covering the excluded messages before the newest messages', () => {
    const doc = conversation([4, 4, 4, 2, 2])
    addSummary(doc, { coversThroughId: 'm2', text: 'ss', author: agent, id: 's' })
    const window = contextWindow(doc, { maxTokens: 7, countTokens })
    expect(window.summary?.id).toBe('s')
    expect(ids(window)).toEqual(['m3', 'm4'])
    expect(window.tokens).toBe(6)
  })

  it('accepts a summary that covers more than the excluded messages', () => {
    const doc = conversation([4, 4, 2, 2])
    addSummary(doc, { coversThroughId: 'm3', text: 's', author: agent, id: 'far' })
    const window = contextWindow(doc, { maxTokens: 5, countTokens })
    expect(window.summary?.id).toBe('far')
    expect(ids(window)).toEqual(['m2', 'm3'])
  })

  it('ignores a summary that leaves an excluded message uncovered', () => {
    const doc = conversation([4, 4, 4, 2])
    addSummary(doc, { coversThroughId: 'm0', text: 's', author: agent })
    const window = contextWindow(doc, { maxTokens: 5, countTokens })
    expect(window.summary).toBeUndefined()
    expect(ids(window)).toEqual(['m3'])
  })

  it('uses the latest covering summary, latest meaning last added', () => {
    const doc = conversation([4, 4, 4, 2])
    addSummary(doc, { coversThroughId: 'm2', text: 'a', author: agent, id: 'older' })
    addSummary(doc, { coversThroughId: 'm2', text: 'b', author: agent, id: 'newer' })
    addSummary(doc, { coversThroughId: 'm0', text: 'c', author: agent, id: 'not-covering' })
    expect(contextWindow(doc, { maxTokens: 6, countTokens }).summary?.id).toBe('newer')
  })

  it('drops the oldest messages until the summary fits with them', () => {
    const doc = conversation([9, 2, 2, 2])
    addSummary(doc, { coversThroughId: 'm1', text: 'sss', author: agent, id: 's' })
    // Plain truncation would keep m1…m3 (6); the summary needs m1 dropped: 3 + 4 = 7.
    const window = contextWindow(doc, { maxTokens: 7, countTokens })
    expect(window.summary?.id).toBe('s')
    expect(ids(window)).toEqual(['m2', 'm3'])
    expect(window.tokens).toBe(7)
  })

  it('falls back to plain truncation when no covering summary fits even with the newest message alone', () => {
    const doc = conversation([9, 2, 2])
    addSummary(doc, { coversThroughId: 'm1', text: 'x'.repeat(10), author: agent })
    const window = contextWindow(doc, { maxTokens: 4, countTokens })
    expect(window.summary).toBeUndefined()
    expect(ids(window)).toEqual(['m1', 'm2'])
  })

  it('returns the summary alone when not even the newest message fits and the summary covers everything', () => {
    const doc = conversation([3, 9])
    addSummary(doc, { coversThroughId: 'm1', text: 'ss', author: agent, id: 's' })
    const window = contextWindow(doc, { maxTokens: 4, countTokens })
    expect(window).toEqual({ summary: expect.objectContaining({ id: 's' }), messages: [], tokens: 2 })
  })

  it('ignores summaries naming a message that does not exist', () => {
    const doc = conversation([4, 4, 2])
    addSummary(doc, { coversThroughId: 'elsewhere', text: 's', author: agent })
    expect(contextWindow(doc, { maxTokens: 5, countTokens }).summary).toBeUndefined()
  })

  it('leaves out streaming and failed messages by default, and includes what includeStatuses names', () => {
    const doc = conversation([1, 1, 1, 1], ['complete', 'cancelled', 'error', 'complete'])
    openStreamingWriter(doc, { author: agent, id: 'live', coalesceMs: 0 }).write('z')
    expect(ids(contextWindow(doc, { maxTokens: 100, countTokens }))).toEqual(['m0', 'm1', 'm3'])
    const all = contextWindow(doc, {
      maxTokens: 100,
      countTokens,
      includeStatuses: ['complete', 'cancelled', 'error', 'streaming'],
    })
    expect(ids(all)).toEqual(['m0', 'm1', 'm2', 'm3', 'live'])
  })

  it('judges coverage against the included message just before the window', () => {
    // m2 is an error message (excluded): a summary through m1 covers everything before m3.
    const doc = conversation([4, 4, 4, 2], ['complete', 'complete', 'error', 'complete'])
    addSummary(doc, { coversThroughId: 'm1', text: 's', author: agent, id: 's' })
    const window = contextWindow(doc, { maxTokens: 3, countTokens })
    expect(window.summary?.id).toBe('s')
    expect(ids(window)).toEqual(['m3'])
  })

  it('returns an empty window for an empty conversation or a budget of zero', () => {
    expect(contextWindow(new Y.Doc(), { maxTokens: 10, countTokens })).toEqual({ messages: [], tokens: 0 })
    expect(contextWindow(conversation([1]), { maxTokens: 0, countTokens })).toEqual({
      messages: [],
      tokens: 0,
    })
    expect(contextWindow(conversation([0]), { maxTokens: 0, countTokens }).messages).toHaveLength(1)
  })

  it('refuses a counter that returns a negative or non-finite number', () => {
    const doc = conversation([1])
    expect(() => contextWindow(doc, { maxTokens: 5, countTokens: () => -1 })).toThrow(RangeError)
    expect(() => contextWindow(doc, { maxTokens: 5, countTokens: () => Number.NaN })).toThrow(RangeError)
  })
})

describe('approximateTokens', () => {
  it('counts one token per four characters, rounded up', () => {
    expect(approximateTokens('')).toBe(0)
    expect(approximateTokens('abc')).toBe(1)
    expect(approximateTokens('abcd')).toBe(1)
    expect(approximateTokens('abcde')).toBe(2)
  })
})
