// Where each question stands with a pool of agents (docs/agents.md "Pools and turns"): the state
// the server writes into the session's `turns` map, shown beside each user message on every device
// (queued with its place in line, claimed by which agent, answering, done, cancelled, expired,
// failed), a button that cancels a queued or running turn, and, when the page is opened with a
// pool (`#/s/<id>?pool=NAME`), the request that the pool answer each message sent here.

import type * as Y from 'yjs'
import { readTurnEntries, type TurnEntry, turnsMap } from '../../shared/turns/index.js'
import { h, setText } from './dom.js'

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

/** 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st. */
export function ordinal(n: number): string {
  const tens = n % 100
  if (tens >= 11 && tens <= 13) return `${n}th`
  switch (n % 10) {
    case 1:
      return `${n}st`
    case 2:
      return `${n}nd`
    case 3:
      return `${n}rd`
    default:
      return `${n}th`
  }
}

/** The text a person reads for one turn's state. */
export function describeTurn(entry: TurnEntry): string {
  const agent = entry.agent?.name ?? entry.agent?.peerId
  switch (entry.state) {
    case 'queued': {
      const place = entry.position === undefined ? 'queued' : `queued · ${ordinal(entry.position)} in line`
      return entry.attempts > 0 ? `${place} (again, after ${entry.attempts})` : place
    }
    case 'claimed':
      return agent === undefined ? 'thinking…' : `thinking… (${agent})`
    case 'streaming':
      return agent === undefined ? 'answering…' : `answering… (${agent})`
    case 'done':
      return 'answered'
    case 'cancelled':
      return 'cancelled'
    case 'expired':
      return `expired${entry.reasonText === undefined ? '' : `: ${entry.reasonText}`}`
    case 'failed': {
      const after = entry.attempts > 1 ? ` after ${entry.attempts} attempts` : ''
      return `failed${after}${entry.reasonText === undefined ? '' : `: ${entry.reasonText}`}`
    }
  }
}

const isRunning = (entry: TurnEntry): boolean =>
  entry.state === 'queued' || entry.state === 'claimed' || entry.state === 'streaming'

/** Reads `?pool=NAME` from the hash route (`#/s/<id>?pool=NAME`). */
export function poolFromHash(hash: string): string | undefined {
  const query = hash.indexOf('?')
  if (query < 0) return undefined
  const pool = new URLSearchParams(hash.slice(query + 1)).get('pool')
  return pool === null || pool.length === 0 ? undefined : pool
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
      badge.cancel.hidden = !isRunning(entry)
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
