// A ProtocolPeer over a real WebSocket (the `ws` package), counting bytes in both directions.

import WebSocket from 'ws'
import { ProtocolPeer, type ProtocolPeerOptions } from './protocol-peer.js'
import { until, withTimeout } from './wait.js'

export interface WsPeer {
  readonly peer: ProtocolPeer
  readonly socket: WebSocket
  readonly bytesIn: () => number
  /** Resolves with the close code once the socket closed. */
  readonly closed: Promise<number>
  /** Resolves once the server's sync step 2 arrived (the handshake is done); rejects after `ms`. */
  whenSynced(ms?: number): Promise<void>
  close(): void
}

/** Connects a protocol peer to `url/sessionId` and starts the handshake once open. */
export async function connectWsPeer(
  url: string,
  sessionId: string,
  options: ProtocolPeerOptions = {},
): Promise<WsPeer> {
  const socket = new WebSocket(`${url}/${sessionId}`)
  socket.binaryType = 'nodebuffer'
  let bytesIn = 0
  const peer = new ProtocolPeer((frame) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(frame)
  }, options)
  socket.on('message', (data: Buffer) => {
    bytesIn += data.length
    peer.handle(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  })
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    }),
    10_000,
    'websocket open',
  )
  peer.start()
  return {
    peer,
    socket,
    bytesIn: () => bytesIn,
    closed,
    whenSynced: (ms = 10_000) =>
      until(() => peer.messages.some((m) => m.type === 'sync-step2'), ms, `${sessionId} synced`),
    close: () => socket.close(),
  }
}
