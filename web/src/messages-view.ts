// Renders a list of messages (live or from history) into an <ol>, keyed by message id, touching
// only what changed: a streamed token costs one text update, not a re-render of the list.
// Assistant answers are Markdown (./markdown.ts): only the block being written is parsed again.

import type { Author, MessageView } from '../../shared/conversation/index.js'
import { formatTime, h, setText } from './dom.js'
import { createMarkdownRenderer, type MarkdownRenderer } from './markdown.js'

/** A message as the list shows it: the live view, or a message of a history export. */
export interface ShownMessage {
  readonly id: string
  readonly role: string
  readonly author: Author
  readonly createdAt: number
  readonly content: string
  readonly status: string
  readonly error?: string
}

/** Options of {@link createMessagesView}. */
export interface MessagesViewOptions {
  /** The current participant (to mark "you"). */
  readonly selfId?: string
  /** Called when the user asks to stop a streaming answer; no cancel buttons without it. */
  readonly onCancel?: (message: ShownMessage) => void
  readonly label: string
}

const STATUS_LABEL: Readonly<Record<string, string>> = {
  streaming: 'writing…',
  complete: '',
  cancelled: 'cancelled',
  error: 'failed',
}

interface Row {
  readonly item: HTMLLIElement
  readonly author: HTMLSpanElement
  readonly status: HTMLSpanElement
  readonly content: HTMLDivElement
  readonly cancel: HTMLButtonElement | undefined
  message: ShownMessage | undefined
  /** The Markdown renderer of an assistant answer, created on its first render. */
  markdown: MarkdownRenderer | undefined
}

/** A keyed message list. */
export interface MessagesView {
  readonly element: HTMLOListElement
  render(messages: readonly ShownMessage[]): void
}

/** Converts a live view (its content is already a string). */
export function shownOf(view: MessageView): ShownMessage {
  return {
    id: view.id,
    role: view.role,
    author: view.author,
    createdAt: view.createdAt,
    content: view.content,
    status: view.status,
    ...(view.error === undefined ? {} : { error: view.error }),
  }
}

/** Creates an empty list; call `render` with every message, in order, whenever they change. */
export function createMessagesView(options: MessagesViewOptions): MessagesView {
  const element = h('ol', { class: 'messages', 'aria-label': options.label })
  const empty = h('li', { class: 'messages-empty' }, 'No messages yet.')
  const rows = new Map<string, Row>()

  const createRow = (message: ShownMessage): Row => {
    const kind = h('span', { class: `kind kind-${message.author.kind}` }, message.author.kind)
    const time = h(
      'time',
      { datetime: new Date(message.createdAt).toISOString() },
      formatTime(message.createdAt),
    )
    const row: Row = {
      item: h('li', { class: 'message' }),
      author: h('span', { class: 'author' }),
      status: h('span', { class: 'status-badge' }),
      content: h('div', { class: 'message-content' }),
      cancel:
        options.onCancel === undefined
          ? undefined
          : h('button', { type: 'button', class: 'cancel' }, 'Cancel answer'),
      message: undefined,
      markdown: undefined,
    }
    const { onCancel } = options
    row.cancel?.addEventListener('click', () => {
      if (row.message !== undefined) onCancel?.(row.message)
    })
    // The cancel button sits in the header line: it stays put while the answer grows below it.
    row.item.append(h('div', { class: 'meta' }, row.author, kind, row.status, time, row.cancel), row.content)
    return row
  }

  const update = (row: Row, message: ShownMessage): void => {
    const previous = row.message
    row.message = message
    if (previous === message) return
    const { item } = row
    item.dataset.messageId = message.id
    item.dataset.status = message.status
    item.dataset.role = message.role
    item.dataset.authorKind = message.author.kind
    item.classList.toggle('from-self', message.author.id === options.selfId)
    const name = message.author.name ?? message.author.id
    setText(row.author, message.author.id === options.selfId ? `${name} (you)` : name)
    const statusText =
      message.status === 'error'
        ? `failed: ${message.error ?? ''}`
        : (STATUS_LABEL[message.status] ?? message.status)
    setText(row.status, statusText)
    row.status.hidden = statusText.length === 0
    if (message.role === 'assistant') {
      row.content.classList.add('markdown')
      row.markdown ??= createMarkdownRenderer(row.content)
      row.markdown.update(message.content)
    } else {
      setText(row.content, message.content)
    }
    item.setAttribute('aria-busy', String(message.status === 'streaming'))
    if (row.cancel !== undefined) {
      row.cancel.hidden = message.status !== 'streaming' || message.role !== 'assistant'
      row.cancel.setAttribute('aria-label', `Cancel the answer of ${name}`)
    }
  }

  return {
    element,
    render(messages) {
      const ids = new Set<string>()
      let previous: Element | null = null
      for (const message of messages) {
        if (ids.has(message.id)) continue // duplicate ids: the model reads the first
        ids.add(message.id)
        let row = rows.get(message.id)
        if (row === undefined) {
          row = createRow(message)
          rows.set(message.id, row)
        }
        update(row, message)
        const expected: Element | null =
          previous === null ? element.firstElementChild : previous.nextElementSibling
        if (expected !== row.item) element.insertBefore(row.item, expected)
        previous = row.item
      }
      for (const [id, row] of rows) {
        if (!ids.has(id)) {
          row.item.remove()
          rows.delete(id)
        }
      }
      if (messages.length === 0) element.append(empty)
      else empty.remove()
    },
  }
}
