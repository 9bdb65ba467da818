// Test codecs for the wire-protocol seam: a codec that counts its encodes, and a second protocol
// shaped like Hocuspocus' (the session's name before every message) to run beside the classic one.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../../../shared/errors.js'
import { decodeClassicFrame } from '../../../shared/protocol/message.js'
import { classicCodec, type WireCodec } from '../../../shared/protocol/wire-codec.js'

/** A codec that counts how often it encodes. */
export interface CountingCodec extends WireCodec {
  readonly encodes: number
}

/** Wraps `base`, counting its encodes. */
export function countEncodes(base: WireCodec): CountingCodec {
  let encodes = 0
  return {
    protocol: base.protocol,
    carries: (type) => base.carries(type),
    decode: (frame) => base.decode(frame),
    encode(message, sessionId) {
      encodes++
      return base.encode(message, sessionId)
    },
    get encodes() {
      return encodes
    },
  }
}

/** A named-protocol frame: varString(session id) then the classic frame. */
export function frameNamed(sessionId: string, classicFrame: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, sessionId)
  encoding.writeUint8Array(encoder, classicFrame)
  return encoding.toUint8Array(encoder)
}

/**
 * A second wire protocol: varString(session id) then a classic frame. The classic part of a decoded
 * frame is kept as the message's classicFrame, so a classic peer is relayed those bytes as is.
 */
export const namedCodec: WireCodec = {
  protocol: 'named',
  carries: (type) => classicCodec.carries(type),
  decode(frame) {
    const decoder = decoding.createDecoder(frame)
    let sessionId: string
    try {
      sessionId = decoding.readVarString(decoder)
    } catch (error) {
      throw new ColloquyError('malformed-message', 'no session name', { cause: error })
    }
    return { ...decodeClassicFrame(frame.subarray(decoder.pos)), sessionId }
  },
  encode: (message, sessionId) => frameNamed(sessionId, classicCodec.encode(message, sessionId)),
}
