// The history panel: a slider over the session's seqs showing the conversation as it was at the
// selected point, export of that point (JSON, binary), and fork from it into a new session.
// Reads only the server's HTTP history API through the SDK's history client.

import { createHistoryClient, HistoryError } from '../../client/index.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { formatTime, h, setText } from './dom.js'
import { createMessagesView, type ShownMessage } from './messages-view.js'
import { setPendingTitle, TitleMode } from './pending-titles.js'

/** Options of {@link mountHistoryPanel}. */
export interface HistoryPanelOptions {
  readonly sessionId: string
  readonly token?: string
}

function describeError(error: unknown): string {
  if (error instanceof HistoryError) return `${error.message} (${error.code})`
  return error instanceof Error ? error.message : String(error)
}

/** Mounts the panel into `root`; `refresh()` re-reads the session's latest seq. */
export function mountHistoryPanel(
  root: HTMLElement,
  options: HistoryPanelOptions,
): { destroy(): void; refresh(): void } {
  const { sessionId, token } = options
  const history = createHistoryClient({
    baseUrl: location.origin,
    ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
  })
  const slider = h('input', {
    id: 'history-seq',
    type: 'range',
    min: 1,
    max: 1,
    step: 1,
    value: 1,
    disabled: true,
  })
  const position = h(
    'output',
    { for: 'history-seq', class: 'history-position', 'aria-live': 'polite' },
    'Loading…',
  )
  const latest = h('button', { type: 'button', class: 'secondary' }, 'Latest')
  const view = createMessagesView({ label: 'Conversation at the selected point' })
  const exportJson = h('a', { class: 'button secondary', download: '' }, 'Export JSON')
  const exportBinary = h('a', { class: 'button secondary', download: '' }, 'Export binary')
  const forkName = h('input', {
    id: 'fork-name',
    name: 'fork',
    required: true,
    pattern: '[A-Za-z0-9._:\\-]{1,128}',
    value: `${sessionId}-fork`,
    autocomplete: 'off',
  })
  const forkButton = h('button', { type: 'submit' }, 'Fork from here')
  const forkForm = h(
    'form',
    { class: 'fork', 'aria-label': 'Fork into a new session' },
    h('label', { for: 'fork-name' }, 'New session name'),
    h('div', { class: 'row' }, forkName, forkButton),
  )
  const message = h('p', { class: 'history-message', role: 'alert' })

  root.replaceChildren(
    h('h2', {}, 'History'),
    h('label', { for: 'history-seq' }, 'Point in the conversation'),
    h('div', { class: 'row' }, slider, latest),
    position,
    h('div', { class: 'history-actions' }, exportJson, exportBinary),
    forkForm,
    message,
    h('div', { class: 'history-view' }, view.element),
  )

  let isDestroyed = false
  let request = 0
  let timer: ReturnType<typeof setTimeout> | undefined

  const exportUrl = (seq: number, format: 'json' | 'yjs'): string => {
    const params = new URLSearchParams({ seq: String(seq), format })
    return `/sessions/${encodeURIComponent(sessionId)}/export?${params.toString()}`
  }

  // With a token the export is fetched with it in a header and saved from memory: a token in a
  // link's URL would end up in the download list and the browser history.
  const downloadWithToken = async (link: HTMLAnchorElement, bearer: string): Promise<void> => {
    const response = await fetch(link.href, { headers: { authorization: `Bearer ${bearer}` } })
    if (!response.ok) throw new Error(`export answered ${response.status}`)
    const disposition = response.headers.get('content-disposition') ?? ''
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `${sessionId}.export`
    const url = URL.createObjectURL(await response.blob())
    const save = h('a', { href: url, download: name })
    document.body.append(save)
    save.click()
    save.remove()
    setTimeout(() => URL.revokeObjectURL(url), 60_000)
  }
  for (const link of [exportJson, exportBinary]) {
    link.addEventListener('click', (event) => {
      if (token === undefined) return
      event.preventDefault()
      downloadWithToken(link, token).catch((error: unknown) =>
        setText(message, `Could not export: ${describeError(error)}`),
      )
    })
  }

  // Each load supersedes the previous one: only the answer to the latest request is shown.
  const show = async (seq: number): Promise<void> => {
    const mine = ++request
    root.setAttribute('aria-busy', 'true')
    try {
      const conversation = await history.conversation(sessionId, { seq }, { nearest: true })
      if (isDestroyed || mine !== request) return
      const shown: ShownMessage[] = conversation.messages.map((m) => ({
        id: m.id,
        role: m.role,
        author: m.author,
        createdAt: m.createdAt,
        content: m.content,
        status: m.status,
        ...(m.error === undefined ? {} : { error: m.error }),
      }))
      view.render(shown)
      root.dataset.seq = String(conversation.seq)
      setText(position, `seq ${conversation.seq} of ${slider.max} · ${formatTime(conversation.time)}`)
      slider.setAttribute('aria-valuetext', `seq ${conversation.seq}, ${formatTime(conversation.time)}`)
      exportJson.href = exportUrl(conversation.seq, 'json')
      exportBinary.href = exportUrl(conversation.seq, 'yjs')
      setText(forkButton, `Fork from seq ${conversation.seq}`)
      setText(message, '')
    } catch (error) {
      if (!isDestroyed && mine === request)
        setText(message, `Could not load this point: ${describeError(error)}`)
    } finally {
      if (mine === request) root.removeAttribute('aria-busy')
    }
  }

  const refresh = async (): Promise<void> => {
    try {
      const meta = await history.session(sessionId)
      if (isDestroyed) return
      const last = typeof meta.lastSeq === 'number' ? meta.lastSeq : 0
      if (last < 1) {
        setText(position, 'No history yet: nothing has been saved in this session.')
        return
      }
      const wasAtEnd = slider.disabled || Number(slider.value) === Number(slider.max)
      slider.max = String(last)
      slider.disabled = false
      if (wasAtEnd) slider.value = String(last)
      await show(Number(slider.value))
    } catch (error) {
      if (isDestroyed) return
      const isNew = error instanceof HistoryError && error.code === 'session-not-found'
      setText(position, isNew ? 'No history yet: nothing has been saved in this session.' : '')
      if (!isNew) setText(message, `Could not read the history: ${describeError(error)}`)
    }
  }

  slider.addEventListener('input', () => {
    clearTimeout(timer)
    setText(position, `seq ${slider.value} of ${slider.max}…`)
    timer = setTimeout(() => void show(Number(slider.value)), 120)
  })
  latest.addEventListener('click', () => {
    slider.value = slider.max
    void refresh()
  })
  forkForm.addEventListener('submit', (event) => {
    event.preventDefault()
    const target = forkName.value.trim()
    if (!isValidSessionId(target)) {
      setText(message, 'A session name is 1–128 letters, digits or . _ : -')
      return
    }
    const seq = Number(root.dataset.seq ?? slider.value)
    forkButton.disabled = true
    history
      .fork(sessionId, target, { seq })
      .then(() => {
        // The fork's document carries this session's title: name the fork after itself.
        setPendingTitle(target, target, TitleMode.Replace)
        location.hash = `#/s/${encodeURIComponent(target)}`
      })
      .catch((error: unknown) => {
        const exists = error instanceof HistoryError && error.code === 'session-exists'
        setText(
          message,
          exists ? `A session named ${target} exists already.` : `Fork failed: ${describeError(error)}`,
        )
      })
      .finally(() => {
        forkButton.disabled = false
      })
  })

  void refresh()
  return {
    refresh: () => void refresh(),
    destroy() {
      isDestroyed = true
      clearTimeout(timer)
    },
  }
}
