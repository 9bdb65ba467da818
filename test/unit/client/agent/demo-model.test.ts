import { describe, expect, it } from 'vitest'
import { createDemoModel, DEMO_ANSWER_TOKENS } from '../../../../client/agent/index.js'
import type { GenerateContext } from '../../../../client/agent/model.js'

async function answer(tokens?: number): Promise<string[]> {
  const model = createDemoModel({ delayMs: 0, ...(tokens === undefined ? {} : { tokens }) })
  const context = { prompt: { content: 'hello' } } as unknown as GenerateContext
  const out: string[] = []
  for await (const token of model.generate(context, new AbortController().signal)) out.push(token)
  return out
}

describe('the demo model', () => {
  it('regression #14: its default answer is whole, ending its last sentence', async () => {
    const tokens = await answer()
    expect(tokens).toHaveLength(DEMO_ANSWER_TOKENS)
    expect(tokens.join('').trim()).toMatch(/^You said: "hello"\. Here is .* cancel it\.$/)
    expect(tokens.every((token) => token.trim().length > 0)).toBe(true)
  })

  it('regression #14: an answer cut at a given length still ends with a full stop', async () => {
    for (const count of [2, 7, 60]) {
      const tokens = await answer(count)
      expect(tokens).toHaveLength(count)
      expect(tokens.join('').trim().endsWith('.')).toBe(true)
    }
  })
})
