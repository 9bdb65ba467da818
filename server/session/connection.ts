// One peer in one session: what the session tracks about it (queued messages while loading, the
// awareness client ids it controls). Owns no socket: the transport's Peer does.

import type { Message } from '../../shared/protocol/message.js'
import type { TurnScope } from '../auth/turn-scope.js'
import type { TokenBucket } from '../limits/token-bucket.js'
import type { Peer } from './peer.js'

/** What a connection may do and how fast: decided at the upgrade, enforced by the session. */
export interface ConnectionPolicy {
  /** False for read-only peers: their updates are refused with a permission-denied message. */
  readonly canWrite: boolean
  /** The peer id from its token (or `anonymous`), for logs. */
  readonly peerId: string
  readonly updates: TokenBucket
  readonly updateBytes: TokenBucket
  readonly awareness: TokenBucket
  /** The tenant and best class of the turns its messages get (automatic turns); none: an anonymous peer's. */
  readonly turnScope?: TurnScope
}

/** A peer attached to a session. Created by `Session.attach`, ended by `Session.detach`. */
export class Connection {
  readonly peer: Peer
  readonly policy: ConnectionPolicy | undefined
  /**
   * Awareness client ids this connection owns (it introduced them); removed for everyone when it
   * closes. Ids it only echoed, or tried to change while another connection owned them, are not here.
   */
  readonly awarenessClientIds = new Set<number>()
  /** Awareness entries dropped because they changed an id another connection owns (for logs). */
  forgedAwarenessEntries = 0
  /** Messages received before the session finished loading, in arrival order (decoded at the edge). */
  loadingQueue: Message[] = []
  loadingQueueBytes = 0
  /** True once the session has sent its first sync step 1 to this peer. */
  isOpen = false
  isClosed = false

  constructor(peer: Peer, policy?: ConnectionPolicy) {
    this.peer = peer
    this.policy = policy
  }

  /** Sends a message (the peer's codec encodes it) unless the connection is closed. */
  send(message: Message): void {
    if (!this.isClosed) this.peer.send(message)
  }

  /** Closes the connection once; later calls do nothing. */
  close(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    this.peer.close(code, reason)
  }
}
