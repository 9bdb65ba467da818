// The Hocuspocus wire protocol (the one @hocuspocus/provider 3.x and 4.x speak) as a WireCodec:
// every frame is varString(document name), varUint(type), then the type's body. One socket carries
// many documents; the name routes each frame. PROTOCOL.md ("The Hocuspocus protocol") is the spec.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../errors.js'
import { AuthMessageType, AuthScope, type Message, SyncMessageType } from './message.js'
import { type WireCodec, WireProtocol } from './wire-codec.js'

/** The message types of the Hocuspocus protocol (after the document name). */
export const HocuspocusMessageType = {
  Sync: 0,
  Awareness: 1,
  Auth: 2,
  QueryAwareness: 3,
  /** Hocuspocus' server-to-server sync without a step 1 answer; not accepted from peers here. */
  SyncReply: 4,
  Stateless: 5,
  /** Hocuspocus' "broadcast to every connection"; not accepted here (stateless is relayed already). */
  BroadcastStateless: 6,
  Close: 7,
  /** Server to client: varUint 1 once an update is applied (here: durable), 0 if it was refused. */
  SyncStatus: 8,
} as const

/** The sub-types of a Hocuspocus auth message (not y-protocols' numbering: see message.ts). */
export const HocuspocusAuthType = {
  Token: 0,
  PermissionDenied: 1,
  Authenticated: 2,
} as const

/** The sync-status payloads a server sends: the varUint after type 8. */
export const HocuspocusSyncStatus = {
  /** The update is applied and durable: the provider decrements its unsynced-changes count. */
  Saved: Uint8Array.of(1),
  /** The update was refused (read-only peer, quota): the count stays. */
  Refused: Uint8Array.of(0),
} as const

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function readBytes(decoder: decoding.Decoder): Uint8Array {
  const length = decoding.readVarUint(decoder)
  const left = decoder.arr.length - decoder.pos
  if (length > left) {
    throw new ColloquyError('malformed-message', `length ${length} exceeds the ${left} bytes left`)
  }
  return decoding.readUint8Array(decoder, length)
}

function readString(decoder: decoding.Decoder): string {
  // TextDecoder with fatal: invalid UTF-8 throws a TypeError, turned into malformed-message below.
  return utf8.decode(readBytes(decoder))
}

function expectEnd(decoder: decoding.Decoder): void {
  if (decoding.hasContent(decoder)) {
    throw new ColloquyError('malformed-message', `${decoder.arr.length - decoder.pos} trailing bytes`)
  }
}

function asMalformed(error: unknown): ColloquyError {
  if (error instanceof ColloquyError) return error
  // lib0 throws plain Errors (end of array, integer out of range); TextDecoder a TypeError.
  return new ColloquyError('malformed-message', error instanceof Error ? error.message : String(error), {
    cause: error,
  })
}

/** Where a frame's body starts, after its document name. */
export interface DocumentFrame {
  readonly documentName: string
  /** The offset of the message type in the frame. */
  readonly bodyOffset: number
}

/**
 * Reads the document name that leads every Hocuspocus frame.
 *
 * @remarks The step a multiplexer takes first: a frame with no readable name (truncated, a length
 * past the end, invalid UTF-8) belongs to no document, so it throws `malformed-message` and the whole
 * socket is closed; anything wrong after the name concerns that document only
 * ({@link decodeHocuspocusBody}).
 */
export function readDocumentName(frame: Uint8Array): DocumentFrame {
  const decoder = decoding.createDecoder(frame)
  try {
    const documentName = readString(decoder)
    return { documentName, bodyOffset: decoder.pos }
  } catch (error) {
    throw asMalformed(error)
  }
}

/**
 * Decodes the body of a Hocuspocus frame (from `bodyOffset`, see {@link readDocumentName}).
 *
 * @remarks Strict like `decodeMessage`: throws `malformed-message` (truncated, trailing bytes, bad
 * UTF-8, an unknown authentication scope) or `unknown-message-type`, nothing else. The message's
 * `sessionId` is the document name.
 */
export function decodeHocuspocusBody(frame: Uint8Array, documentName: string, bodyOffset: number): Message {
  const decoder = decoding.createDecoder(frame)
  decoder.pos = bodyOffset
  // Sync, awareness and query-awareness bodies are byte for byte the classic (y-websocket) frames:
  // kept as `classicFrame`, they are relayed to classic peers as they came, never re-encoded.
  const classicFrame = frame.subarray(bodyOffset)
  try {
    const type = decoding.readVarUint(decoder)
    switch (type) {
      case HocuspocusMessageType.Sync: {
        const syncType = decoding.readVarUint(decoder)
        const payload = readBytes(decoder)
        expectEnd(decoder)
        switch (syncType) {
          case SyncMessageType.Step1:
            return { type: 'sync-step1', stateVector: payload, classicFrame, sessionId: documentName }
          case SyncMessageType.Step2:
            return { type: 'sync-step2', update: payload, classicFrame, sessionId: documentName }
          case SyncMessageType.Update:
            return { type: 'sync-update', update: payload, classicFrame, sessionId: documentName }
          default:
            throw new ColloquyError('unknown-message-type', `unknown sync message type ${syncType}`)
        }
      }
      case HocuspocusMessageType.Awareness: {
        const update = readBytes(decoder)
        expectEnd(decoder)
        return { type: 'awareness', update, classicFrame, sessionId: documentName }
      }
      case HocuspocusMessageType.QueryAwareness:
        expectEnd(decoder)
        return { type: 'query-awareness', classicFrame, sessionId: documentName }
      case HocuspocusMessageType.Auth:
        return decodeAuth(decoder, documentName)
      case HocuspocusMessageType.Stateless: {
        const payload = readString(decoder)
        expectEnd(decoder)
        return { type: 'stateless', payload, sessionId: documentName }
      }
      case HocuspocusMessageType.Close: {
        // A provider's close has no reason; a server's carries one.
        const reason = decoding.hasContent(decoder) ? readString(decoder) : ''
        expectEnd(decoder)
        return { type: 'close', reason, sessionId: documentName }
      }
      case HocuspocusMessageType.SyncStatus: {
        const start = decoder.pos
        decoding.readVarUint(decoder)
        expectEnd(decoder)
        return { type: 'sync-status', payload: frame.subarray(start, decoder.pos), sessionId: documentName }
      }
      default:
        throw new ColloquyError('unknown-message-type', `unknown message type ${type}`)
    }
  } catch (error) {
    throw asMalformed(error)
  }
}

function decodeAuth(decoder: decoding.Decoder, documentName: string): Message {
  const authType = decoding.readVarUint(decoder)
  switch (authType) {
    case HocuspocusAuthType.Token: {
      const token = readString(decoder)
      // Provider 4.x appends its version; 3.x does not.
      const clientVersion = decoding.hasContent(decoder) ? readString(decoder) : undefined
      expectEnd(decoder)
      return clientVersion === undefined
        ? { type: 'auth-token', token, sessionId: documentName }
        : { type: 'auth-token', token, clientVersion, sessionId: documentName }
    }
    case HocuspocusAuthType.PermissionDenied: {
      const reason = readString(decoder)
      expectEnd(decoder)
      return { type: 'auth', authType: AuthMessageType.PermissionDenied, reason, sessionId: documentName }
    }
    case HocuspocusAuthType.Authenticated: {
      const scope = readString(decoder)
      expectEnd(decoder)
      if (scope !== AuthScope.ReadWrite && scope !== AuthScope.ReadOnly) {
        throw new ColloquyError('malformed-message', `unknown authentication scope ${JSON.stringify(scope)}`)
      }
      return { type: 'authenticated', scope, sessionId: documentName }
    }
    default:
      throw new ColloquyError('unknown-message-type', `unknown auth message type ${authType}`)
  }
}

/** Encodes one message as a Hocuspocus frame for `documentName`. */
export function encodeHocuspocus(message: Message, documentName: string): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, documentName)
  // Only these types share the classic framing; a classic auth or sync-status frame does not.
  if (
    message.classicFrame !== undefined &&
    (message.type === 'sync-update' ||
      message.type === 'awareness' ||
      message.type === 'sync-step1' ||
      message.type === 'sync-step2' ||
      message.type === 'query-awareness')
  ) {
    encoding.writeUint8Array(e, message.classicFrame)
    return encoding.toUint8Array(e)
  }
  switch (message.type) {
    case 'sync-step1':
      encoding.writeVarUint(e, HocuspocusMessageType.Sync)
      encoding.writeVarUint(e, SyncMessageType.Step1)
      encoding.writeVarUint8Array(e, message.stateVector)
      break
    case 'sync-step2':
      encoding.writeVarUint(e, HocuspocusMessageType.Sync)
      encoding.writeVarUint(e, SyncMessageType.Step2)
      encoding.writeVarUint8Array(e, message.update)
      break
    case 'sync-update':
      encoding.writeVarUint(e, HocuspocusMessageType.Sync)
      encoding.writeVarUint(e, SyncMessageType.Update)
      encoding.writeVarUint8Array(e, message.update)
      break
    case 'awareness':
      encoding.writeVarUint(e, HocuspocusMessageType.Awareness)
      encoding.writeVarUint8Array(e, message.update)
      break
    case 'query-awareness':
      encoding.writeVarUint(e, HocuspocusMessageType.QueryAwareness)
      break
    case 'auth':
      // y-protocols defines one auth message, permission denied; so does the neutral union.
      encoding.writeVarUint(e, HocuspocusMessageType.Auth)
      encoding.writeVarUint(e, HocuspocusAuthType.PermissionDenied)
      encoding.writeVarString(e, message.reason)
      break
    case 'auth-token':
      encoding.writeVarUint(e, HocuspocusMessageType.Auth)
      encoding.writeVarUint(e, HocuspocusAuthType.Token)
      encoding.writeVarString(e, message.token)
      if (message.clientVersion !== undefined) encoding.writeVarString(e, message.clientVersion)
      break
    case 'authenticated':
      encoding.writeVarUint(e, HocuspocusMessageType.Auth)
      encoding.writeVarUint(e, HocuspocusAuthType.Authenticated)
      encoding.writeVarString(e, message.scope)
      break
    case 'stateless':
      encoding.writeVarUint(e, HocuspocusMessageType.Stateless)
      encoding.writeVarString(e, message.payload)
      break
    case 'close':
      encoding.writeVarUint(e, HocuspocusMessageType.Close)
      encoding.writeVarString(e, message.reason)
      break
    case 'sync-status':
      // The payload is the varUint after the type, kept as decoded (see HocuspocusSyncStatus).
      encoding.writeVarUint(e, HocuspocusMessageType.SyncStatus)
      encoding.writeUint8Array(e, message.payload)
      break
  }
  return encoding.toUint8Array(e)
}

/**
 * The Hocuspocus protocol as a {@link WireCodec}: `decode` returns the document name as the message's
 * `sessionId`; `encode` writes `sessionId` before the message. It carries every message type.
 *
 * @remarks Sync, awareness and query-awareness messages keep their body as `classicFrame` (it is
 * the classic frame), so the classic codec relays them without re-encoding, and this codec writes a
 * classic peer's frame after the name as is. A sync-status here is server to client: the payload is varUint 1 (saved) or 0 (refused),
 * see {@link HocuspocusSyncStatus}. The auth message's numbering differs from y-protocols' (token 0,
 * permission-denied 1, authenticated 2); the neutral `auth` message is always permission-denied.
 */
export const hocuspocusCodec: WireCodec = {
  protocol: WireProtocol.Hocuspocus,
  carries: () => true,
  decode(frame) {
    const { documentName, bodyOffset } = readDocumentName(frame)
    return decodeHocuspocusBody(frame, documentName, bodyOffset)
  },
  encode: (message, sessionId) => encodeHocuspocus(message, sessionId),
}
