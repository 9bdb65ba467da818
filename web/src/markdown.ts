// Markdown of assistant answers, rendered safely and incrementally: marked parses, raw HTML in the
// source is shown as text, DOMPurify keeps only an allow-list of tags and attributes (no script, no
// event attribute, no javascript: URL), and while an answer streams only its last block is parsed
// again: the blocks before the last blank line outside a code fence are rendered once and kept.

import DOMPurify, { type Config } from 'dompurify'
import { Marked, type Tokens } from 'marked'
import { createBlockScanner } from './markdown-blocks.js'

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char] ?? char)
}

/** marked with GitHub's dialect; HTML written by the model is escaped, never interpreted. */
const parser = new Marked({
  gfm: true,
  async: false,
  renderer: {
    html: (token: Tokens.HTML | Tokens.Tag) => escapeHtml(token.text),
    // An image would make every reader's browser fetch a URL the model chose: show a link instead.
    image: (token: Tokens.Image) =>
      `<a href="${escapeHtml(token.href)}">${escapeHtml(token.text === '' ? token.href : token.text)}</a>`,
  },
})

/** What may reach the page: structure and emphasis, links, code and tables; nothing active. */
const SANITIZE: Config & { RETURN_DOM_FRAGMENT: true } = {
  ALLOWED_TAGS: [
    'p',
    'br',
    'hr',
    'h1',
    'h2',
    'h3',
    'h4',
    'h5',
    'h6',
    'strong',
    'em',
    'del',
    'code',
    'pre',
    'blockquote',
    'ul',
    'ol',
    'li',
    'a',
    'table',
    'thead',
    'tbody',
    'tr',
    'th',
    'td',
  ],
  ALLOWED_ATTR: ['href', 'title', 'start', 'align'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
}

let isHooked = false

/** Links open in a new tab and tell the target nothing about the page. */
function hookLinks(): void {
  if (isHooked) return
  isHooked = true
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A') {
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer nofollow')
    }
  })
}

/** Gives each code block a copy button (created here, never from the source). */
function decorateCodeBlocks(fragment: DocumentFragment): void {
  for (const pre of fragment.querySelectorAll('pre')) {
    const wrapper = document.createElement('div')
    wrapper.className = 'code-block'
    const copy = document.createElement('button')
    copy.type = 'button'
    copy.className = 'copy-code'
    // The label is drawn by CSS, so the message's text stays the answer's text.
    copy.setAttribute('aria-label', 'Copy code')
    copy.addEventListener('click', () => {
      const text = pre.textContent ?? ''
      navigator.clipboard?.writeText(text).then(
        () => {
          copy.dataset.copied = 'true'
          setTimeout(() => delete copy.dataset.copied, 1_500)
        },
        () => undefined,
      )
    })
    pre.replaceWith(wrapper)
    wrapper.append(pre, copy)
  }
}

/** Renders `source` (one or more whole blocks of Markdown) as a sanitized fragment. */
export function renderMarkdown(source: string): DocumentFragment {
  hookLinks()
  const html = parser.parse(source) as string
  const fragment = DOMPurify.sanitize(html, SANITIZE)
  decorateCodeBlocks(fragment)
  return fragment
}

/** Renders one growing Markdown text into an element. */
export interface MarkdownRenderer {
  /** Shows `content`; when it extends what was shown, only its last block is parsed again. */
  update(content: string): void
  /** Characters parsed by the last update (for measurements). */
  readonly lastParsedChars: number
}

/**
 * Creates a renderer writing into `element` (its children are replaced).
 *
 * @remarks The text is cut at blank lines outside code fences: everything before the last such
 * line is rendered once, block by block, and appended; only the rest (the block being written) is
 * parsed again on each update. A text that does not extend the previous one is rendered afresh.
 * Cutting at blank lines renders a loose list as several lists (numbering is kept through `start`).
 */
export function createMarkdownRenderer(element: HTMLElement): MarkdownRenderer {
  const stable = document.createElement('div')
  stable.className = 'md-stable'
  const tail = document.createElement('div')
  tail.className = 'md-tail'
  element.replaceChildren(stable, tail)
  let shown = ''
  let scanner = createBlockScanner()
  /** Length of the prefix rendered into `stable`. */
  let committed = 0
  let shownTail = ''
  let lastParsedChars = 0

  const reset = (): void => {
    stable.replaceChildren()
    tail.replaceChildren()
    scanner = createBlockScanner()
    committed = 0
    shownTail = ''
  }

  return {
    get lastParsedChars() {
      return lastParsedChars
    },
    update(content) {
      if (content === shown) return
      if (!content.startsWith(shown)) reset()
      shown = content
      lastParsedChars = 0
      // Scan the whole lines added since the last update; the blocks they complete are parsed
      // together, in one call (one sanitizer pass, however many tokens arrived since).
      const from = committed
      committed = scanner.advance(content)
      const blocks = content.slice(from, committed)
      if (blocks.trim() !== '') {
        stable.append(renderMarkdown(blocks))
        lastParsedChars += blocks.length
      }
      const rest = content.slice(committed)
      if (rest !== shownTail) {
        shownTail = rest
        tail.replaceChildren(renderMarkdown(rest))
        lastParsedChars += rest.length
      }
    },
  }
}
