// The session list: create a session (by name), open one, see what the server stores. Listing
// needs the admin role (open on loopback without a secret); without it, sessions open by name.
// The server has no delete route, so there is no delete here.

import { HistoryError } from '../../client/index.js'
import type { Author } from '../../shared/conversation/index.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { formatTime, h, setText } from './dom.js'
import { pageToken, saveIdentity } from './identity.js'

/** Options of {@link mountSessionList}. */
export interface SessionListOptions {
  readonly identity: Author
  /** Called with the new identity after a name change. */
  readonly onIdentity: (identity: Author) => void
  /** Opens a session; `isNew` when the user just created it. */
  readonly open: (sessionId: string, isNew: boolean) => void
}

interface ListedSession {
  readonly sessionId: string
  readonly lastSeq: number
  readonly updatedAt: number
}

function randomName(): string {
  const words = ['maple', 'harbor', 'comet', 'lantern', 'meadow', 'quartz', 'willow', 'ember']
  const word = words[Math.floor(Math.random() * words.length)] ?? 'session'
  return `${word}-${Math.random().toString(36).slice(2, 6)}`
}

/** Mounts the list into `root`. */
export function mountSessionList(root: HTMLElement, options: SessionListOptions): { destroy(): void } {
  const token = pageToken()
  let identity = options.identity
  const nameInput = h('input', {
    id: 'user-name',
    name: 'name',
    value: identity.name ?? '',
    autocomplete: 'nickname',
    maxlength: 60,
  })
  const sessionInput = h('input', {
    id: 'new-session',
    name: 'session',
    required: true,
    value: randomName(),
    pattern: '[A-Za-z0-9._:\\-]{1,128}',
    autocomplete: 'off',
    'aria-describedby': 'new-session-hint',
  })
  const error = h('p', { class: 'form-error', role: 'alert' })
  const list = h('ul', { class: 'session-list' })
  const listStatus = h('p', { class: 'list-status', 'aria-live': 'polite' }, 'Loading sessions…')
  const refreshButton = h('button', { type: 'button', class: 'secondary' }, 'Refresh')

  const createForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'new-session-heading' },
    h('h2', { id: 'new-session-heading' }, 'New session'),
    h('label', { for: 'new-session' }, 'Session name'),
    h('div', { class: 'row' }, sessionInput, h('button', { type: 'submit' }, 'Create')),
    h('p', { id: 'new-session-hint', class: 'hint' }, '1–128 letters, digits or . _ : -'),
    error,
  )
  const openForm = h(
    'section',
    { class: 'card', 'aria-labelledby': 'sessions-heading' },
    h('div', { class: 'row spread' }, h('h2', { id: 'sessions-heading' }, 'Sessions'), refreshButton),
    listStatus,
    list,
  )

  root.replaceChildren(
    h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'Colloquy'),
      h('div', { class: 'identity' }, h('label', { for: 'user-name' }, 'Your name'), nameInput),
    ),
    h('main', { id: 'main', class: 'home', tabindex: '-1' }, createForm, openForm),
  )

  nameInput.addEventListener('change', () => {
    const name = nameInput.value.trim()
    if (name.length === 0) return
    identity = { ...identity, name }
    saveIdentity(identity)
    options.onIdentity(identity)
  })

  createForm.addEventListener('submit', (event) => {
    event.preventDefault()
    const sessionId = sessionInput.value.trim()
    if (!isValidSessionId(sessionId)) {
      setText(error, 'Use 1–128 letters, digits or . _ : - for a session name.')
      sessionInput.focus()
      return
    }
    // Commit a pending name change first (change fires on blur, which a click may not cause).
    nameInput.dispatchEvent(new Event('change'))
    options.open(sessionId, true)
  })

  let isDestroyed = false
  const listSessions = async (): Promise<void> => {
    setText(listStatus, 'Loading sessions…')
    try {
      const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
      // The SDK's history client has no listing call: GET /sessions directly (docs/history.md).
      const response = await fetch('/sessions', { headers })
      if (!response.ok) throw new HistoryError(response.status, 'forbidden', `${response.status}`)
      const body = (await response.json()) as { sessions?: ListedSession[] }
      if (isDestroyed) return
      const sessions = [...(body.sessions ?? [])].sort((a, b) => b.updatedAt - a.updatedAt)
      list.replaceChildren(
        ...sessions.map((session) =>
          h(
            'li',
            {},
            h(
              'a',
              { href: `#/s/${encodeURIComponent(session.sessionId)}`, 'data-session-id': session.sessionId },
              session.sessionId,
            ),
            h('span', { class: 'hint' }, ` · ${session.lastSeq} updates · ${formatTime(session.updatedAt)}`),
          ),
        ),
      )
      setText(listStatus, sessions.length === 0 ? 'No sessions yet: create one above.' : '')
    } catch (caught) {
      if (isDestroyed) return
      const status = caught instanceof HistoryError ? caught.status : 0
      setText(
        listStatus,
        status === 401 || status === 403
          ? 'Listing sessions needs the admin role; open a session by its name above.'
          : 'Could not load the sessions.',
      )
    }
  }
  refreshButton.addEventListener('click', () => void listSessions())
  void listSessions()

  return {
    destroy() {
      isDestroyed = true
    },
  }
}
