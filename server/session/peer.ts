// What the session layer needs from a transport: a way to reach one peer and one session's topic.
// Both take protocol-neutral messages; the wire protocol (a WireCodec) is the transport's business.
// Implemented over uWebSockets.js (transport/uws-transport.ts) and in memory (transport/memory-transport.ts).

import type { Message } from '../../shared/protocol/message.js'
import type { WireCodec } from '../../shared/protocol/wire-codec.js'

/** One connected peer, as the session sees it. */
export interface Peer {
  /** A process-unique id, for logs. */
  readonly id: number
  /** A short description of where the peer is (remote address), for logs. */
  readonly remote: string
  /** The wire protocol this peer speaks: it decodes the peer's frames and encodes what it is sent. */
  readonly codec: WireCodec
  /** Encodes one message with the peer's codec and sends it. Does nothing once the peer is closed. */
  send(message: Message): void
  /** Closes the connection with a WebSocket close code and reason. Idempotent. */
  close(code: number, reason: string): void
}

/** The pub/sub topic of one session: every subscribed peer receives what is published. */
export interface Topic {
  subscribe(peer: Peer): void
  unsubscribe(peer: Peer): void
  /**
   * Sends `message` to every subscriber except `except` (the sender: updates are never echoed).
   *
   * @remarks The message is encoded once per wire protocol among the subscribers, never once per
   * peer: every subscriber of a protocol gets the same bytes.
   * @returns the size in bytes of the frame sent (the largest, when protocols differ), or 0 when
   * nothing was encoded
   */
  publish(message: Message, except?: Peer): number
}

/** Creates the topic of a session. */
export type TopicFactory = (sessionId: string) => Topic

/** What a connection's edge hands its session: decoded messages, or the error a frame raised. */
export interface MessageHandler {
  /** One decoded message. */
  receive(message: Message): void
  /**
   * A frame its codec refused: `malformed-message` closes the connection (code, log, metric),
   * `unknown-message-type` is ignored and counted.
   */
  refuse(error: unknown): void
}

/**
 * Decodes one frame with `codec` at a transport's edge and hands the result to `handler`.
 *
 * @remarks The codec throws only ColloquyErrors for bad input; those go to `handler.refuse`, so a
 * hostile frame never reaches a session as a message.
 */
export function receiveFrame(codec: WireCodec, frame: Uint8Array, handler: MessageHandler): void {
  let message: Message
  try {
    message = codec.decode(frame)
  } catch (error) {
    handler.refuse(error)
    return
  }
  handler.receive(message)
}
