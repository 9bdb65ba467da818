// One reconnecting WebSocket: opens it (after asking for a token), drops it when its handshake takes
// too long, and reconnects with capped backoff, jitter and the shared close-code table. It knows no
// protocol: the one-session client (sync-client.ts) and the multiplexed connection (connection.ts)
// both run on it and tell it when their handshake is done. Isomorphic: the WebSocket is injected.

import type { ErrorCode } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol/close-codes.js'
import { backoffDelay, maxBackoffDelay, type ResolvedBackoff } from './backoff.js'
import { type ConnectionStatus, classifyClose, type StatusEvent } from './status.js'
import { frameBytes, WEBSOCKET_OPEN, type WebSocketLike, type WebSocketLikeConstructor } from './websocket.js'

/** Options of {@link createSocketLoop}. */
export interface SocketLoopOptions {
  readonly WebSocket: WebSocketLikeConstructor
  readonly backoff: ResolvedBackoff
  /** A connection whose handshake has not finished ({@link SocketLoop.markReady}) by then is dropped. */
  readonly connectTimeoutMs: number
  /** Called before every attempt; its result goes to {@link SocketLoopOptions.url}. A throw is retried. */
  readonly token?: (() => string | Promise<string>) | undefined
  /** The URL of one attempt, given the token just fetched. */
  readonly url: (token: string | undefined) => string
  /** Every status change and scheduled retry. */
  readonly onStatus: (event: StatusEvent) => void
  /** The socket is open: start the handshake. */
  readonly onOpen: () => void
  /** One binary frame of the current socket. A text frame ends the connection with 4415 instead. */
  readonly onFrame: (frame: Uint8Array) => void
  /** The current socket is gone (closed by either side); called before the status event. */
  readonly onLost: () => void
}

/** A reconnecting socket; see {@link createSocketLoop}. */
export interface SocketLoop {
  readonly status: ConnectionStatus
  /** True while a socket is open. */
  readonly isOpen: boolean
  /** True while the application wants a connection (between start() and stop()). */
  readonly isWanted: boolean
  /** Connects now, or cancels a scheduled retry and connects at once. */
  start(): void
  /** Closes the socket and stops reconnecting until {@link SocketLoop.start}. Status `offline`. */
  stop(reason: string): void
  /** Sends one frame on the open socket; drops it when none is open. */
  send(frame: Uint8Array): void
  /** The handshake of the current socket finished: clears its timeout and starts its backoff-reset clock. */
  markReady(): void
  /** Ends the current connection for a reason on our side (a bad frame): closes it, then retries. */
  fail(closeCode: number, reason: string): void
  /** Stops for good: closes the socket, leaves no timer or listener. */
  destroy(reason: string): void
}

/** One WebSocket's life. Every event of a connection that is no longer current is ignored. */
interface Attempt {
  readonly socket: WebSocketLike
  isOpen: boolean
  readyAt: number | undefined
  timer: ReturnType<typeof setTimeout> | undefined
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

/**
 * Creates a reconnecting socket, stopped: call {@link SocketLoop.start}.
 *
 * @remarks
 * Reconnects with capped exponential backoff and jitter; the backoff resets once a connection has
 * stayed ready for `backoff.resetAfterMs`. Policy closes (4529–4531) wait the maximum delay. A
 * close the shared error table marks non-retryable (4400–4499) gives status `error` and stops until
 * `start()`; an expired token (4301) reconnects with a fresh one. In browsers, the window's
 * `online` event retries at once.
 */
export function createSocketLoop(options: SocketLoopOptions): SocketLoop {
  const { backoff, connectTimeoutMs } = options
  let status: ConnectionStatus = 'offline'
  let isWanted = false
  let isDestroyed = false
  let current: Attempt | undefined
  /** Bumped by every start, stop and destroy: an attempt that awaits a token checks it. */
  let generation = 0
  let isOpening = false
  /** Consecutive connections that failed (or did not stay ready long enough). */
  let attempt = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  function setStatus(event: StatusEvent): void {
    status = event.status
    options.onStatus(event)
  }

  /** Detaches the current socket: closes it and ignores its events from now on. */
  function release(connection: Attempt, code: number, reason: string): void {
    if (current === connection) current = undefined
    clearTimeout(connection.timer)
    connection.timer = undefined
    options.onLost()
    try {
      connection.socket.close(code, reason)
    } catch {
      // A socket that is already closing may refuse a second close; it is gone either way.
    }
  }

  function scheduleRetry(ending: Ending): void {
    if (!isWanted || isDestroyed) {
      setStatus({ status: 'offline', reason: ending.reason, ...closeFields(ending) })
      return
    }
    if (!ending.isRetryable) {
      // 4400–4499: the server decided, and reconnecting cannot change it. Stay stopped until start().
      isWanted = false
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
    setStatus({ status: 'offline', reason: ending.reason, ...closeFields(ending), retryInMs, attempt })
  }

  /** A connection ended: by the server, the network, or us (a bad frame, a handshake timeout). */
  function end(connection: Attempt, closeCode: number, reason: string): void {
    if (current !== connection) return
    if (connection.readyAt !== undefined && Date.now() - connection.readyAt >= backoff.resetAfterMs) {
      attempt = 0
    }
    release(connection, closeCode >= 3000 && closeCode <= 4999 ? closeCode : 1000, reason)
    scheduleRetry(classifyClose(closeCode, reason))
  }

  function open(): void {
    if (isDestroyed || !isWanted || current !== undefined || isOpening) return
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
        socket = new options.WebSocket(options.url(token))
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
    const connection: Attempt = { socket, isOpen: false, readyAt: undefined, timer: undefined }
    current = connection
    connection.timer = setTimeout(() => {
      connection.timer = undefined
      end(connection, CloseCode.Abnormal, `not synced within ${connectTimeoutMs} ms`)
    }, connectTimeoutMs)
    socket.addEventListener('open', () => {
      if (current !== connection) return
      connection.isOpen = true
      setStatus({ status: 'connected' })
      options.onOpen()
    })
    socket.addEventListener('message', (event) => {
      if (current !== connection) return
      const frame = frameBytes(event.data)
      if (frame === undefined) end(connection, CloseCode.TextFrame, 'the server sent a text frame')
      else options.onFrame(frame)
    })
    socket.addEventListener('close', (event) => {
      end(connection, event.code, event.reason)
    })
    socket.addEventListener('error', () => {
      // A close event always follows; it carries what we need.
    })
  }

  // Browsers announce when the network is back: retry then instead of waiting out the backoff.
  const onOnline = (): void => {
    if (retryTimer !== undefined) open()
  }
  const networkEvents = globalThis as {
    addEventListener?: (type: 'online', listener: () => void) => void
    removeEventListener?: (type: 'online', listener: () => void) => void
  }
  networkEvents.addEventListener?.('online', onOnline)

  return {
    get status() {
      return status
    },
    get isOpen() {
      return current?.isOpen === true
    },
    get isWanted() {
      return isWanted
    },
    start() {
      if (isDestroyed) return
      isWanted = true
      if (current !== undefined || isOpening) return
      open()
    },
    stop(reason) {
      if (isDestroyed || !isWanted) return
      isWanted = false
      generation++
      isOpening = false
      attempt = 0
      clearTimeout(retryTimer)
      retryTimer = undefined
      const connection = current
      if (connection !== undefined) release(connection, CloseCode.Normal, reason)
      setStatus({ status: 'offline', reason })
    },
    send(frame) {
      const socket = current?.socket
      if (socket === undefined || socket.readyState !== WEBSOCKET_OPEN) return
      socket.send(frame)
    },
    markReady() {
      const connection = current
      if (connection === undefined || connection.readyAt !== undefined) return
      connection.readyAt = Date.now()
      clearTimeout(connection.timer)
      connection.timer = undefined
    },
    fail(closeCode, reason) {
      if (current !== undefined) end(current, closeCode, reason)
    },
    destroy(reason) {
      if (isDestroyed) return
      isDestroyed = true
      isWanted = false
      generation++
      clearTimeout(retryTimer)
      retryTimer = undefined
      networkEvents.removeEventListener?.('online', onOnline)
      const connection = current
      if (connection !== undefined) release(connection, CloseCode.Normal, reason)
      if (status !== 'offline') setStatus({ status: 'offline', reason: 'destroyed' })
    },
  }
}

function closeFields(ending: Ending): { closeCode?: number; errorCode?: ErrorCode } {
  return {
    ...(ending.closeCode === undefined ? {} : { closeCode: ending.closeCode }),
    ...(ending.errorCode === undefined ? {} : { errorCode: ending.errorCode }),
  }
}
