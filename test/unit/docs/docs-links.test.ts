// The docs match what is in the repository: every relative link and image of every tracked Markdown
// file resolves to a file or folder (issue #14: docs/decisions.md linked to a DESIGN.md that is not
// here). Links are read with the Markdown parser, so code blocks are not links; a Markdown file
// named in inline code (`../shared/DESIGN.md`) is a reference a reader follows, so it must exist too.

import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { marked, type Token } from 'marked'
import { describe, expect, it } from 'vitest'

const ROOT = path.resolve(import.meta.dirname, '../../..')

/** Tracked Markdown files, bench result tables excepted (generated, no links). */
function markdownFiles(): string[] {
  return execFileSync('git', ['ls-files', '*.md'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((file) => file !== '' && !file.startsWith('bench/results/'))
}

/** Every link and image target of `markdown`, as written. */
function targetsOf(markdown: string): string[] {
  const targets: string[] = []
  void marked.walkTokens(marked.lexer(markdown), (token: Token) => {
    if (token.type === 'link' || token.type === 'image') targets.push(token.href)
  })
  return targets
}

/** Markdown files named by path in inline code (`docs/web.md`, `../shared/DESIGN.md`). */
function namedMarkdownOf(markdown: string): string[] {
  const names: string[] = []
  void marked.walkTokens(marked.lexer(markdown), (token: Token) => {
    if (token.type === 'codespan' && /^[\w.-]*\/[\w./-]*\.md$/.test(token.text)) names.push(token.text)
  })
  return names
}

/** The target of a relative link with its anchor and query cut, or undefined for other links. */
function relativePath(href: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//') || href.startsWith('#')) return undefined
  const cut = href.replace(/[#?].*$/, '')
  return cut === '' ? undefined : decodeURI(cut)
}

describe('relative links in the docs', () => {
  it('finds the docs it checks (README, docs/, PROTOCOL.md, STORAGE.md)', () => {
    const files = markdownFiles()
    expect(files).toEqual(
      expect.arrayContaining([
        'README.md',
        'docs/decisions.md',
        'docs/web.md',
        'shared/protocol/PROTOCOL.md',
        'server/persistence/STORAGE.md',
      ]),
    )
  })

  it('resolve to a file or folder of the repository, in every tracked Markdown file', () => {
    const broken: string[] = []
    let checked = 0
    for (const file of markdownFiles()) {
      for (const href of targetsOf(readFileSync(path.join(ROOT, file), 'utf8'))) {
        const target = relativePath(href)
        if (target === undefined) continue
        checked++
        const resolved = path.resolve(ROOT, path.dirname(file), target)
        if (!resolved.startsWith(ROOT) || !existsSync(resolved)) broken.push(`${file}: ${href}`)
      }
    }
    expect(checked).toBeGreaterThan(20)
    expect(broken).toEqual([])
  })

  it('name Markdown files that exist when a file is named in inline code', () => {
    const missing: string[] = []
    let checked = 0
    for (const file of markdownFiles()) {
      for (const name of namedMarkdownOf(readFileSync(path.join(ROOT, file), 'utf8'))) {
        checked++
        // Relative to the file, or (the way docs name files in prose) to the repository's root.
        const candidates = [path.resolve(ROOT, path.dirname(file), name), path.resolve(ROOT, name)]
        if (!candidates.some((candidate) => candidate.startsWith(ROOT) && existsSync(candidate)))
          missing.push(`${file}: ${name}`)
      }
    }
    expect(checked).toBeGreaterThan(3)
    expect(missing).toEqual([])
  })

  it('reads a link in text but not one in a code block', () => {
    expect(targetsOf('see [a](a.md)\n\n```\n[b](b.md)\n```\n')).toEqual(['a.md'])
  })
})
