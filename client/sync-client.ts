// The sync client: keeps one Y.Doc in sync with one session over one WebSocket at a time, through
// reconnects, with acknowledgements that mean "on disk". Isomorphic: no Node or DOM imports; the
// WebSocket class and the offline cache are injected. Imports shared/, never server/.

import type * as Y from 'yjs'
import { ColloquyError, toColloquyError } from '../shared/errors.js'
import { decodeMessage } from '../shared/protocol/message.js'
import { classicCodec } from '../shared/protocol/wire-codec.js'
import { isValidSessionId } from '../shared/session-id.js'
import { type BackoffOptions, resolveBackoff } from './backoff.js'
import type { OfflineCache } from './offline-cache.js'
import { AckMode, createSessionCore, type SessionLink, type SyncClient } from './session-core.js'
import { createSocketLoop } from './socket-loop.js'
import type { WebSocketLikeConstructor } from './websocket.js'

export type { SyncClient, SyncClientEvents } from './session-core.js'
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

/**
 * Creates a sync client for one session and (by default) starts connecting.
 *
 * @remarks
 * One socket per session, speaking y-websocket's protocol plus Colloquy's acknowledgements. The
 * per-session logic (handshake, acks, presence, events) is {@link createSessionCore}'s, shared with
 * the handles of a multiplexed connection (connection.ts); the reconnecting socket is
 * {@link createSocketLoop}'s.
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
  const { sessionId } = options
  const isConnecting = options.connect ?? true
  const core = createSessionCore({
    sessionId,
    doc: options.doc,
    ackMode: (options.acks ?? true) ? AckMode.Counter : AckMode.Off,
    offlineCache: options.offlineCache,
    onSynced: () => loop.markReady(),
    initialStatus: isConnecting ? 'connecting' : 'offline',
  })
  const link: SessionLink = { send: (message) => loop.send(classicCodec.encode(message, sessionId)) }
  const loop = createSocketLoop({
    WebSocket: WebSocketClass,
    backoff,
    connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
    token: options.token,
    url: (token) => connectionUrl(options.url, sessionId, options.params, token),
    onStatus: (event) => core.setStatus(event),
    onOpen: () => core.linkOpened(link),
    onLost: () => core.linkLost(),
    onFrame(frame) {
      try {
        core.receive(decodeMessage(frame))
      } catch (error) {
        const err = toColloquyError(error)
        // A message type we do not know is ignored, as y-protocols peers do: the protocol grows so.
        if (err.code !== 'unknown-message-type') loop.fail(err.info.closeCode, err.message)
      }
    },
  })
  /** False between disconnect() and connect(): a start still waiting for the cache must not run. */
  let isWanted = isConnecting
  const start = (): void => {
    void core.loaded.then(() => {
      if (isWanted && !core.isDestroyed) loop.start()
    })
  }
  if (isConnecting) start()
  return core.toClient({
    connect() {
      isWanted = true
      core.restorePresence()
      start()
    },
    disconnect() {
      // After a refusal (status error) nothing is connected or wanted: nothing to undo.
      if (!isWanted || (!loop.isWanted && loop.status === 'error')) return
      isWanted = false
      core.clearPresence()
      // An offline client not yet started still reports the disconnect.
      if (loop.isWanted) loop.stop('disconnected')
      else core.setStatus({ status: 'offline', reason: 'disconnected' })
    },
    destroy() {
      isWanted = false
      loop.destroy('client destroyed')
    },
  })
}

/** The WebSocket class to use: the injected one, else the global one. */
export function pickWebSocket(injected: WebSocketLikeConstructor | undefined): WebSocketLikeConstructor {
  const found = injected ?? (globalThis as { WebSocket?: WebSocketLikeConstructor }).WebSocket
  if (found === undefined) {
    throw new Error('no WebSocket class: pass options.WebSocket (in Node, `WebSocket` from "ws")')
  }
  return found
}
