// The sync client: keeps one Y.Doc in sync with one session over one WebSocket at a time, through
// reconnects, with acknowledgements that mean "on disk". Isomorphic: no Node or DOM imports; the
// WebSocket class and the offline cache are injected. Imports shared/, never server/.

import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { ColloquyError, type ErrorCode, toColloquyError } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol/close-codes.js'
import {
  decodeMessage,
  decodeSyncStatusCounter,
  encodeAwareness,
  encodeSyncStatus,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  type Message,
} from '../shared/protocol/message.js'
import { isValidSessionId } from '../shared/session-id.js'
import { createAckTracker } from './ack-tracker.js'
import { type BackoffOptions, backoffDelay, maxBackoffDelay, resolveBackoff } from './backoff.js'
import type { OfflineCache } from './offline-cache.js'
import { type ConnectionStatus, classifyClose, type StatusEvent } from './status.js'
import { frameBytes, WEBSOCKET_OPEN, type WebSocketLike, type WebSocketLikeConstructor } from './websocket.js'

export type { ConnectionStatus, StatusEvent } from './status.js'
export type { WebSocketLike, WebSocketLikeConstructor } from './websocket.js'

/** Options of {@link createSyncClient}. */
export interface SyncClientOptions {
  /** The server's base URL, e.g. `ws://127.0.0.1:8080`; the session id is appended as the path. */
  readonly url: string
  /** The session to join: 1–128 characters of `A-Za-z0-9._:-`. */
  readonly sessionId: string
  /** The document to sync (default: a new one). The client never destroys it. */
  readonly doc?: Y.Doc
  /** The WebSocket class (default `globalThis.WebSocket`; in Node pass `WebSocket` from `ws`). */
  readonly WebSocket?: WebSocketLikeConstructor
  /** Called before every connection attempt; the result is sent as the `token` query parameter. */
  readonly token?: () => string | Promise<string>
  /** More query parameters for every connection. */
  readonly params?: Readonly<Record<string, string>>
  /** A local copy of the session that survives restarts; loaded before the first connection. */
  readonly offlineCache?: OfflineCache
  /** Reconnect delays: capped exponential backoff with jitter. */
  readonly backoff?: BackoffOptions
  /** Connect at once (default true); otherwise call {@link SyncClient.connect}. */
  readonly connect?: boolean
  /** Ask the server to acknowledge durable writes (default true). Off: see {@link SyncClient.whenFlushed}. */
  readonly acks?: boolean
  /** A connection not synced within this many ms is dropped and retried (default 15 000). */
  readonly connectTimeoutMs?: number
}

/** Events of a {@link SyncClient}. */
export interface SyncClientEvents {
  /** The connection status changed (or a retry was scheduled). */
  status: (event: StatusEvent) => void
  /** The handshake of a connection finished: the document holds everything the server had. */
  synced: () => void
  /** Every local change is durable on the server ({@link SyncClient.hasLocalChanges} became false). */
  flushed: () => void
  /** The server refused a write (a read-only peer). */
  'permission-denied': (reason: string) => void
}

/** A connected (or reconnecting) session. */
export interface SyncClient {
  readonly doc: Y.Doc
  /** Presence: set `awareness.setLocalState(...)`; others' states are in `awareness.getStates()`. */
  readonly awareness: awarenessProtocol.Awareness
  readonly sessionId: string
  readonly status: ConnectionStatus
  /** True once the handshake of the current connection finished; false while offline. */
  readonly isSynced: boolean
  /** True while some local change is not yet acknowledged as durable by the server. */
  readonly hasLocalChanges: boolean
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof SyncClientEvents>(event: E, listener: SyncClientEvents[E]): () => void
  /** Resolves once the offline cache (if any) is loaded into the document. */
  whenLoaded(): Promise<void>
  /** Resolves when the current or next connection has synced. Rejects if the client is destroyed. */
  whenSynced(): Promise<void>
  /**
   * Resolves once every local change made before the call is durable on the server.
   *
   * @remarks
   * Survives reconnects: after a new handshake the client uploads what the server misses and asks
   * again. Resolves at once when there is nothing to flush. Rejects if the client is destroyed
   * first, and at once when the client was created with `acks: false`.
   */
  whenFlushed(): Promise<void>
  /** Connects now (also cancels a scheduled retry). */
  connect(): void
  /** Clears our presence, closes the connection and stops reconnecting until {@link SyncClient.connect}. */
  disconnect(): void
  /** Clears presence, closes the socket and the offline cache, removes listeners; leaves no timer. */
  destroy(): Promise<void>
}

/** The transaction origin of updates that came from the server. */
const REMOTE = Symbol('colloquy-remote')
/** The awareness origin of our own presence being cleared by disconnect(). */
const DISCONNECT = Symbol('colloquy-disconnect')

/** One WebSocket's life. The client ignores every event of a connection that is no longer current. */
interface Connection {
  readonly socket: WebSocketLike
  isOpen: boolean
  isSynced: boolean
  syncedAt: number | undefined
  handshakeTimer: ReturnType<typeof setTimeout> | undefined
}

/** Why a connection ended (or could not start). */
interface Ending {
  readonly reason: string
  readonly closeCode?: number
  readonly errorCode?: ErrorCode
  readonly isRetryable: boolean
  /** A policy close (rate limit, too many connections): retry only after the longest backoff. */
  readonly isPolicy?: boolean
}

/** Builds `base/<sessionId>?params&token=…`. */
export function connectionUrl(
  base: string,
  sessionId: string,
  params: Readonly<Record<string, string>> | undefined,
  token: string | undefined,
): string {
  const url = new URL(base)
  // The id goes in raw: the server matches the path before any percent-decoding, and valid ids
  // hold no character URL would escape.
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${sessionId}`
  for (const [key, value] of Object.entries(params ?? {})) url.searchParams.set(key, value)
  if (token !== undefined) url.searchParams.set('token', token)
  return url.toString()
}

/** Reports an error thrown by a user's listener without breaking the client's own state. */
function reportListenerError(error: unknown): void {
  queueMicrotask(() => {
    throw error
  })
}

/**
 * Creates a sync client for one session and (by default) starts connecting.
 *
 * @remarks
 * - Handshake per connection: send our state vector (sync step 1) and presence; answer the server's
 *   step 1 with step 2 (what it misses, e.g. offline edits), followed by a sync-status when some
 *   local change is unacknowledged; synced when the server's step 2 arrives.
 * - Local updates go out as sync updates; with acks on, a sync-status with a new counter follows
 *   each batch of them (at most one per microtask). An echoed counter covers every change made
 *   before it was sent.
 * - Reconnects with capped exponential backoff and jitter; the backoff resets once a connection
 *   has stayed synced for `backoff.resetAfterMs`. Policy closes (4529–4531) wait the maximum delay.
 *   A close the shared error table marks non-retryable (4400–4499) gives status `error` and stops
 *   reconnecting until `connect()`; an expired token (4301) reconnects with a fresh one.
 *
 * @throws ColloquyError `invalid-session-id`; Error when there is no WebSocket class; RangeError on
 * bad backoff options.
 */
export function createSyncClient(options: SyncClientOptions): SyncClient {
  if (!isValidSessionId(options.sessionId)) {
    throw new ColloquyError('invalid-session-id', `invalid session id: ${JSON.stringify(options.sessionId)}`)
  }
  const WebSocketClass = pickWebSocket(options.WebSocket)
  const backoff = resolveBackoff(options.backoff)
  const isAcking = options.acks ?? true
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000
  const cache = options.offlineCache
  const { sessionId } = options
  const doc = options.doc ?? new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  const tracker = createAckTracker()
  const listeners: { [E in keyof SyncClientEvents]: Set<SyncClientEvents[E]> } = {
    status: new Set(),
    synced: new Set(),
    flushed: new Set(),
    'permission-denied': new Set(),
  }

  let status: ConnectionStatus = 'offline'
  let isDestroyed = false
  let shouldConnect = options.connect ?? true
  let current: Connection | undefined
  /** Bumped by every connect, disconnect and destroy: an attempt that awaits a token checks it. */
  let generation = 0
  let isOpening = false
  /** Consecutive connections that failed (or did not stay synced long enough). */
  let attempt = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  let isStatusQueued = false
  let presenceBeforeDisconnect: Record<string, unknown> | undefined
  let syncWaiters: { resolve: () => void; reject: (error: Error) => void }[] = []
  let destroying: Promise<void> | undefined

  function emit<E extends keyof SyncClientEvents>(event: E, ...args: Parameters<SyncClientEvents[E]>): void {
    for (const listener of [...listeners[event]]) {
      try {
        ;(listener as (...a: Parameters<SyncClientEvents[E]>) => void)(...args)
      } catch (error) {
        reportListenerError(error)
      }
    }
  }

  function setStatus(event: StatusEvent): void {
    status = event.status
    emit('status', event)
  }

  function send(connection: Connection, frame: Uint8Array): void {
    if (connection.socket.readyState !== WEBSOCKET_OPEN) return
    connection.socket.send(frame)
  }

  /** Sends a sync-status if some local change is not covered by one sent on this connection. */
  function sendStatusNow(connection: Connection): void {
    const counter = tracker.takeCounter()
    if (counter === undefined) return
    if (isAcking) {
      send(connection, encodeSyncStatus(counter))
    } else if (tracker.acknowledge(counter)) {
      // Without acks "flushed" can only mean "sent".
      emit('flushed')
    }
  }

  function queueStatus(): void {
    if (isStatusQueued) return
    isStatusQueued = true
    // Coalesce: every update of this synchronous run is covered by one sync-status.
    queueMicrotask(() => {
      isStatusQueued = false
      if (current?.isOpen === true && !isDestroyed) sendStatusNow(current)
    })
  }

  const onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === REMOTE) return
    // Local edits and what the offline cache loaded: either may be missing on the server.
    tracker.markChange()
    const connection = current
    if (connection?.isOpen !== true) return
    send(connection, encodeSyncUpdate(update))
    queueStatus()
  }

  const onAwarenessUpdate = (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (origin === REMOTE) return
    const connection = current
    if (connection?.isOpen !== true) return
    const changed = [...changes.added, ...changes.updated, ...changes.removed]
    send(connection, encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(awareness, changed)))
  }

  /** Forgets everyone else's presence: we cannot see them while offline. */
  function clearRemotePresence(): void {
    const others = [...awareness.getStates().keys()].filter((id) => id !== doc.clientID)
    if (others.length === 0) return
    awarenessProtocol.removeAwarenessStates(awareness, others, REMOTE)
    // Drop their clocks too, so the server's re-announcement after a reconnect (same clock) is taken.
    for (const id of others) awareness.meta.delete(id)
  }

  /** Detaches the current connection: its socket is closed and its events are ignored from now on. */
  function release(connection: Connection, code: number, reason: string): void {
    if (current === connection) current = undefined
    clearTimeout(connection.handshakeTimer)
    connection.handshakeTimer = undefined
    tracker.connectionLost()
    clearRemotePresence()
    try {
      connection.socket.close(code, reason)
    } catch {
      // A socket that is already closing may refuse a second close; it is gone either way.
    }
  }

  function scheduleRetry(ending: Ending): void {
    if (!shouldConnect || isDestroyed) {
      setStatus({ status: 'offline', reason: ending.reason, ...closeFields(ending) })
      return
    }
    if (!ending.isRetryable) {
      // 4400–4499: the server decided, and reconnecting cannot change it (a stock y-websocket 3.x
      // provider stops too). Stay stopped until the application calls connect().
      shouldConnect = false
      attempt = 0
      clearTimeout(retryTimer)
      retryTimer = undefined
      setStatus({ status: 'error', reason: ending.reason, ...closeFields(ending) })
      return
    }
    attempt++
    // A policy close (45xx rate or connection limits) waits the longest delay, never hammering.
    const retryInMs = ending.isPolicy === true ? maxBackoffDelay(backoff) : backoffDelay(attempt, backoff)
    clearTimeout(retryTimer)
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      open()
    }, retryInMs)
    setStatus({
      status: 'offline',
      reason: ending.reason,
      ...closeFields(ending),
      retryInMs,
      attempt,
    })
  }

  /** A connection ended: by the server, the network, or us (a bad frame, a handshake timeout). */
  function end(connection: Connection, closeCode: number, reason: string): void {
    if (current !== connection) return
    if (connection.syncedAt !== undefined && Date.now() - connection.syncedAt >= backoff.resetAfterMs) {
      attempt = 0
    }
    release(connection, closeCode >= 3000 && closeCode <= 4999 ? closeCode : 1000, reason)
    scheduleRetry(classifyClose(closeCode, reason))
  }

  /** Ends a connection because of something wrong on our side of it (bad frame, timeout). */
  function fail(connection: Connection, error: ColloquyError): void {
    end(connection, error.info.closeCode, error.message)
  }

  function open(): void {
    if (isDestroyed || !shouldConnect || current !== undefined || isOpening) return
    clearTimeout(retryTimer)
    retryTimer = undefined
    isOpening = true
    const myGeneration = ++generation
    setStatus({ status: 'connecting', attempt })
    void (async () => {
      let token: string | undefined
      try {
        if (options.token !== undefined) token = await options.token()
      } catch (error) {
        if (myGeneration !== generation) return
        isOpening = false
        const message = error instanceof Error ? error.message : String(error)
        scheduleRetry({ reason: `token provider failed: ${message}`, isRetryable: true })
        return
      }
      if (myGeneration !== generation) return
      isOpening = false
      let socket: WebSocketLike
      try {
        socket = new WebSocketClass(connectionUrl(options.url, sessionId, options.params, token))
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        scheduleRetry({ reason: `cannot open a WebSocket: ${message}`, isRetryable: true })
        return
      }
      attach(socket)
    })()
  }

  function attach(socket: WebSocketLike): void {
    socket.binaryType = 'arraybuffer'
    const connection: Connection = {
      socket,
      isOpen: false,
      isSynced: false,
      syncedAt: undefined,
      handshakeTimer: undefined,
    }
    current = connection
    connection.handshakeTimer = setTimeout(() => {
      connection.handshakeTimer = undefined
      end(connection, CloseCode.Abnormal, `not synced within ${connectTimeoutMs} ms`)
    }, connectTimeoutMs)
    socket.addEventListener('open', () => {
      if (current === connection) opened(connection)
    })
    socket.addEventListener('message', (event) => {
      if (current === connection) receive(connection, event.data)
    })
    socket.addEventListener('close', (event) => {
      end(connection, event.code, event.reason)
    })
    socket.addEventListener('error', () => {
      // A close event always follows; it carries what we need.
    })
  }

  function opened(connection: Connection): void {
    connection.isOpen = true
    setStatus({ status: 'connected' })
    send(connection, encodeSyncStep1(Y.encodeStateVector(doc)))
    const presence = awareness.getLocalState()
    // Re-announce with a new clock: peers that saw us leave keep our old clock and would ignore it.
    if (presence !== null) awareness.setLocalState(presence)
  }

  function receive(connection: Connection, data: unknown): void {
    const frame = frameBytes(data)
    if (frame === undefined) {
      fail(connection, new ColloquyError('text-frame', 'the server sent a text frame'))
      return
    }
    try {
      handle(connection, decodeMessage(frame))
    } catch (error) {
      const err = toColloquyError(error)
      // A message type we do not know is ignored, as y-protocols peers do: the protocol grows so.
      if (err.code !== 'unknown-message-type') fail(connection, err)
    }
  }

  function handle(connection: Connection, message: Message): void {
    switch (message.type) {
      case 'sync-step1': {
        send(connection, encodeSyncStep2(Y.encodeStateAsUpdate(doc, message.stateVector)))
        // The step 2 just sent holds every local change the server misses: ask for its ack.
        sendStatusNow(connection)
        return
      }
      case 'sync-step2':
        applyRemote(message.update)
        if (!connection.isSynced) {
          connection.isSynced = true
          connection.syncedAt = Date.now()
          clearTimeout(connection.handshakeTimer)
          connection.handshakeTimer = undefined
          const waiters = syncWaiters
          syncWaiters = []
          for (const waiter of waiters) waiter.resolve()
          emit('synced')
        }
        return
      case 'sync-update':
        applyRemote(message.update)
        return
      case 'awareness':
        awarenessProtocol.applyAwarenessUpdate(awareness, message.update, REMOTE)
        return
      case 'query-awareness':
        send(
          connection,
          encodeAwareness(
            awarenessProtocol.encodeAwarenessUpdate(awareness, [...awareness.getStates().keys()]),
          ),
        )
        return
      case 'auth':
        emit('permission-denied', message.reason)
        return
      case 'sync-status': {
        const counter = decodeSyncStatusCounter(message.payload)
        if (counter !== undefined && tracker.acknowledge(counter)) emit('flushed')
        return
      }
    }
  }

  function applyRemote(update: Uint8Array): void {
    try {
      Y.applyUpdate(doc, update, REMOTE)
    } catch (error) {
      throw new ColloquyError('invalid-update', 'the server sent an update that does not apply', {
        cause: error,
      })
    }
  }

  /** Sends our presence as "gone" and remembers it for the next connect(). */
  function clearPresence(): void {
    const presence = awareness.getLocalState()
    if (presence === null) return
    presenceBeforeDisconnect = presence
    awarenessProtocol.removeAwarenessStates(awareness, [doc.clientID], DISCONNECT)
  }

  // Content the document already held may be missing on the server, like anything the cache loads.
  if (doc.store.clients.size > 0) tracker.markChange()
  doc.on('update', onDocUpdate)
  awareness.on('update', onAwarenessUpdate)

  // Browsers announce when the network is back: retry then instead of waiting out the backoff.
  const onOnline = (): void => {
    if (retryTimer !== undefined) open()
  }
  const networkEvents = globalThis as {
    addEventListener?: (type: 'online', listener: () => void) => void
    removeEventListener?: (type: 'online', listener: () => void) => void
  }
  networkEvents.addEventListener?.('online', onOnline)

  const loaded = (async () => {
    if (cache === undefined) return
    try {
      await cache.attach(doc)
    } catch (error) {
      // Syncing still works without the cache; say why it is missing.
      const message = error instanceof Error ? error.message : String(error)
      if (!isDestroyed) setStatus({ status, reason: `offline cache failed to load: ${message}` })
    }
  })()

  if (shouldConnect) {
    status = 'connecting'
    void loaded.then(open)
  }

  const client: SyncClient = {
    doc,
    awareness,
    sessionId,
    get status() {
      return status
    },
    get isSynced() {
      return current?.isSynced === true
    },
    get hasLocalChanges() {
      return tracker.hasLocalChanges
    },
    on(event, listener) {
      const set = listeners[event] as Set<typeof listener>
      set.add(listener)
      return () => {
        set.delete(listener)
      }
    },
    whenLoaded() {
      return loaded
    },
    whenSynced() {
      if (isDestroyed) return Promise.reject(new Error('sync client destroyed'))
      if (current?.isSynced === true) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        syncWaiters.push({ resolve, reject })
      })
    },
    whenFlushed() {
      if (isDestroyed) return Promise.reject(new Error('sync client destroyed'))
      if (!isAcking) {
        return Promise.reject(new Error('whenFlushed() needs acks: this client was created with acks: false'))
      }
      return tracker.whenFlushed()
    },
    connect() {
      if (isDestroyed) return
      shouldConnect = true
      if (presenceBeforeDisconnect !== undefined && awareness.getLocalState() === null) {
        awareness.setLocalState(presenceBeforeDisconnect)
      }
      presenceBeforeDisconnect = undefined
      if (current !== undefined || isOpening) return
      void loaded.then(open)
    },
    disconnect() {
      if (isDestroyed || !shouldConnect) return
      shouldConnect = false
      generation++
      isOpening = false
      attempt = 0
      clearTimeout(retryTimer)
      retryTimer = undefined
      clearPresence()
      const connection = current
      if (connection !== undefined) release(connection, CloseCode.Normal, 'disconnected')
      setStatus({ status: 'offline', reason: 'disconnected' })
    },
    destroy() {
      destroying ??= (async () => {
        isDestroyed = true
        shouldConnect = false
        generation++
        clearTimeout(retryTimer)
        retryTimer = undefined
        // Destroying the awareness clears our presence; the listener still sends that while open.
        networkEvents.removeEventListener?.('online', onOnline)
        awareness.destroy()
        awareness.off('update', onAwarenessUpdate)
        doc.off('update', onDocUpdate)
        const connection = current
        if (connection !== undefined) release(connection, CloseCode.Normal, 'client destroyed')
        const error = new Error('sync client destroyed')
        tracker.rejectAll(error)
        const waiters = syncWaiters
        syncWaiters = []
        for (const waiter of waiters) waiter.reject(error)
        if (status !== 'offline') setStatus({ status: 'offline', reason: 'destroyed' })
        for (const set of Object.values(listeners)) set.clear()
        await loaded
        await cache?.close()
      })()
      return destroying
    },
  }
  return client
}

function pickWebSocket(injected: WebSocketLikeConstructor | undefined): WebSocketLikeConstructor {
  const found = injected ?? (globalThis as { WebSocket?: WebSocketLikeConstructor }).WebSocket
  if (found === undefined) {
    throw new Error('no WebSocket class: pass options.WebSocket (in Node, `WebSocket` from "ws")')
  }
  return found
}

function closeFields(ending: Ending): { closeCode?: number; errorCode?: ErrorCode } {
  return {
    ...(ending.closeCode === undefined ? {} : { closeCode: ending.closeCode }),
    ...(ending.errorCode === undefined ? {} : { errorCode: ending.errorCode }),
  }
}
