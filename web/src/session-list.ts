// The session list: create a session (by name), open one, see what the server stores, delete one.
// Listing and deleting need the admin role (open on loopback without a secret): the Delete buttons
// appear only when the listing succeeded; without it, sessions open by name. Each row shows the
// session's last message and its time, "new" when messages came since this browser showed it, and
// "replying…" while an answer streams: live, through one multiplexed connection for every previewed
// session (live-previews.ts). The listing itself refreshes every few seconds while visible.

import { createHistoryClient, HistoryError, type ListedSession } from '../../client/index.js'
import type { Author } from '../../shared/conversation/index.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { formatTime, h, setText } from './dom.js'
import { pageToken, saveIdentity } from './identity.js'
import { createLivePreviews, type LivePreview } from './live-previews.js'
import { forgetSeen, seenCount } from './seen.js'

/** Options of {@link mountSessionList}. */
export interface SessionListOptions {
  readonly identity: Author
  /** Called with the new identity after a name change. */
  readonly onIdentity: (identity: Author) => void
  /** Opens a session; `isNew` when the user just created it. */
  readonly open: (sessionId: string, isNew: boolean) => void
}

/** How often the list asks the server what changed while it is visible. */
const REFRESH_MS = 4_000
/** Previews are live for at most this many sessions (the most recently updated). */
const MAX_PREVIEWS = 30
const EMPTY_LIST = 'No sessions yet: create one above.'
/** The longest preview of a message, in characters. */
const PREVIEW_CHARS = 140

/** A row's live parts. */
interface SessionRow {
  readonly item: HTMLLIElement
  readonly figures: HTMLSpanElement
  readonly preview: HTMLParagraphElement
  readonly badge: HTMLSpanElement
  readonly streaming: HTMLSpanElement
  isConfirming: boolean
}

function randomName(): string {
  const words = ['maple', 'harbor', 'comet', 'lantern', 'meadow', 'quartz', 'willow', 'ember']
  const word = words[Math.floor(Math.random() * words.length)] ?? 'session'
  return `${word}-${Math.random().toString(36).slice(2, 6)}`
}

/** Mounts the list into `root`. */
export function mountSessionList(root: HTMLElement, options: SessionListOptions): { destroy(): void } {
  const token = pageToken()
  const history = createHistoryClient({
    baseUrl: location.origin,
    ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
  })
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

  // The browser's own message ("Please match the requested format") says nothing useful: say which
  // characters a session name may hold, in the bubble and in the alert below the form.
  const NAME_RULE = 'A session name is 1–128 letters, digits or . _ : - (no spaces).'
  sessionInput.addEventListener('invalid', () => {
    sessionInput.setCustomValidity(NAME_RULE)
    setText(error, NAME_RULE)
  })
  sessionInput.addEventListener('input', () => {
    sessionInput.setCustomValidity('')
    if (isValidSessionId(sessionInput.value.trim())) setText(error, '')
  })

  createForm.addEventListener('submit', (event) => {
    event.preventDefault()
    const sessionId = sessionInput.value.trim()
    if (!isValidSessionId(sessionId)) {
      setText(error, NAME_RULE)
      sessionInput.focus()
      return
    }
    // Commit a pending name change first (change fires on blur, which a click may not cause).
    nameInput.dispatchEvent(new Event('change'))
    options.open(sessionId, true)
  })

  let isDestroyed = false

  /** Forgets this browser's offline copy of a deleted session (else reopening it would re-upload it). */
  const dropLocalCopy = (sessionId: string): void => {
    try {
      forgetSeen(sessionId)
      indexedDB.deleteDatabase(`colloquy:${sessionId}`)
    } catch {
      // No IndexedDB (private mode in some browsers): nothing was cached.
    }
  }

  /** One row: the link, its figures, and Delete (which asks for a confirmation in place). */
  const sessionRow = (session: ListedSession): SessionRow => {
    const { sessionId } = session
    const actions = h('span', { class: 'session-actions' })
    const showDelete = (): void => {
      row.isConfirming = false
      const deleteButton = h(
        'button',
        { type: 'button', class: 'secondary danger', 'aria-label': `Delete session ${sessionId}` },
        'Delete',
      )
      deleteButton.addEventListener('click', showConfirm)
      actions.replaceChildren(deleteButton)
    }
    const showConfirm = (): void => {
      row.isConfirming = true
      const question = h('span', { class: 'hint' }, 'Delete it and its whole history? ')
      const confirmButton = h(
        'button',
        { type: 'button', class: 'danger', 'aria-label': `Confirm: delete session ${sessionId}` },
        'Delete',
      )
      const cancelButton = h(
        'button',
        { type: 'button', class: 'secondary', 'aria-label': `Keep session ${sessionId}` },
        'Cancel',
      )
      cancelButton.addEventListener('click', () => {
        showDelete()
        actions.querySelector('button')?.focus()
      })
      confirmButton.addEventListener('click', () => {
        confirmButton.disabled = true
        cancelButton.disabled = true
        setText(listStatus, `Deleting ${sessionId}…`)
        history.deleteSession(sessionId).then(
          () => {
            dropLocalCopy(sessionId)
            if (isDestroyed) return
            void listSessions(`Deleted ${sessionId}.`)
          },
          (caught: unknown) => {
            if (isDestroyed) return
            const status = caught instanceof HistoryError ? caught.status : 0
            if (status === 404) {
              void listSessions(`${sessionId} was already gone.`)
              return
            }
            setText(
              listStatus,
              status === 401 || status === 403
                ? 'Deleting sessions needs the admin role.'
                : `Could not delete ${sessionId}.`,
            )
            showDelete()
          },
        )
      })
      actions.replaceChildren(question, confirmButton, cancelButton)
      cancelButton.focus()
    }
    const figures = h('span', { class: 'hint' })
    const badge = h('span', { class: 'session-new' }, 'new')
    badge.hidden = true
    const preview = h('p', { class: 'session-preview' })
    const streaming = h('span', { class: 'session-streaming', 'aria-live': 'polite' })
    const row: SessionRow = {
      item: h(
        'li',
        { 'data-session-id': sessionId },
        h('a', { href: `#/s/${encodeURIComponent(sessionId)}`, 'data-session-id': sessionId }, sessionId),
        badge,
        streaming,
        figures,
        actions,
        preview,
      ),
      figures,
      preview,
      badge,
      streaming,
      isConfirming: false,
    }
    showDelete()
    return row
  }

  /** Writes a listing's figures into its row. */
  const showFigures = (row: SessionRow, session: ListedSession): void => {
    const updates = session.lastSeq === 1 ? 'update' : 'updates'
    setText(row.figures, ` · ${session.lastSeq} ${updates} · ${formatTime(session.updatedAt)}`)
  }

  const rows = new Map<string, SessionRow>()

  /** Shows a session's live preview in its row: last message, "replying…", and "new". */
  const showPreview = (preview: LivePreview): void => {
    const row = rows.get(preview.sessionId)
    if (row === undefined || isDestroyed) return
    const { last } = preview
    if (last === undefined) {
      setText(row.preview, 'No messages yet.')
    } else {
      const text = last.content.replace(/\s+/g, ' ').trim()
      const cut = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text
      setText(row.preview, `${last.author.name ?? last.author.id}: ${cut} · ${formatTime(last.createdAt)}`)
    }
    setText(row.streaming, preview.isStreaming ? ' replying…' : '')
    row.item.dataset.streaming = String(preview.isStreaming)
    const seen = seenCount(preview.sessionId)
    const isNew = seen !== undefined && preview.messageCount > seen
    row.badge.hidden = !isNew
    row.item.dataset.new = String(isNew)
  }
  const previews = createLivePreviews({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`,
    token,
    onPreview: showPreview,
  })

  /** Lists the stored sessions; `done` is announced once the list is shown (after a delete). */
  const listSessions = async (done = '', mode: { readonly isQuiet?: boolean } = {}): Promise<void> => {
    if (mode.isQuiet !== true) setText(listStatus, 'Loading sessions…')
    try {
      const listed = await history.listSessions()
      if (isDestroyed) return
      const sessions = [...listed].sort((a, b) => b.updatedAt - a.updatedAt)
      const ids = new Set(sessions.map((session) => session.sessionId))
      for (const [id, row] of rows) {
        if (!ids.has(id) && !row.isConfirming) rows.delete(id)
      }
      const ordered = sessions.map((session) => {
        let row = rows.get(session.sessionId)
        if (row === undefined) {
          row = sessionRow(session)
          rows.set(session.sessionId, row)
        }
        showFigures(row, session)
        return row
      })
      // Keep rows (and a Delete confirmation in progress) in place; only reorder what moved.
      ordered.forEach((row, index) => {
        if (list.children[index] !== row.item) list.insertBefore(row.item, list.children[index] ?? null)
      })
      for (const item of [...list.children]) {
        if (!ordered.some((row) => row.item === item)) item.remove()
      }
      previews.track(sessions.slice(0, MAX_PREVIEWS).map((session) => session.sessionId))
      const empty = sessions.length === 0 ? EMPTY_LIST : ''
      // A quiet refresh leaves what the status says (e.g. "Deleted x.") unless it is out of date.
      if (mode.isQuiet !== true)
        setText(listStatus, [done, empty].filter((part) => part.length > 0).join(' '))
      else if (sessions.length > 0 && listStatus.textContent === EMPTY_LIST) setText(listStatus, '')
    } catch (caught) {
      if (isDestroyed) return
      list.replaceChildren()
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
  // Live: ask again every few seconds while the page is visible (only changed sessions are fetched).
  let isListing = false
  const refreshTimer = setInterval(() => {
    if (isListing || document.visibilityState !== 'visible' || listStatus.textContent?.startsWith('Deleting'))
      return
    isListing = true
    void listSessions('', { isQuiet: true }).finally(() => {
      isListing = false
    })
  }, REFRESH_MS)

  return {
    destroy() {
      isDestroyed = true
      clearInterval(refreshTimer)
      previews.destroy()
    },
  }
}
