// An in-memory transport: peers and topics without sockets, for unit and property tests and for
// embedding a server in the same process as its clients.

import type { Peer, Topic, TopicFactory } from '../session/peer.js'

let nextMemoryPeerId = 1

/** A peer whose frames go to a callback instead of a socket. */
export class MemoryPeer implements Peer {
  readonly id = nextMemoryPeerId++
  readonly remote: string
  isClosed = false
  closeCode: number | undefined
  closeReason: string | undefined
  private readonly deliver: (frame: Uint8Array) => void
  private readonly onClose: ((code: number, reason: string) => void) | undefined

  constructor(
    deliver: (frame: Uint8Array) => void,
    options: { remote?: string; onClose?: (code: number, reason: string) => void } = {},
  ) {
    this.deliver = deliver
    this.remote = options.remote ?? 'memory'
    this.onClose = options.onClose
  }

  send(frame: Uint8Array): void {
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

/** Topics kept as sets of peers, one per session id. */
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
      publish: (frame, except) => {
        for (const peer of [...subscribers()]) if (peer !== except) peer.send(frame)
      },
    }
    return topic
  }
}
