// A deterministic demo model: no network, for tests and the quick start. Its reply depends only on
// the prompt and its options, so tests can predict every token.

import type { GenerateContext, TextModel } from '../model.js'
import { pause } from '../model-call.js'

/** Options of {@link createDemoModel}. */
export interface DemoModelOptions {
  /** Tokens per reply (default: one whole answer, {@link DEMO_ANSWER_TOKENS} tokens). */
  readonly tokens?: number
  /** Delay between tokens in ms (default 15; 0 yields to the event loop only). */
  readonly delayMs?: number
  /** Makes the text of token `i` (default: words of a fixed reply mentioning the prompt). */
  readonly token?: (i: number, context: GenerateContext) => string
}

const WORDS = (
  'Here is a deterministic answer from the Colloquy demo model. It streams one token at a time ' +
  'so every device in the session sees the reply grow, and any device can cancel it.'
).split(' ')

/** Tokens of the demo model's whole default answer: the echo of the prompt, then every word once. */
export const DEMO_ANSWER_TOKENS = 1 + WORDS.length

function defaultToken(i: number, context: GenerateContext): string {
  if (i === 0) return `You said: "${context.prompt.content.slice(0, 80)}". `
  return `${WORDS[(i - 1) % WORDS.length]} `
}

/** The default answer cut at `tokens` still ends a sentence: its last word gets a full stop. */
function endingToken(i: number, tokens: number, context: GenerateContext): string {
  const text = defaultToken(i, context)
  if (i !== tokens - 1 || i === 0) return text
  const word = text.trimEnd()
  return word.endsWith('.') ? text : `${word}.`
}

/**
 * Creates the demo model.
 *
 * @remarks Resuming (`context.continueFrom`): the model makes the same tokens as always and skips
 * those the text already holds, so a resumed answer ends exactly as an uninterrupted one would. A
 * text that is not a prefix of its answer (another model wrote it) gets the answer from the first
 * token that does not repeat it, after a space.
 */
export function createDemoModel(options: DemoModelOptions = {}): TextModel {
  const tokens = options.tokens ?? DEMO_ANSWER_TOKENS
  const delayMs = options.delayMs ?? 15
  const token = options.token ?? ((i: number, context: GenerateContext) => endingToken(i, tokens, context))
  return {
    name: 'colloquy-demo',
    async *generate(context, signal) {
      const done = context.continueFrom ?? ''
      let made = ''
      let isSkipping = done.length > 0
      for (let i = 0; i < tokens; i++) {
        if (signal.aborted) return
        if (isSkipping) {
          const next = made + token(i, context)
          if (next.length <= done.length && done.startsWith(next)) {
            made = next
            continue
          }
          isSkipping = false
          if (!done.startsWith(made) || made.length !== done.length) {
            // Not our own prefix: continue after what is there rather than repeat it.
            if (!/\s$/.test(done)) yield ' '
          }
        }
        await pause(delayMs, signal)
        if (signal.aborted) return
        yield token(i, context)
      }
    },
  }
}
