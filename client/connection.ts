// The multiplexed connection: one WebSocket to the server's Hocuspocus endpoint carrying many
// sessions, each opened on demand as a handle with the sync client's API. Per session: its own token
// (auth message), handshake, resume by state vector, acks and refusals; shared: the socket, its
// reconnects and backoff. The per-session logic is session-core.ts's, the socket socket-loop.ts's.

import { ColloquyError, toColloquyError } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol/close-codes.js'
import {
  decodeHocuspocusBody,
  encodeHocuspocus,
  readDocumentName,
} from '../shared/protocol/hocuspocus-codec.js'
import type { AuthScope, Message, MessageBody } from '../shared/protocol/message.js'
import { isValidSessionId } from '../shared/session-id.js'
import { type BackoffOptions, backoffDelay, maxBackoffDelay, resolveBackoff } from './backoff.js'
import type { OfflineCache } from './offline-cache.js'
import {
  AckMode,
  createSessionCore,
  type SessionCore,
  type SessionLink,
  type SyncClient,
} from './session-core.js'
import { createSocketLoop } from './socket-loop.js'
import { type CloseVerdict, type ConnectionStatus, classifyClose, type StatusEvent } from './status.js'
import { pickWebSocket } from './sync-client.js'
import type { WebSocketLikeConstructor } from './websocket.js'

/** The path of the server's Hocuspocus endpoint (PROTOCOL.md). */
export const MULTIPLEX_PATH = '/hocuspocus'

/** A token, or a provider of one called before each use. */
export type TokenSource = string | (() => string | Promise<string>)

/** Options of {@link createConnection}. */
export interface ConnectionOptions {
  /** The server's base URL, e.g. `ws://127.0.0.1:8080`; {@link ConnectionOptions.path} is appended. */
  readonly url: string
  /** The endpoint's path (default `/hocuspocus`). */
  readonly path?: string
  /** One token for every session, fetched again before every (re)authentication of each. */
  readonly token?: TokenSource
  /** A token per session, fetched before every (re)authentication of that session; wins over `token`. */
  readonly tokenFor?: (sessionId: string) => string | Promise<string>
  /** The WebSocket class (default `globalThis.WebSocket`; in Node pass `WebSocket` from `ws`). */
  readonly WebSocket?: WebSocketLikeConstructor
  /** More query parameters for the socket's URL. */
  readonly params?: Readonly<Record<string, string>>
  /** Reconnect delays of the socket, and of one session the server closed. */
  readonly backoff?: BackoffOptions
  /**
   * A socket not open within this many ms is dropped and retried; a session not synced this long
   * after its token was sent is closed and retried (default 15 000).
   */
  readonly connectTimeoutMs?: number
  /** Wait for durable acks (default true). Off: `whenFlushed()` rejects and "flushed" means "sent". */
  readonly acks?: boolean
}

/** Options of {@link Connection.open}. */
export interface OpenOptions {
  /** The document to sync (default: a new one). Never destroyed by the handle. */
  readonly doc?: SyncClient['doc']
  /** A local copy of the session, loaded before the session is opened on the socket. */
  readonly offlineCache?: OfflineCache
  /** This session's token (wins over the connection's `tokenFor` and `token`). */
  readonly token?: TokenSource
}

/** One session on a multiplexed connection: the {@link SyncClient} API, plus what the protocol adds. */
export interface SessionHandle extends SyncClient {
  /** What the server granted on the last authentication: `read-write`, `readonly`, or undefined before. */
  readonly scope: AuthScope | undefined
  /** Sends a stateless message to the session's other peers (never stored); dropped while not open. */
  sendStateless(payload: string): void
  /** Closes this session (presence cleared, its offline cache closed); the socket stays open. Same as `destroy()`. */
  close(): Promise<void>
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents {
  /** The socket's status changed (or a retry was scheduled). */
  status: (event: StatusEvent) => void
}

/** One socket, many sessions; see {@link createConnection}. */
export interface Connection {
  /** The socket's status. */
  readonly status: ConnectionStatus
  /** The ids of the sessions open on this connection (not closed). */
  readonly sessionIds: readonly string[]
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof ConnectionEvents>(event: E, listener: ConnectionEvents[E]): () => void
  /**
   * Opens a session: returns its handle at once; the session syncs as soon as the socket is open
   * and the server accepted its token.
   *
   * @throws ColloquyError `invalid-session-id`; Error when the session is already open here.
   */
  open(sessionId: string, options?: OpenOptions): SessionHandle
  /** Connects the socket now (it connects by itself on the first open()). */
  connect(): void
  /** Closes the socket and stops reconnecting until {@link Connection.connect}; handles stay, offline. */
  disconnect(): void
  /** Closes every session and the socket; leaves no timer. */
  destroy(): Promise<void>
}

/** Where one session stands on the socket. */
const Phase = {
  /** Not on the socket (socket down, waiting to retry, disconnected). */
  Idle: 'idle',
  /** Its token is being fetched or was sent; no answer yet. */
  Authenticating: 'authenticating',
  /** Authenticated: syncing or synced. */
  Open: 'open',
  /** The server refused its token: stays off until the handle's connect(). */
  Refused: 'refused',
} as const

type Phase = (typeof Phase)[keyof typeof Phase]

interface Entry {
  readonly sessionId: string
  readonly core: SessionCore
  readonly link: SessionLink
  readonly token: TokenSource | undefined
  handle: SessionHandle | undefined
  /** Between the handle's connect() and disconnect(). */
  isWanted: boolean
  phase: Phase
  scope: AuthScope | undefined
  /** True from the token sent until the session leaves the socket: its messages go out. */
  isLinked: boolean
  /** Bumped whenever the session leaves the socket: a token fetched for an older round is dropped. */
  round: number
  /** Consecutive closes of this session by the server (the socket's own backoff is separate). */
  attempt: number
  syncedAt: number | undefined
  /** The sync timeout of the current round, or the retry after the server closed the session. */
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * Creates a connection that multiplexes sessions over one WebSocket, speaking the Hocuspocus
 * protocol to the server's `/hocuspocus` endpoint (PROTOCOL.md).
 *
 * @remarks
 * - The socket opens with the first {@link Connection.open} and reconnects like a sync client's
 *   (capped backoff with jitter, policy closes wait the longest, 44xx stops). Every session open on
 *   it then authenticates again with a fresh token and resumes by state vector.
 * - Per session: an auth message with its token, step 1 and presence at once (the server queues
 *   them until it has checked the token, and drops them if it refuses it); synced on the server's
 *   step 2, which comes after its `authenticated`. The server answers every step 2 and update
 *   with a sync-status once it is durable ({@link AckMode.PerUpdate}), which `whenFlushed()` counts.
 * - A refusal concerns that session only: permission denied gives its handle status `error`
 *   (`forbidden`) until its `connect()`; a close of the session by the server (a bad message, a
 *   limit) gives it status `offline` and a retry with backoff. A frame that names no document is
 *   the socket's fault: the socket is dropped (4400) and reconnects.
 *
 * @throws Error when there is no WebSocket class; RangeError on bad backoff options.
 */
export function createConnection(options: ConnectionOptions): Connection {
  const WebSocketClass = pickWebSocket(options.WebSocket)
  const backoff = resolveBackoff(options.backoff)
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000
  const ackMode = (options.acks ?? true) ? AckMode.PerUpdate : AckMode.Off
  const entries = new Map<string, Entry>()
  const statusListeners = new Set<ConnectionEvents['status']>()
  let isDestroyed = false
  let isConnectWanted = true

  const loop = createSocketLoop({
    WebSocket: WebSocketClass,
    backoff,
    connectTimeoutMs,
    url: () => multiplexUrl(options.url, options.path ?? MULTIPLEX_PATH, options.params),
    onStatus(event) {
      for (const listener of [...statusListeners]) listener(event)
      // The socket being up says nothing of a session yet: it is `connected` once authenticated.
      if (event.status === 'connected') return
      for (const entry of entries.values()) {
        if (entry.isWanted && entry.phase !== Phase.Refused) entry.core.setStatus(event)
      }
    },
    onOpen() {
      // The socket's handshake is the upgrade; each session then has its own timeout.
      loop.markReady()
      for (const entry of entries.values()) authenticate(entry)
    },
    onLost() {
      for (const entry of entries.values()) leave(entry)
    },
    onFrame: receive,
  })

  function sendFor(sessionId: string, message: MessageBody): void {
    loop.send(encodeHocuspocus(message, sessionId))
  }

  /** Takes a session off the socket (socket lost, session closed or refused); no message is sent. */
  function leave(entry: Entry): void {
    entry.isLinked = false
    entry.round++
    clearTimeout(entry.timer)
    entry.timer = undefined
    if (entry.phase !== Phase.Refused) entry.phase = Phase.Idle
    entry.core.linkLost()
  }

  async function tokenOf(entry: Entry): Promise<string> {
    const source = entry.token ?? (options.tokenFor === undefined ? options.token : undefined)
    if (source === undefined) return options.tokenFor === undefined ? '' : options.tokenFor(entry.sessionId)
    return typeof source === 'string' ? source : source()
  }

  /** Sends the session's token if the socket is open and the session wants to be on it. */
  function authenticate(entry: Entry): void {
    if (!loop.isOpen || !entry.isWanted || entry.phase !== Phase.Idle || entry.timer !== undefined) return
    entry.phase = Phase.Authenticating
    const round = ++entry.round
    entry.core.setStatus({ status: 'connecting', attempt: entry.attempt })
    void (async () => {
      let token: string
      try {
        await entry.core.loaded
        token = await tokenOf(entry)
      } catch (error) {
        if (round !== entry.round) return
        const message = error instanceof Error ? error.message : String(error)
        retry(entry, `token provider failed: ${message}`)
        return
      }
      if (round !== entry.round || !loop.isOpen) return
      sendFor(entry.sessionId, { type: 'auth-token', token })
      // Pipelined, as Hocuspocus' provider does: the server queues the session's messages while it
      // checks the token and drops them if it refuses; one round trip less per session.
      entry.isLinked = true
      entry.core.linkOpened(entry.link)
      entry.timer = setTimeout(() => {
        entry.timer = undefined
        close(entry, `not synced within ${connectTimeoutMs} ms`)
      }, connectTimeoutMs)
    })()
  }

  /** Takes the session off the socket and tries again after a backoff delay (the longest after a policy refusal). */
  function retry(entry: Entry, reason: string, verdict?: CloseVerdict): void {
    if (entry.syncedAt !== undefined && Date.now() - entry.syncedAt >= backoff.resetAfterMs) entry.attempt = 0
    entry.syncedAt = undefined
    leave(entry)
    entry.attempt++
    const retryInMs =
      verdict?.isPolicy === true ? maxBackoffDelay(backoff) : backoffDelay(entry.attempt, backoff)
    entry.timer = setTimeout(() => {
      entry.timer = undefined
      authenticate(entry)
    }, retryInMs)
    entry.core.setStatus({
      status: 'offline',
      reason,
      ...(verdict === undefined ? {} : { closeCode: verdict.closeCode }),
      ...(verdict?.errorCode === undefined ? {} : { errorCode: verdict.errorCode }),
      retryInMs,
      attempt: entry.attempt,
    })
  }

  /** Our side ends one session's round (bad message, timeout): tells the server, then retries. */
  function close(entry: Entry, reason: string): void {
    sendFor(entry.sessionId, { type: 'close', reason })
    retry(entry, reason)
  }

  /**
   * The server refused the session's token or closed the session: with a code retrying cannot
   * change (44xx), the session stops until its handle's connect(); otherwise it is retried.
   */
  function refused(entry: Entry, reason: string, isDenial: boolean): void {
    const verdict = refusalVerdict(reason, isDenial)
    if (verdict.isRetryable) {
      retry(entry, verdict.reason, verdict)
      return
    }
    leave(entry)
    entry.phase = Phase.Refused
    entry.isWanted = false
    entry.core.setStatus({
      status: 'error',
      reason: verdict.reason,
      closeCode: verdict.closeCode,
      ...(verdict.errorCode === undefined ? {} : { errorCode: verdict.errorCode }),
    })
    if (isDenial) entry.core.denied(verdict.reason)
  }

  function receive(frame: Uint8Array): void {
    let documentName: string
    let bodyOffset: number
    try {
      ;({ documentName, bodyOffset } = readDocumentName(frame))
    } catch (error) {
      // No document to blame: the socket is broken.
      loop.fail(CloseCode.MalformedMessage, toColloquyError(error).message)
      return
    }
    const entry = entries.get(documentName)
    // A frame for a session closed here (its close crossed the server's frames) is dropped.
    if (entry === undefined || entry.phase === Phase.Idle || entry.phase === Phase.Refused) return
    let message: Message
    try {
      message = decodeHocuspocusBody(frame, documentName, bodyOffset)
    } catch (error) {
      const err = toColloquyError(error)
      // Unknown types are ignored, as the provider's peers do; a malformed body is this session's.
      if (err.code !== 'unknown-message-type') close(entry, err.message)
      return
    }
    handle(entry, message)
  }

  function handle(entry: Entry, message: Message): void {
    switch (message.type) {
      case 'authenticated':
        if (entry.phase !== Phase.Authenticating) return
        entry.phase = Phase.Open
        entry.scope = message.scope
        entry.core.setStatus({ status: 'connected' })
        return
      case 'auth':
        // Before authentication: the token is refused. After: a write refused (a read-only scope).
        if (entry.phase === Phase.Authenticating) refused(entry, message.reason, true)
        else entry.core.receive(message)
        return
      case 'close':
        refused(entry, message.reason, false)
        return
      default:
        if (entry.phase !== Phase.Open) return
        try {
          entry.core.receive(message)
        } catch (error) {
          const err = error instanceof ColloquyError ? error : toColloquyError(error)
          close(entry, err.message)
        }
    }
  }

  function open(sessionId: string, openOptions: OpenOptions = {}): SessionHandle {
    if (isDestroyed) throw new Error('connection destroyed')
    if (!isValidSessionId(sessionId)) {
      throw new ColloquyError('invalid-session-id', `invalid session id: ${JSON.stringify(sessionId)}`)
    }
    if (entries.has(sessionId)) throw new Error(`session ${sessionId} is already open on this connection`)
    let entry: Entry | undefined
    const core = createSessionCore({
      sessionId,
      doc: openOptions.doc,
      ackMode,
      offlineCache: openOptions.offlineCache,
      initialStatus: 'connecting',
      onSynced() {
        if (entry === undefined) return
        entry.syncedAt = Date.now()
        clearTimeout(entry.timer)
        entry.timer = undefined
      },
    })
    const created: Entry = {
      sessionId,
      core,
      link: {
        send(message) {
          if (created.isLinked) sendFor(sessionId, message)
        },
      },
      token: openOptions.token,
      handle: undefined,
      isWanted: true,
      phase: Phase.Idle,
      isLinked: false,
      scope: undefined,
      round: 0,
      attempt: 0,
      syncedAt: undefined,
      timer: undefined,
    }
    entry = created
    entries.set(sessionId, created)
    const client = core.toClient({
      connect() {
        created.isWanted = true
        if (created.phase === Phase.Refused) created.phase = Phase.Idle
        created.attempt = 0
        clearTimeout(created.timer)
        created.timer = undefined
        core.restorePresence()
        if (loop.isOpen) authenticate(created)
        else startSocket()
      },
      disconnect() {
        if (!created.isWanted) return
        created.isWanted = false
        core.clearPresence()
        if (created.phase !== Phase.Idle && created.phase !== Phase.Refused) {
          sendFor(sessionId, { type: 'close', reason: 'disconnected' })
        }
        leave(created)
        core.setStatus({ status: 'offline', reason: 'disconnected' })
      },
      destroy() {
        // The awareness removal went out just before; now the server may drop the session.
        if (created.phase === Phase.Open || created.phase === Phase.Authenticating) {
          sendFor(sessionId, { type: 'close', reason: 'closed' })
        }
        created.isWanted = false
        leave(created)
        if (entries.get(sessionId) === created) entries.delete(sessionId)
      },
    })
    const extra: Pick<SessionHandle, 'scope' | 'sendStateless' | 'close'> = {
      get scope() {
        return created.scope
      },
      sendStateless(payload: string) {
        if (created.phase === Phase.Open) sendFor(sessionId, { type: 'stateless', payload })
      },
      close() {
        return client.destroy()
      },
    }
    // The client is a fresh object of this handle's own: add the handle's members to it (as
    // properties, so the scope getter stays live).
    const handle = Object.defineProperties(client, Object.getOwnPropertyDescriptors(extra)) as SessionHandle
    created.handle = handle
    if (loop.isOpen) authenticate(created)
    else startSocket()
    return handle
  }

  function startSocket(): void {
    if (isConnectWanted && !isDestroyed) loop.start()
  }

  return {
    get status() {
      return loop.status
    },
    get sessionIds() {
      return [...entries.keys()]
    },
    on(_event, listener) {
      statusListeners.add(listener)
      return () => {
        statusListeners.delete(listener)
      }
    },
    open,
    connect() {
      isConnectWanted = true
      startSocket()
    },
    disconnect() {
      isConnectWanted = false
      loop.stop('disconnected')
    },
    async destroy() {
      if (isDestroyed) return
      const closing = [...entries.values()].map((entry) => entry.handle?.close())
      isDestroyed = true
      await Promise.all(closing)
      loop.destroy('connection destroyed')
    },
  }
}

/**
 * Reads a refusal or close reason of the server's Hocuspocus endpoint, `<close code> <reason>`
 * (PROTOCOL.md), with the shared close-code table. A reason without a code is a permission denied
 * (4403) when it refuses a token, and a retryable close otherwise.
 */
export function refusalVerdict(text: string, isDenial: boolean): CloseVerdict {
  const match = /^(\d{4}) (.*)$/s.exec(text)
  if (match !== null) return classifyClose(Number(match[1]), match[2] ?? '')
  const reason = text.length > 0 ? text : isDenial ? 'permission denied' : 'closed by the server'
  if (isDenial) return classifyClose(CloseCode.Forbidden, reason)
  return { closeCode: CloseCode.Normal, reason, isRetryable: true }
}

/** Builds `base/<path>?params`. */
export function multiplexUrl(
  base: string,
  path: string,
  params: Readonly<Record<string, string>> | undefined,
): string {
  const url = new URL(base)
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`
  for (const [key, value] of Object.entries(params ?? {})) url.searchParams.set(key, value)
  return url.toString()
}
