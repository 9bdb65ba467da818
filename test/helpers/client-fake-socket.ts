// An in-memory WebSocket for sync-client unit tests: no network, the test plays the server by
// opening the socket, feeding it frames and closing it, and reads what the client sent.

import type { CloseEventLike, MessageEventLike, WebSocketLike } from '../../client/websocket.js'
import { decodeMessage, type Message } from '../../shared/protocol/message.js'

type Listener = (event: never) => void

/** One fake socket. `send` records frames; the `server*` methods drive it. */
export class FakeSocket implements WebSocketLike {
  readonly url: string
  binaryType = 'blob'
  readyState = 0
  /** Every frame the client sent, copied. */
  readonly sent: Uint8Array[] = []
  /** The code and reason of the client's own close() call, if it made one. */
  closedByClient: { code: number | undefined; reason: string | undefined } | undefined
  private readonly listeners = new Map<string, Listener[]>()

  constructor(url: string) {
    this.url = url
  }

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open')
    this.sent.push(data.slice())
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return
    this.closedByClient = { code, reason }
    this.readyState = 3
    // Like a real socket: the close event comes later, never inside close().
    queueMicrotask(() => this.emit('close', { code: code ?? 1005, reason: reason ?? '' }))
  }

  addEventListener(type: string, listener: Listener): void {
    const list = this.listeners.get(type) ?? []
    list.push(listener)
    this.listeners.set(type, list)
  }

  /** The server accepts the connection. */
  serverOpen(): void {
    this.readyState = 1
    this.emit('open', undefined)
  }

  /** The server sends one binary frame (delivered as an ArrayBuffer, like binaryType 'arraybuffer'). */
  serverSend(frame: Uint8Array): void {
    const data = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength)
    this.emit('message', { data } satisfies MessageEventLike)
  }

  /** The server (or the network) closes the connection. */
  serverClose(code: number, reason = ''): void {
    if (this.readyState === 3) return
    this.readyState = 3
    this.emit('close', { code, reason } satisfies CloseEventLike)
  }

  /** The client's frames, decoded. */
  messages(): Message[] {
    return this.sent.map((frame) => decodeMessage(frame))
  }

  /** The types of the client's frames, e.g. `['sync-step1', 'awareness']`. */
  types(): string[] {
    return this.messages().map((message) => message.type)
  }

  private emit(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) (listener as (event: unknown) => void)(event)
  }
}

/** A WebSocket class producing {@link FakeSocket}s, and every socket it produced. */
export function createFakeSockets(): {
  readonly WebSocket: new (url: string) => FakeSocket
  readonly sockets: FakeSocket[]
  last(): FakeSocket
} {
  const sockets: FakeSocket[] = []
  class RecordedFakeSocket extends FakeSocket {
    constructor(url: string) {
      super(url)
      sockets.push(this)
    }
  }
  return {
    WebSocket: RecordedFakeSocket,
    sockets,
    last() {
      const socket = sockets.at(-1)
      if (socket === undefined) throw new Error('no socket opened yet')
      return socket
    },
  }
}
