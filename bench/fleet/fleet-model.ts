// The bench's model: the demo model with a seeded answer time per question (uniform in
// [minMs, maxMs], from a hash of the seed and the question's id), so a redelivered turn takes its
// own time again and a resumed answer ends with exactly the text an uninterrupted one has.

import type { GenerateContext, TextModel } from '../../client/agent/model.js'
import { createDemoModel } from '../../client/agent/models/demo-model.js'

/** Tokens of every bench answer. */
export const FLEET_ANSWER_TOKENS = 20

/** FNV-1a of `text`, as a number in [0, 1). */
export function unitHash(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash / 2 ** 32
}

/** The seeded answer time of one question, in ms. */
export function answerMsOf(seed: number, messageId: string, minMs: number, maxMs: number): number {
  return Math.round(minMs + unitHash(`${seed}:${messageId}`) * (maxMs - minMs))
}

/** The demo model whose answer to each question takes its seeded time. */
export function createFleetModel(seed: number, minMs: number, maxMs: number): TextModel {
  const models = new Map<number, TextModel>()
  const modelFor = (delayMs: number): TextModel => {
    let model = models.get(delayMs)
    if (model === undefined) {
      model = createDemoModel({ tokens: FLEET_ANSWER_TOKENS, delayMs })
      models.set(delayMs, model)
    }
    return model
  }
  return {
    name: 'colloquy-demo-seeded',
    generate(context: GenerateContext, signal: AbortSignal) {
      const total = answerMsOf(seed, context.prompt.id, minMs, maxMs)
      return modelFor(Math.round(total / FLEET_ANSWER_TOKENS)).generate(context, signal)
    },
  }
}

/** The text of the whole answer to `question` (what every answer must end as, resumed or not). */
export async function expectedAnswer(question: string): Promise<string> {
  const model = createDemoModel({ tokens: FLEET_ANSWER_TOKENS, delayMs: 0 })
  const prompt = { content: question } as GenerateContext['prompt']
  let text = ''
  for await (const token of model.generate(
    { sessionId: '', prompt, messages: [prompt] },
    new AbortController().signal,
  ))
    text += token
  return text
}
