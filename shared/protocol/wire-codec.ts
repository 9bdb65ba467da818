// The seam between wire protocols and sessions: a codec turns one protocol's frames into the
// protocol-neutral messages of message.ts and back. Sessions see only messages; each transport
// decodes at its edge with its peer's codec. Here: the interface and the classic y-websocket codec.

import { ColloquyError } from '../errors.js'
import {
  decodeClassicFrame,
  encodeAuth,
  encodeAwareness,
  encodeQueryAwareness,
  encodeSyncStatusPayload,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  type Message,
} from './message.js'

/** The wire protocols a server can speak; one codec each. */
export const WireProtocol = {
  /** y-websocket's: one session per socket (named by the URL), one message per frame. */
  Classic: 'classic',
  /** Hocuspocus': many documents per socket, each frame led by its document name (hocuspocus-codec.ts). */
  Hocuspocus: 'hocuspocus',
} as const

export type WireProtocol = (typeof WireProtocol)[keyof typeof WireProtocol]

/**
 * One wire protocol's framing of {@link Message}s.
 *
 * @remarks
 * `decode` is strict, like `decodeMessage`: it throws a {@link ColloquyError} `malformed-message`
 * (the connection is closed) or `unknown-message-type` (the frame is ignored and counted), and
 * nothing else. `encode` never throws for a message it decoded or a session built. A protocol
 * whose frames name their session (Hocuspocus: a document name before every message) returns that
 * name in the decoded message's `sessionId` and writes `sessionId` into every frame it encodes;
 * the classic protocol ignores it (the socket's URL names the session). Encoding is pure: a topic
 * encodes a relayed message once per protocol and hands the same bytes to every subscriber of it.
 */
export interface WireCodec {
  /** A short name, one per protocol (see {@link WireProtocol}): it names uWS topics and logs. */
  readonly protocol: string
  /**
   * True when this protocol has a frame for messages of `type`. A session sends or relays a message
   * only to peers whose codec carries its type (the classic protocol has no stateless, close or
   * authenticated message); `encode` throws an `internal` error for a type it does not carry.
   */
  carries(type: Message['type']): boolean
  decode(frame: Uint8Array): Message
  encode(message: Message, sessionId: string): Uint8Array
}

/** The message types the classic (y-websocket) protocol has frames for. */
const CLASSIC_TYPES: ReadonlySet<Message['type']> = new Set([
  'sync-step1',
  'sync-step2',
  'sync-update',
  'awareness',
  'query-awareness',
  'auth',
  'sync-status',
])

/**
 * The y-websocket protocol (PROTOCOL.md), as a {@link WireCodec}.
 *
 * @remarks
 * Zero re-encode: every decoded message keeps the frame it came in as (`classicFrame`), and
 * `encode` returns that frame as is. So a relayed sync-update or awareness frame, and an echoed
 * sync-status, leave as the very bytes received, whatever the document's size. A session must
 * therefore never change a message's payload and keep its `classicFrame` (it builds a new message
 * instead, as it does for a filtered awareness update).
 */
export const classicCodec: WireCodec = {
  protocol: WireProtocol.Classic,
  carries: (type) => CLASSIC_TYPES.has(type),
  decode: (frame) => decodeClassicFrame(frame),
  encode(message) {
    if (message.classicFrame !== undefined) return message.classicFrame
    switch (message.type) {
      case 'sync-step1':
        return encodeSyncStep1(message.stateVector)
      case 'sync-step2':
        return encodeSyncStep2(message.update)
      case 'sync-update':
        return encodeSyncUpdate(message.update)
      case 'awareness':
        return encodeAwareness(message.update)
      case 'query-awareness':
        return encodeQueryAwareness()
      case 'auth':
        return encodeAuth(message.authType, message.reason)
      case 'sync-status':
        return encodeSyncStatusPayload(message.payload)
      case 'auth-token':
      case 'authenticated':
      case 'stateless':
      case 'close':
        throw new ColloquyError('internal', `the classic protocol has no ${message.type} message`)
    }
  },
}
