// An in-memory transport: peers and topics without sockets, for unit and property tests and for
// embedding a server in the same process as its clients. Frames are encoded as a socket would
// carry them (one encoding per protocol per publish), then handed to a callback.

import type { Message } from '../../shared/protocol/message.js'
import { classicCodec, type WireCodec } from '../../shared/protocol/wire-codec.js'
import type { Peer, Topic, TopicFactory } from '../session/peer.js'

let nextMemoryPeerId = 1

/** Options of a {@link MemoryPeer}. */
export interface MemoryPeerOptions {
  readonly remote?: string
  /** The wire protocol (default: the classic y-websocket one). */
  readonly codec?: WireCodec
  /** The session the peer is attached to, written into frames by protocols that name it. */
  readonly sessionId?: string
  readonly onClose?: (code: number, reason: string) => void
}

/** A peer whose frames go to a callback instead of a socket. */
export class MemoryPeer implements Peer {
  readonly id = nextMemoryPeerId++
  readonly remote: string
  readonly codec: WireCodec
  readonly sessionId: string
  isClosed = false
  closeCode: number | undefined
  closeReason: string | undefined
  private readonly deliver: (frame: Uint8Array) => void
  private readonly onClose: ((code: number, reason: string) => void) | undefined

  constructor(deliver: (frame: Uint8Array) => void, options: MemoryPeerOptions = {}) {
    this.deliver = deliver
    this.remote = options.remote ?? 'memory'
    this.codec = options.codec ?? classicCodec
    this.sessionId = options.sessionId ?? ''
    this.onClose = options.onClose
  }

  send(message: Message): void {
    if (!this.isClosed) this.deliver(this.codec.encode(message, this.sessionId))
  }

  /** Sends an already encoded frame (a topic's, encoded once for every peer of this protocol). */
  sendFrame(frame: Uint8Array): void {
    if (!this.isClosed) this.deliver(frame)
  }

  close(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    this.closeCode = code
    this.closeReason = reason
    this.onClose?.(code, reason)
  }
}

/**
 * Topics kept as sets of peers, one per session id. A publish encodes once per codec among the
 * subscribers and delivers those bytes to each; a peer that is no {@link MemoryPeer} is sent the
 * message to encode itself.
 */
export function createMemoryTopics(): TopicFactory {
  const topics = new Map<string, Set<Peer>>()
  return (sessionId) => {
    const subscribers = (): Set<Peer> => {
      let set = topics.get(sessionId)
      if (set === undefined) {
        set = new Set()
        topics.set(sessionId, set)
      }
      return set
    }
    const topic: Topic = {
      subscribe: (peer) => {
        subscribers().add(peer)
      },
      unsubscribe: (peer) => {
        subscribers().delete(peer)
      },
      publish: (message, except) => {
        const frames = new Map<WireCodec, Uint8Array>()
        let size = 0
        for (const peer of [...subscribers()]) {
          if (peer === except || !peer.codec.carries(message.type)) continue
          if (!(peer instanceof MemoryPeer)) {
            peer.send(message)
            continue
          }
          let frame = frames.get(peer.codec)
          if (frame === undefined) {
            frame = peer.codec.encode(message, sessionId)
            frames.set(peer.codec, frame)
            size = Math.max(size, frame.byteLength)
          }
          peer.sendFrame(frame)
        }
        return size
      },
    }
    return topic
  }
}
