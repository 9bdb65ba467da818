// Where each question stands with a pool of agents (docs/agents.md "Pools and turns"): the state
// the server writes into the session's `turns` map, shown beside each user message on every device
// (queued with its place in line, claimed by which agent, answering, done, cancelled, expired,
// failed), a button that cancels a queued or running turn, and, when the page is opened with a
// pool (`#/s/<id>?pool=NAME`), the request that the pool answer each message sent here.

import type * as Y from 'yjs'
import { readTurnEntries, type TurnEntry, turnsMap } from '../../shared/turns/index.js'
import { h, setText } from './dom.js'
import { describeTurn, isTurnRunning } from './turn-text.js'

/** Options of {@link mountTurnStatus}. */
export interface TurnStatusOptions {
  readonly doc: Y.Doc
  readonly sessionId: string
  /** The list the messages view renders (rows are `li[data-message-id]`). */
  readonly list: HTMLElement
  /** Pool that answers messages sent from this page; none: this page creates no turns. */
  readonly pool?: string
  /** Bearer token for the turns API, when the server has a secret. */
  readonly token?: string
  /** Shows a short-lived notice (a refused turn, a failed cancel). */
  readonly notify: (text: string) => void
}

/** The mounted display. */
export interface TurnStatus {
  /** Puts each turn's badge into its message's row (call after every messages render). */
  render(): void
  /** Asks the pool to answer `messageId` (no-op without a pool). */
  requestAnswer(messageId: string): Promise<void>
  destroy(): void
}

interface Badge {
  readonly element: HTMLSpanElement
  readonly text: HTMLSpanElement
  readonly cancel: HTMLButtonElement
  entry: TurnEntry | undefined
}

/** Mounts the turn display over a messages list; it follows the `turns` map by itself. */
export function mountTurnStatus(options: TurnStatusOptions): TurnStatus {
  const { doc, list } = options
  const badges = new Map<string, Badge>()

  const call = async (path: string, body: unknown): Promise<Response> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    return fetch(path, { method: 'POST', headers, body: JSON.stringify(body) })
  }
  const errorOf = async (response: Response): Promise<{ code?: string; message?: string }> => {
    try {
      const body = (await response.json()) as { error?: { code?: string; message?: string } }
      return body.error ?? {}
    } catch {
      return {}
    }
  }

  const cancel = async (badge: Badge): Promise<void> => {
    const entry = badge.entry
    if (entry === undefined) return
    badge.cancel.disabled = true
    try {
      const response = await call(`/api/turns/${encodeURIComponent(entry.turnId)}/cancel`, {})
      if (!response.ok) {
        const error = await errorOf(response)
        if (error.code !== 'turn-finished')
          options.notify(`Could not cancel: ${error.message ?? response.status}`)
      }
    } catch {
      options.notify('Could not cancel: the server is unreachable')
    } finally {
      badge.cancel.disabled = false
    }
  }

  const badgeFor = (messageId: string): Badge => {
    let badge = badges.get(messageId)
    if (badge !== undefined) return badge
    const text = h('span', { class: 'turn-text' })
    const button = h('button', { type: 'button', class: 'cancel turn-cancel' }, 'Cancel')
    const element = h('span', { class: 'turn-status', role: 'status' }, text, button)
    const created: Badge = { element, text, cancel: button, entry: undefined }
    button.addEventListener('click', () => void cancel(created))
    badges.set(messageId, created)
    badge = created
    return badge
  }

  const render = (): void => {
    const entries = readTurnEntries(doc)
    for (const [messageId, entry] of entries) {
      const row = list.querySelector<HTMLElement>(`li[data-message-id="${CSS.escape(messageId)}"]`)
      if (row === null) continue
      const badge = badgeFor(messageId)
      badge.entry = entry
      badge.element.dataset.turnState = entry.state
      setText(badge.text, describeTurn(entry))
      badge.cancel.hidden = !isTurnRunning(entry)
      badge.cancel.setAttribute('aria-label', `Cancel the answer to this message (${entry.state})`)
      const meta = row.querySelector('.meta') ?? row
      if (badge.element.parentElement !== meta) meta.append(badge.element)
    }
    for (const [messageId, badge] of badges) {
      if (!entries.has(messageId)) {
        badge.element.remove()
        badges.delete(messageId)
      }
    }
  }

  const onTurns = (): void => render()
  turnsMap(doc).observe(onTurns)

  return {
    render,
    async requestAnswer(messageId) {
      if (options.pool === undefined) return
      try {
        const response = await call('/api/turns', {
          sessionId: options.sessionId,
          messageId,
          pool: options.pool,
        })
        if (response.ok) return
        const error = await errorOf(response)
        options.notify(
          error.code === 'queue-full'
            ? 'The agents are busy: your message was not queued. Try again later.'
            : `No answer requested: ${error.message ?? response.status}`,
        )
      } catch {
        options.notify('No answer requested: the server is unreachable')
      }
    },
    destroy() {
      turnsMap(doc).unobserve(onTurns)
      for (const badge of badges.values()) badge.element.remove()
      badges.clear()
    },
  }
}
