// Live previews of the session list: one multiplexed connection (client/connection.ts) holds the
// listed sessions open, and each row learns its last message and whether a reply is streaming the
// moment it changes, without a socket per session and without polling the history API.

import { createConnection, type SessionHandle } from '../../client/index.js'
import { type MessageView, readMessages } from '../../shared/conversation/index.js'

/** What a row shows of its session. */
export interface LivePreview {
  readonly sessionId: string
  /** The last message, or undefined in an empty session. */
  readonly last: MessageView | undefined
  readonly messageCount: number
  /** True while some message of the session is still being streamed. */
  readonly isStreaming: boolean
}

/** Options of {@link createLivePreviews}. */
export interface LivePreviewsOptions {
  /** The server's base URL (ws: or wss:). */
  readonly url: string
  readonly token?: string | undefined
  /** Called with a session's preview once synced and after each change (at most every `throttleMs`). */
  readonly onPreview: (preview: LivePreview) => void
  /** Called when a session cannot be previewed (its token does not cover it). */
  readonly onRefused?: (sessionId: string) => void
  /** The least time between two previews of one session (default 250 ms): a stream is many updates. */
  readonly throttleMs?: number
}

/** The sessions being previewed; see {@link createLivePreviews}. */
export interface LivePreviews {
  /** Previews exactly these sessions from now on: opens the new ones, closes the others. */
  track(sessionIds: readonly string[]): void
  destroy(): void
}

interface Tracked {
  readonly handle: SessionHandle
  timer: ReturnType<typeof setTimeout> | undefined
  stop(): void
}

/**
 * Creates the previewer; the socket opens with the first tracked session.
 *
 * @remarks A handle holds its whole session in memory: keep the tracked list short (the list shows
 * previews for its most recent sessions only).
 */
export function createLivePreviews(options: LivePreviewsOptions): LivePreviews {
  const { token } = options
  const throttleMs = options.throttleMs ?? 250
  const connection = createConnection({ url: options.url, ...(token === undefined ? {} : { token }) })
  const tracked = new Map<string, Tracked>()

  const publish = (sessionId: string, handle: SessionHandle): void => {
    const messages = readMessages(handle.doc)
    options.onPreview({
      sessionId,
      last: messages.at(-1),
      messageCount: messages.length,
      isStreaming: messages.some((message) => message.status === 'streaming'),
    })
  }

  const open = (sessionId: string): Tracked => {
    const handle = connection.open(sessionId)
    const entry: Tracked = {
      handle,
      timer: undefined,
      stop() {
        clearTimeout(entry.timer)
        offSynced()
        offStatus()
        handle.doc.off('update', onUpdate)
        void handle.close()
      },
    }
    const onUpdate = (): void => {
      if (!handle.isSynced || entry.timer !== undefined) return
      entry.timer = setTimeout(() => {
        entry.timer = undefined
        publish(sessionId, handle)
      }, throttleMs)
    }
    const offSynced = handle.on('synced', () => publish(sessionId, handle))
    const offStatus = handle.on('status', (event) => {
      if (event.status === 'error') options.onRefused?.(sessionId)
    })
    handle.doc.on('update', onUpdate)
    return entry
  }

  return {
    track(sessionIds) {
      const wanted = new Set(sessionIds)
      for (const [id, entry] of tracked) {
        if (wanted.has(id)) continue
        entry.stop()
        tracked.delete(id)
      }
      for (const id of sessionIds) if (!tracked.has(id)) tracked.set(id, open(id))
    },
    destroy() {
      for (const entry of tracked.values()) entry.stop()
      tracked.clear()
      void connection.destroy()
    },
  }
}
