// One peer in one session: what the session tracks about it (queued frames while loading, the
// awareness client ids it controls). Owns no socket: the transport's Peer does.

import type { Peer } from './peer.js'

/** A peer attached to a session. Created by `Session.attach`, ended by `Session.detach`. */
export class Connection {
  readonly peer: Peer
  /** Awareness client ids this connection has announced; removed for everyone when it closes. */
  readonly awarenessClientIds = new Set<number>()
  /** Frames received before the session finished loading, in arrival order. */
  loadingQueue: Uint8Array[] = []
  loadingQueueBytes = 0
  /** True once the session has sent its first sync step 1 to this peer. */
  isOpen = false
  isClosed = false

  constructor(peer: Peer) {
    this.peer = peer
  }

  /** Sends a frame unless the connection is closed. */
  send(frame: Uint8Array): void {
    if (!this.isClosed) this.peer.send(frame)
  }

  /** Closes the connection once; later calls do nothing. */
  close(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    this.peer.close(code, reason)
  }
}
