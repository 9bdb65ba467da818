// The incremental Markdown cut (web/src/markdown-blocks.ts): however an answer's tokens are split,
// the finished prefix is the same as when the whole text is read at once, it only grows, and it
// never ends inside a code fence (so a block parsed once never needs parsing again).

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createBlockScanner } from '../../../web/src/markdown-blocks.js'

/** The finished prefix of `text` read in one go. */
function finishedOf(text: string): number {
  return createBlockScanner().advance(text)
}

/** True when a fence is open at the end of `prefix` (fences counted line by line, as CommonMark). */
function isInsideFence(prefix: string): boolean {
  let open: string | undefined
  for (const line of prefix.split('\n').slice(0, -1)) {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1]
    if (open === undefined) open = marker
    else if (
      marker !== undefined &&
      marker[0] === open[0] &&
      marker.length >= open.length &&
      line.trim() === marker
    )
      open = undefined
  }
  return open !== undefined
}

const pieces = fc.constantFrom(
  'word ',
  'more text',
  '\n',
  '\n\n',
  '- item\n',
  '1. one\n',
  '```\n',
  '```js\n',
  '~~~\n',
  '````\n',
  '    indented\n',
  '| a | b |\n',
  '> quote\n',
  '  \n',
)
const texts = fc.array(pieces, { maxLength: 60 }).map((parts) => parts.join(''))

describe('the Markdown block scanner', () => {
  it('cuts after a blank line outside fences, and not inside a fence', () => {
    expect(finishedOf('para one\n\npara two')).toBe('para one\n\n'.length)
    expect(finishedOf('```\ncode\n\nmore code\n')).toBe(0)
    expect(finishedOf('```\ncode\n\n```\n\nafter')).toBe('```\ncode\n\n```\n\n'.length)
    expect(finishedOf('~~~\n```\n\n~~~\n\n')).toBe('~~~\n```\n\n~~~\n\n'.length)
  })

  it('finds the same prefix whatever the token boundaries, only growing, never inside a fence', () => {
    fc.assert(
      fc.property(texts, fc.array(fc.nat(), { maxLength: 20 }), (text, cuts) => {
        const points = [...new Set(cuts.map((cut) => cut % (text.length + 1)))].sort((a, b) => a - b)
        const scanner = createBlockScanner()
        let previous = 0
        for (const point of [...points, text.length]) {
          const finished = scanner.advance(text.slice(0, point))
          expect(finished).toBeGreaterThanOrEqual(previous)
          expect(finished).toBeLessThanOrEqual(point)
          expect(isInsideFence(text.slice(0, finished))).toBe(false)
          previous = finished
        }
        expect(previous).toBe(finishedOf(text))
      }),
      { numRuns: 500 },
    )
  })
})
