// The smallest WebSocket surface the sync client needs, met by the browser's WebSocket and by the
// `ws` package alike. The client never imports a WebSocket implementation: it is injected.

/** The part of a message event the client reads. */
export interface MessageEventLike {
  readonly data: unknown
}

/** The part of a close event the client reads. */
export interface CloseEventLike {
  readonly code: number
  readonly reason: string
}

/**
 * A WebSocket as the sync client uses it: binary frames, four events, `send` and `close`.
 *
 * @remarks
 * Listeners are attached with `addEventListener` (declared as methods, so both the DOM's and `ws`'s
 * typings fit) and never removed: a socket the client has let go of keeps an error listener, because
 * `ws` throws on an `error` event nobody listens to.
 */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
  addEventListener(type: 'open', listener: () => void): void
  addEventListener(type: 'message', listener: (event: MessageEventLike) => void): void
  addEventListener(type: 'close', listener: (event: CloseEventLike) => void): void
  addEventListener(type: 'error', listener: (event: unknown) => void): void
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from `ws` in Node. */
export type WebSocketLikeConstructor = new (url: string) => WebSocketLike

/** `readyState` of an open socket (the same in every implementation). */
export const WEBSOCKET_OPEN = 1

/** Copies nothing: turns a message's data into bytes, or undefined for a text frame. */
export function frameBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  // `ws` with binaryType 'nodebuffer' hands out Buffers (Uint8Array views).
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return undefined
}
