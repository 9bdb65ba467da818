// The conversation screen: one session's messages streaming live, who is here (agents with their
// state), the composer, cancel, the connection indicator, and the history panel beside it.
// Everything goes through the public SDK: the sync client, the IndexedDB cache, the model helpers.

import { createSyncClient, type StatusEvent } from '../../client/index.js'
import { createIndexeddbCache } from '../../client/offline/indexeddb-cache.js'
import {
  type Author,
  appendMessage,
  messagesArray,
  presentWriters,
  readMessage,
  readMessages,
  readSessionInfo,
  requestCancel,
  setMessageStatus,
  setSessionTitle,
  touchParticipant,
} from '../../shared/conversation/index.js'
import { h, setText } from './dom.js'
import { mountHistoryPanel } from './history-panel.js'
import { pageToken } from './identity.js'
import { createMessagesView, shownOf } from './messages-view.js'
import { renderPresence } from './presence.js'
import { markSeen } from './seen.js'
import { mountTurnStatus } from './turn-status.js'
import { poolFromHash } from './turn-text.js'

/** Options of {@link mountConversation}. */
export interface ConversationOptions {
  readonly sessionId: string
  readonly identity: Author
  /** Write the session's title once synced (a session just created from the list, or a fork). */
  readonly title?: string
  /** Write `title` over the one the document has (a fork carries its origin's title). */
  readonly isTitleReplaced?: boolean
}

/** A mounted screen. */
export interface Screen {
  destroy(): void
}

function serverUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`
}

const STATUS_TEXT: Readonly<Record<StatusEvent['status'], string>> = {
  connecting: 'Connecting…',
  connected: 'Online',
  offline: 'Offline',
  error: 'Connection refused',
}

/** Mounts the conversation of `options.sessionId` into `root`. */
export function mountConversation(root: HTMLElement, options: ConversationOptions): Screen {
  const { sessionId, identity } = options
  const token = pageToken()
  const client = createSyncClient({
    url: serverUrl(),
    sessionId,
    offlineCache: createIndexeddbCache({ name: `colloquy:${sessionId}` }),
    ...(token === undefined ? {} : { token: () => token }),
  })
  const { doc } = client
  /** True when the writer of message `id` (its agent run, or its author) is in the session now. */
  const isWriterPresent = (id: string): boolean => {
    const message = readMessage(doc, id)
    if (message === undefined) return false
    const present = presentWriters(client.awareness.getStates(), client.awareness.clientID)
    const instanceId = message.metadata.instanceId
    return typeof instanceId === 'string'
      ? present.has(`instance:${instanceId}`)
      : present.has(`author:${message.author.id}`)
  }
  client.awareness.setLocalState({ user: identity, state: 'here' })

  const title = h('h1', { class: 'session-title' }, sessionId)
  const connection = h(
    'span',
    { class: 'connection', role: 'status', 'data-status': 'connecting' },
    'Connecting…',
  )
  const saved = h('span', { class: 'saved', 'aria-live': 'polite' })
  const historyToggle = h(
    'button',
    { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': 'history' },
    'History',
  )
  const presence = h('ul', { class: 'presence-list' })
  const messages = createMessagesView({
    label: 'Messages',
    selfId: identity.id,
    onCancel: (message) => {
      requestCancel(doc, message.id, identity)
      // Nobody is writing this answer (no agent here, or a fork of a streaming answer): nobody would
      // honour the request, so end it as cancelled now; every device sees that through Yjs.
      if (!isWriterPresent(message.id)) setMessageStatus(doc, message.id, 'cancelled')
    },
  })
  messages.element.setAttribute('aria-live', 'polite')
  const input = h('textarea', {
    id: 'composer-input',
    name: 'message',
    rows: 2,
    required: true,
    // Short enough for a phone's width; the keys are said to screen readers and in the tooltip.
    placeholder: 'Write a message…',
    title: 'Enter sends, Shift+Enter for a new line',
    'aria-describedby': 'composer-keys',
  })
  const composer = h(
    'form',
    { class: 'composer', 'aria-label': 'Send a message' },
    h('label', { for: 'composer-input', class: 'visually-hidden' }, 'Message'),
    h('span', { id: 'composer-keys', class: 'visually-hidden' }, 'Enter sends, Shift+Enter for a new line'),
    input,
    h('button', { type: 'submit' }, 'Send'),
  )
  const scroller = h('div', { class: 'scroller' }, messages.element)
  // Turns: each question's place with a pool of agents, and (with ?pool=) the request to answer it.
  const notice = h('p', { class: 'notice', role: 'alert' })
  notice.hidden = true
  let noticeTimer: ReturnType<typeof setTimeout> | undefined
  const pool = poolFromHash(location.hash)
  const turns = mountTurnStatus({
    doc,
    sessionId,
    list: messages.element,
    ...(pool === undefined ? {} : { pool }),
    ...(token === undefined ? {} : { token }),
    notify: (text) => {
      setText(notice, text)
      notice.hidden = false
      clearTimeout(noticeTimer)
      noticeTimer = setTimeout(() => {
        notice.hidden = true
      }, 8_000)
    },
  })
  const historySlot = h('aside', { id: 'history', class: 'history', 'aria-label': 'History' })
  historySlot.hidden = true

  root.replaceChildren(
    h(
      'header',
      { class: 'topbar' },
      h('a', { href: '#/', class: 'back' }, '← Sessions'),
      title,
      h('div', { class: 'topbar-status' }, connection, saved),
      historyToggle,
    ),
    h(
      'div',
      { class: 'layout' },
      h(
        'main',
        { id: 'main', class: 'conversation', tabindex: '-1' },
        h(
          'section',
          { class: 'presence', 'aria-label': 'Here now' },
          h('h2', { class: 'visually-hidden' }, 'Here now'),
          presence,
        ),
        scroller,
        notice,
        composer,
      ),
      historySlot,
    ),
  )

  // Messages: render everything once loaded, then only what each transaction changed.
  // Wide screens scroll the message list; phones scroll the page (the composer sticks to the bottom).
  // Either way, a reader at the bottom stays there as answers grow; one who scrolled up is left be.
  const isPageScrolling = (): boolean => getComputedStyle(scroller).overflowY === 'visible'
  const isNearBottom = (): boolean =>
    isPageScrolling()
      ? window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80
      : scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80
  const renderMessages = (): void => {
    const stick = isNearBottom()
    const all = readMessages(doc)
    messages.render(all.map(shownOf))
    turns.render()
    // Seen here: the session list marks only messages added after this.
    if (client.isSynced) markSeen(sessionId, all.length)
    if (!stick) return
    if (isPageScrolling()) window.scrollTo(0, document.documentElement.scrollHeight)
    else scroller.scrollTop = scroller.scrollHeight
  }
  const renderTitle = (): void => {
    const info = readSessionInfo(doc)
    setText(title, info.title ?? sessionId)
    document.title = `${info.title ?? sessionId} · Colloquy`
  }
  // Tokens arrive faster than frames, and reading a long answer's text costs its length: a change
  // only schedules a render (observeMessages would read the answer on every token), at most one a
  // frame.
  let messagesFrame: number | undefined
  const scheduleMessages = (): void => {
    messagesFrame ??= requestAnimationFrame(() => {
      messagesFrame = undefined
      const started = performance.now()
      renderMessages()
      // Its cost shows in the browser's performance timeline (and the e2e test's figures).
      performance.measure('colloquy:render-messages', { start: started })
    })
  }
  const messagesType = messagesArray(doc)
  messagesType.observeDeep(scheduleMessages)
  const stopMessages = (): void => messagesType.unobserveDeep(scheduleMessages)
  const onSessionChange = (): void => renderTitle()
  doc.getMap('session').observeDeep(onSessionChange)

  // Connection and durability.
  const renderSaved = (): void => {
    setText(saved, client.hasLocalChanges ? 'Saving…' : 'All changes saved')
    saved.dataset.pending = String(client.hasLocalChanges)
  }
  const renderStatus = (event?: StatusEvent): void => {
    const status = navigator.onLine ? client.status : 'offline'
    const isOnline = status === 'connected' && client.isSynced
    connection.dataset.status = isOnline ? 'online' : status === 'connected' ? 'connecting' : status
    const text = isOnline ? 'Online' : status === 'connected' ? 'Syncing…' : STATUS_TEXT[status]
    const detail = status === 'offline' ? ' · edits kept here' : ''
    setText(connection, `${text}${detail}`)
    connection.title = event?.reason ?? ''
    renderSaved()
  }
  const unsubscribers = [
    stopMessages,
    () => doc.getMap('session').unobserveDeep(onSessionChange),
    client.on('status', renderStatus),
    client.on('synced', () => renderStatus()),
    client.on('flushed', renderSaved),
  ]
  const onUpdate = (): void => renderSaved()
  doc.on('update', onUpdate)

  // The browser knows when the network is gone before the socket does: stop retrying then, and
  // reconnect at once when it is back (the document and the cache keep every edit meanwhile).
  const onOffline = (): void => {
    client.disconnect()
    renderStatus()
  }
  const onOnline = (): void => {
    client.connect()
    renderStatus()
  }
  window.addEventListener('offline', onOffline)
  window.addEventListener('online', onOnline)
  if (!navigator.onLine) client.disconnect()

  const onBeforeUnload = (event: BeforeUnloadEvent): void => {
    if (client.hasLocalChanges && navigator.onLine) event.preventDefault()
  }
  window.addEventListener('beforeunload', onBeforeUnload)

  // Presence.
  const renderPeople = (): void => renderPresence(presence, client.awareness)
  client.awareness.on('change', renderPeople)

  // Composer: Enter sends, Shift+Enter is a new line.
  const send = (): void => {
    const text = input.value.trim()
    if (text.length === 0) return
    const sent = appendMessage(doc, { role: 'user', author: identity, content: text })
    // The turn names the message: the server must hold it before a worker reads the session.
    if (pool !== undefined) void client.whenFlushed().then(() => turns.requestAnswer(sent.id))
    input.value = ''
    input.focus()
  }
  composer.addEventListener('submit', (event) => {
    event.preventDefault()
    send()
  })
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault()
      send()
    }
  })

  // History panel, created on first open.
  let history: { destroy(): void; refresh(): void } | undefined
  historyToggle.addEventListener('click', () => {
    const isOpen = historySlot.hidden
    historySlot.hidden = !isOpen
    historyToggle.setAttribute('aria-expanded', String(isOpen))
    if (!isOpen) return
    if (history === undefined)
      history = mountHistoryPanel(historySlot, { sessionId, ...(token === undefined ? {} : { token }) })
    else history.refresh()
    historySlot.querySelector<HTMLElement>('input, button')?.focus({ preventScroll: true })
    // At phone width the panel sits above the conversation: bring its top into view.
    historySlot.scrollIntoView({ block: 'start' })
  })

  renderTitle()
  renderMessages()
  renderPeople()
  renderStatus()
  let isDestroyed = false
  void client.whenLoaded().then(() => {
    if (isDestroyed) return
    renderMessages()
    renderTitle()
  })
  client
    .whenSynced()
    .then(() => {
      if (isDestroyed) return
      const current = readSessionInfo(doc).title
      if (
        options.title !== undefined &&
        (current === undefined || (options.isTitleReplaced === true && current !== options.title))
      )
        setSessionTitle(doc, options.title)
      touchParticipant(doc, identity)
      renderMessages()
    })
    .catch(() => undefined) // destroyed before the first sync: nothing to do
  input.focus()

  return {
    destroy() {
      isDestroyed = true
      if (messagesFrame !== undefined) cancelAnimationFrame(messagesFrame)
      for (const unsubscribe of unsubscribers) unsubscribe()
      doc.off('update', onUpdate)
      client.awareness.off('change', renderPeople)
      window.removeEventListener('offline', onOffline)
      window.removeEventListener('online', onOnline)
      window.removeEventListener('beforeunload', onBeforeUnload)
      history?.destroy()
      turns.destroy()
      clearTimeout(noticeTimer)
      client.destroy().catch((error: unknown) => console.error('closing the session failed', error))
    },
  }
}
