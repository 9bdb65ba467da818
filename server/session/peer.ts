// What the session layer needs from a transport: a way to reach one peer and one session's topic.
// Implemented over uWebSockets.js (transport/uws-transport.ts) and in memory (transport/memory-transport.ts).

/** One connected peer, as the session sees it. */
export interface Peer {
  /** A process-unique id, for logs. */
  readonly id: number
  /** A short description of where the peer is (remote address), for logs. */
  readonly remote: string
  /** Sends one binary frame. Does nothing once the peer is closed. */
  send(frame: Uint8Array): void
  /** Closes the connection with a WebSocket close code and reason. Idempotent. */
  close(code: number, reason: string): void
}

/** The pub/sub topic of one session: every subscribed peer receives what is published. */
export interface Topic {
  subscribe(peer: Peer): void
  unsubscribe(peer: Peer): void
  /** Sends `frame` to every subscriber except `except` (the sender: updates are never echoed). */
  publish(frame: Uint8Array, except?: Peer): void
}

/** Creates the topic of a session. */
export type TopicFactory = (sessionId: string) => Topic
