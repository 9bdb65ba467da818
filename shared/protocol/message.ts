// The y-websocket wire protocol as pure functions over lib0 encoders: the protocol-neutral Message
// union sessions work on, encoders for every frame the server or a client sends, and one strict
// decoder for every frame a peer receives. No I/O here; PROTOCOL.md beside this file is the spec.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../errors.js'

/**
 * The version of the protocol this file and PROTOCOL.md describe. Not sent on the wire (the
 * y-websocket protocol has no version field); it names a set of behaviours for docs and changelogs.
 */
export const PROTOCOL_VERSION = 2

/** The leading varUint of every message. */
export const MessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3,
  /** Our opt-in acknowledgement extension (the framing y-sweet's clients use). */
  SyncStatus: 102,
} as const

/** The second varUint of a sync message (y-protocols). */
export const SyncMessageType = {
  Step1: 0,
  Step2: 1,
  Update: 2,
} as const

/** The sub-type of an auth message (y-protocols/auth): the only one defined is "permission denied". */
export const AuthMessageType = {
  PermissionDenied: 0,
} as const

/** What a message says, whatever wire protocol carried it. */
export type MessageBody =
  | { readonly type: 'sync-step1'; readonly stateVector: Uint8Array }
  | { readonly type: 'sync-step2'; readonly update: Uint8Array }
  | { readonly type: 'sync-update'; readonly update: Uint8Array }
  | { readonly type: 'awareness'; readonly update: Uint8Array }
  | { readonly type: 'query-awareness' }
  | { readonly type: 'auth'; readonly authType: number; readonly reason: string }
  | { readonly type: 'sync-status'; readonly payload: Uint8Array }
  // The types below exist in the Hocuspocus protocol only (hocuspocus-codec.ts); the classic codec
  // cannot carry them (WireCodec.carries).
  /** A client's token for one document; `clientVersion` is the provider's version (4.x sends it). */
  | { readonly type: 'auth-token'; readonly token: string; readonly clientVersion?: string | undefined }
  /** The server accepted a document's token: the scope the peer has on it. */
  | { readonly type: 'authenticated'; readonly scope: AuthScope }
  /** An application message with no history: relayed to the document's other peers, never stored. */
  | { readonly type: 'stateless'; readonly payload: string }
  /** Closes one document of a socket (the socket and its other documents stay open). */
  | { readonly type: 'close'; readonly reason: string }

/** The scope an `authenticated` message grants (Hocuspocus' words). */
export const AuthScope = {
  ReadWrite: 'read-write',
  ReadOnly: 'readonly',
} as const

export type AuthScope = (typeof AuthScope)[keyof typeof AuthScope]

/** Where a decoded message came from, kept so that relaying it costs no re-encoding (wire-codec.ts). */
export interface MessageOrigin {
  /**
   * The classic (y-websocket) frame this message was decoded from, or that encodes it: the classic
   * codec sends it as is. Set by the codec that decoded the message; never by a session.
   */
  readonly classicFrame?: Uint8Array | undefined
  /** The session a frame named, for wire protocols that name one in every frame (not the classic one). */
  readonly sessionId?: string | undefined
}

/**
 * A protocol-neutral message: what sessions handle, send and relay. Byte fields are views into the
 * frame: copy them if the frame is reused.
 */
export type Message = MessageBody & MessageOrigin

/** The largest varUint we accept: lib0 decodes up to 2^53 - 1. */
function readVarUint(decoder: decoding.Decoder): number {
  return decoding.readVarUint(decoder)
}

/** Reads a length-prefixed byte array, checking the length against what is left before slicing. */
function readVarBytes(decoder: decoding.Decoder): Uint8Array {
  const length = readVarUint(decoder)
  const left = decoder.arr.length - decoder.pos
  if (length > left) {
    throw new ColloquyError('malformed-message', `length ${length} exceeds the ${left} bytes left`)
  }
  return decoding.readUint8Array(decoder, length)
}

function expectEnd(decoder: decoding.Decoder): void {
  if (decoding.hasContent(decoder)) {
    throw new ColloquyError('malformed-message', `${decoder.arr.length - decoder.pos} trailing bytes`)
  }
}

/**
 * Decodes one binary frame into a {@link Message}.
 *
 * @remarks
 * Strict: a truncated frame, a length that runs past the end, a varUint over 2^53, trailing bytes
 * or an unknown type throw a {@link ColloquyError} (`malformed-message` or `unknown-message-type`);
 * nothing else is ever thrown. Peers ignore `unknown-message-type` (the protocol grows by new
 * types) and close on `malformed-message`. The Yjs payloads are not validated here: see
 * `validateUpdate`.
 */
export function decodeMessage(frame: Uint8Array): Message {
  return decodeFrame(frame, undefined)
}

/**
 * Decodes one classic frame like {@link decodeMessage}, and keeps the frame in the message's
 * `classicFrame` so the classic codec can send the message on as the bytes it came in as.
 */
export function decodeClassicFrame(frame: Uint8Array): Message {
  return decodeFrame(frame, frame)
}

function decodeFrame(frame: Uint8Array, classicFrame: Uint8Array | undefined): Message {
  const decoder = decoding.createDecoder(frame)
  try {
    const type = readVarUint(decoder)
    switch (type) {
      case MessageType.Sync: {
        const syncType = readVarUint(decoder)
        const payload = readVarBytes(decoder)
        expectEnd(decoder)
        switch (syncType) {
          case SyncMessageType.Step1:
            return { type: 'sync-step1', stateVector: payload, classicFrame }
          case SyncMessageType.Step2:
            return { type: 'sync-step2', update: payload, classicFrame }
          case SyncMessageType.Update:
            return { type: 'sync-update', update: payload, classicFrame }
          default:
            throw new ColloquyError('unknown-message-type', `unknown sync message type ${syncType}`)
        }
      }
      case MessageType.Awareness: {
        const update = readVarBytes(decoder)
        expectEnd(decoder)
        return { type: 'awareness', update, classicFrame }
      }
      case MessageType.QueryAwareness:
        expectEnd(decoder)
        return { type: 'query-awareness', classicFrame }
      case MessageType.Auth: {
        const authType = readVarUint(decoder)
        const reason = decoding.readVarString(decoder)
        expectEnd(decoder)
        return { type: 'auth', authType, reason, classicFrame }
      }
      case MessageType.SyncStatus: {
        const payload = readVarBytes(decoder)
        expectEnd(decoder)
        return { type: 'sync-status', payload, classicFrame }
      }
      default:
        throw new ColloquyError('unknown-message-type', `unknown message type ${type}`)
    }
  } catch (error) {
    if (error instanceof ColloquyError) throw error
    // lib0 throws plain Errors ("Unexpected end of array", "Integer out of Range") or a RangeError
    // from a bad UTF-8 string: all of them mean the frame is malformed.
    throw new ColloquyError('malformed-message', error instanceof Error ? error.message : String(error), {
      cause: error,
    })
  }
}

function finish(write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder()
  write(encoder)
  return encoding.toUint8Array(encoder)
}

/** Sync step 1: "here is my state vector, send me what I miss". */
export function encodeSyncStep1(stateVector: Uint8Array): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.Sync)
    encoding.writeVarUint(e, SyncMessageType.Step1)
    encoding.writeVarUint8Array(e, stateVector)
  })
}

/** Sync step 2: the answer to a step 1, an update holding what the other side misses. */
export function encodeSyncStep2(update: Uint8Array): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.Sync)
    encoding.writeVarUint(e, SyncMessageType.Step2)
    encoding.writeVarUint8Array(e, update)
  })
}

/** A sync update: one incremental Yjs update. */
export function encodeSyncUpdate(update: Uint8Array): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.Sync)
    encoding.writeVarUint(e, SyncMessageType.Update)
    encoding.writeVarUint8Array(e, update)
  })
}

/** An awareness message carrying a y-protocols awareness update. */
export function encodeAwareness(update: Uint8Array): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.Awareness)
    encoding.writeVarUint8Array(e, update)
  })
}

/** A query-awareness message: "send me every awareness state you know". */
export function encodeQueryAwareness(): Uint8Array {
  return finish((e) => encoding.writeVarUint(e, MessageType.QueryAwareness))
}

/** An auth message: its type (see {@link AuthMessageType}) and a reason (y-protocols/auth). */
export function encodeAuth(authType: number, reason: string): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.Auth)
    encoding.writeVarUint(e, authType)
    encoding.writeVarString(e, reason)
  })
}

/** An auth message of type permission-denied with a reason (y-protocols/auth). */
export function encodePermissionDenied(reason: string): Uint8Array {
  return encodeAuth(AuthMessageType.PermissionDenied, reason)
}

/** A sync-status message around any payload (the server echoes a peer's payload as it is). */
export function encodeSyncStatusPayload(payload: Uint8Array): Uint8Array {
  return finish((e) => {
    encoding.writeVarUint(e, MessageType.SyncStatus)
    encoding.writeVarUint8Array(e, payload)
  })
}

/** A sync-status (acknowledgement) message: type 102, then a byte array holding varUint(counter). */
export function encodeSyncStatus(counter: number): Uint8Array {
  return encodeSyncStatusPayload(finish((e) => encoding.writeVarUint(e, counter)))
}

/**
 * The bytes a message holds on to: its frame when it keeps one, else its payload. Bounds what a
 * connection may queue while its session loads.
 */
export function messageByteLength(message: Message): number {
  if (message.classicFrame !== undefined) return message.classicFrame.byteLength
  switch (message.type) {
    case 'sync-step1':
      return message.stateVector.byteLength
    case 'sync-step2':
    case 'sync-update':
    case 'awareness':
      return message.update.byteLength
    case 'query-awareness':
      return 1
    case 'auth':
      return message.reason.length
    case 'sync-status':
      return message.payload.byteLength
    case 'auth-token':
      return message.token.length
    case 'authenticated':
      return message.scope.length
    case 'stateless':
      return message.payload.length
    case 'close':
      return message.reason.length + 1
  }
}

/** Reads the counter of a sync-status payload, or undefined if the payload is not one varUint. */
export function decodeSyncStatusCounter(payload: Uint8Array): number | undefined {
  try {
    const decoder = decoding.createDecoder(payload)
    const counter = decoding.readVarUint(decoder)
    return decoding.hasContent(decoder) ? undefined : counter
  } catch {
    // A payload that is not a varUint is still echoed as-is by the server; it just has no counter.
    return undefined
  }
}
