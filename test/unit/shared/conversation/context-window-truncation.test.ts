import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  appendMessage,
  approximateTokens,
  contextWindow,
  truncateContent,
} from '../../../../shared/conversation/index.js'
import { agent, alice } from './helpers.js'

const countTokens = (text: string): number => text.length

describe('truncateContent', () => {
  it('returns a text that fits unchanged', () => {
    expect(truncateContent('short', 5, countTokens)).toBe('short')
  })

  it('keeps the beginning and the end around a marker, within the budget', () => {
    const text = `HEAD${'-'.repeat(10_000)}TAIL`
    const cut = truncateContent(text, 200, countTokens)
    expect(cut.length).toBeLessThanOrEqual(200)
    expect(cut.startsWith('HEAD')).toBe(true)
    expect(cut.endsWith('TAIL')).toBe(true)
    expect(cut).toMatch(/\[… \d+ characters cut from this message …\]/)
  })

  it('uses as much of the budget as it can', () => {
    const cut = truncateContent('x'.repeat(100_000), 1_000, approximateTokens)
    expect(approximateTokens(cut)).toBeGreaterThan(990)
    expect(approximateTokens(cut)).toBeLessThanOrEqual(1_000)
  })

  it('gives an empty text when not even the marker fits', () => {
    expect(truncateContent('x'.repeat(100), 3, countTokens)).toBe('')
  })
})

describe('contextWindow with maxMessageTokens', () => {
  it('regression: one huge message is cut instead of pushing every earlier message out', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, id: 'q1', content: 'first question' })
    appendMessage(doc, { role: 'assistant', author: agent, id: 'a1', content: 'first answer' })
    appendMessage(doc, { role: 'assistant', author: agent, id: 'huge', content: 'y'.repeat(200_000) })
    appendMessage(doc, { role: 'user', author: alice, id: 'q2', content: 'next?' })
    const plain = contextWindow(doc, { maxTokens: 2_000, countTokens: approximateTokens })
    expect(plain.messages.map((m) => m.id)).toEqual(['q2'])
    const window = contextWindow(doc, {
      maxTokens: 2_000,
      countTokens: approximateTokens,
      maxMessageTokens: 500,
    })
    expect(window.messages.map((m) => m.id)).toEqual(['q1', 'a1', 'huge', 'q2'])
    expect(window.tokens).toBeLessThanOrEqual(2_000)
    const huge = window.messages[2]!
    expect(huge.metadata.truncatedFrom).toBe(200_000)
    expect(approximateTokens(huge.content)).toBeLessThanOrEqual(500)
  })
})
