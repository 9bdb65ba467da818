// The docs match what runs: every close code the server can send is a row of PROTOCOL.md's
// close-code table (issue #14: 4301 and the policy codes were missing), and every row is a code
// the project defines. Codes are collected from the shared error table and from the server's source.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERRORS } from '../../../shared/errors.js'
import { CloseCode } from '../../../shared/protocol/close-codes.js'

const ROOT = path.resolve(import.meta.dirname, '../../..')

/** Close codes in PROTOCOL.md's table: rows that start with a four-digit code. */
function documentedCodes(): Set<number> {
  const text = readFileSync(path.join(ROOT, 'shared/protocol/PROTOCOL.md'), 'utf8')
  return new Set([...text.matchAll(/^\|\s*(\d{4})\s*\|/gm)].map((match) => Number(match[1])))
}

/** Codes the server's source closes with: literal `close(1011, …)` / `end(1001, …)` and `CloseCode.X`. */
function codesInServerSource(): Set<number> {
  const files = execFileSync('git', ['ls-files', 'server/*.ts', 'server/**/*.ts'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((file) => file !== '')
  const codes = new Set<number>()
  const named = CloseCode as Readonly<Record<string, number>>
  for (const file of files) {
    const source = readFileSync(path.join(ROOT, file), 'utf8')
    for (const match of source.matchAll(/\.(?:close|end)\(\s*(\d{4})\b/g)) codes.add(Number(match[1]))
    for (const match of source.matchAll(/\bCloseCode\.(\w+)/g)) {
      const value = named[match[1] as string]
      if (value !== undefined) codes.add(value)
    }
  }
  return codes
}

describe("PROTOCOL.md's close-code table", () => {
  it('lists every close code of the shared error table', () => {
    const documented = documentedCodes()
    const missing = Object.entries(ERRORS)
      .filter(([, info]) => !documented.has(info.closeCode))
      .map(([code, info]) => `${info.closeCode} (${code})`)
    expect(missing).toEqual([])
  })

  it("lists every close code written in the server's source", () => {
    const sent = codesInServerSource()
    expect(sent.size).toBeGreaterThan(1)
    const documented = documentedCodes()
    expect([...sent].filter((code) => !documented.has(code))).toEqual([])
  })

  it('lists only codes the project defines', () => {
    const defined = new Set<number>(Object.values(CloseCode))
    expect([...documentedCodes()].filter((code) => !defined.has(code))).toEqual([])
  })
})
