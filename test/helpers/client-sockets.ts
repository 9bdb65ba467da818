// A `ws` WebSocket class for sync-client tests that records every socket it opens: its URL and the
// bytes it sent and received, and keeps the raw socket so a test can send a frame of its own.

import WebSocket from 'ws'
import type { WebSocketLikeConstructor } from '../../client/websocket.js'

/** One socket the recorder opened. */
export interface SocketRecord {
  readonly url: string
  readonly socket: WebSocket
  bytesSent: number
  bytesReceived: number
  framesSent: number
  framesReceived: number
}

/** A WebSocket class to inject into a sync client, plus what it saw. */
export interface SocketRecorder {
  readonly WebSocket: WebSocketLikeConstructor
  readonly sockets: readonly SocketRecord[]
  /** The newest socket; throws if none was opened yet. */
  last(): SocketRecord
}

function byteLength(data: unknown): number {
  if (data instanceof ArrayBuffer) return data.byteLength
  if (ArrayBuffer.isView(data)) return data.byteLength
  if (Array.isArray(data)) return data.reduce((sum: number, part: Buffer) => sum + part.byteLength, 0)
  return 0
}

/** Creates a recorder whose `WebSocket` class counts bytes in both directions, per socket. */
export function createSocketRecorder(): SocketRecorder {
  const sockets: SocketRecord[] = []

  class RecordingWebSocket extends WebSocket {
    private readonly record: SocketRecord

    constructor(url: string) {
      super(url)
      const record: SocketRecord = {
        url,
        socket: this,
        bytesSent: 0,
        bytesReceived: 0,
        framesSent: 0,
        framesReceived: 0,
      }
      this.record = record
      sockets.push(record)
      this.on('message', (data: unknown) => {
        record.bytesReceived += byteLength(data)
        record.framesReceived++
      })
    }

    override send(data: Uint8Array): void {
      this.record.bytesSent += data.byteLength
      this.record.framesSent++
      super.send(data)
    }
  }

  return {
    WebSocket: RecordingWebSocket,
    sockets,
    last() {
      const record = sockets.at(-1)
      if (record === undefined) throw new Error('no socket opened yet')
      return record
    },
  }
}
