// Bare wire codec for the load clients: y-websocket frames (Colloquy, classic y-websocket) and
// Hocuspocus frames (the same messages prefixed by varString(documentName)), and hand-built Yjs
// updates so writers need no Y.Doc. Pure functions over lib0; no sockets here.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

/** How a server frames messages: `plain` = y-websocket, `hocuspocus` = document name first. */
export type Framing = 'plain' | 'hocuspocus'

const SYNC = 0
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2
const HOCUSPOCUS_AUTH = 2
const HOCUSPOCUS_AUTH_TOKEN = 0
/** Colloquy's opt-in ack (PROTOCOL.md). */
export const SYNC_STATUS = 102

function start(framing: Framing, doc: string): encoding.Encoder {
  const encoder = encoding.createEncoder()
  if (framing === 'hocuspocus') encoding.writeVarString(encoder, doc)
  return encoder
}

/** Frames a client sends first: Hocuspocus' auth, then sync step 1 with `stateVector`. */
export function encodeHello(framing: Framing, doc: string, stateVector: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = []
  if (framing === 'hocuspocus') {
    const auth = start(framing, doc)
    encoding.writeVarUint(auth, HOCUSPOCUS_AUTH)
    encoding.writeVarUint(auth, HOCUSPOCUS_AUTH_TOKEN)
    encoding.writeVarString(auth, 'bench')
    frames.push(encoding.toUint8Array(auth))
  }
  const step1 = start(framing, doc)
  encoding.writeVarUint(step1, SYNC)
  encoding.writeVarUint(step1, SYNC_STEP1)
  encoding.writeVarUint8Array(step1, stateVector)
  frames.push(encoding.toUint8Array(step1))
  return frames
}

/** A sync update frame carrying `update`. */
export function encodeUpdate(framing: Framing, doc: string, update: Uint8Array): Uint8Array {
  const encoder = start(framing, doc)
  encoding.writeVarUint(encoder, SYNC)
  encoding.writeVarUint(encoder, SYNC_UPDATE)
  encoding.writeVarUint8Array(encoder, update)
  return encoding.toUint8Array(encoder)
}

/** A sync step 2 frame carrying `update` (the answer to a server's step 1). */
export function encodeStep2(framing: Framing, doc: string, update: Uint8Array): Uint8Array {
  const encoder = start(framing, doc)
  encoding.writeVarUint(encoder, SYNC)
  encoding.writeVarUint(encoder, SYNC_STEP2)
  encoding.writeVarUint8Array(encoder, update)
  return encoding.toUint8Array(encoder)
}

/** Colloquy's sync-status frame with `counter` (echoed once durable). */
export function encodeSyncStatus(counter: number): Uint8Array {
  const payload = encoding.createEncoder()
  encoding.writeVarUint(payload, counter)
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, SYNC_STATUS)
  encoding.writeVarUint8Array(encoder, encoding.toUint8Array(payload))
  return encoding.toUint8Array(encoder)
}

/** What a load client needs to know about a received frame. */
export type Received =
  | { readonly kind: 'step1'; readonly payload: Uint8Array }
  | { readonly kind: 'step2'; readonly payload: Uint8Array }
  | { readonly kind: 'update'; readonly payload: Uint8Array }
  | { readonly kind: 'ack'; readonly counter: number }
  | { readonly kind: 'other' }

/** Reads the message type of a received frame; sync payloads are views, not copies. */
export function decodeReceived(framing: Framing, frame: Uint8Array): Received {
  const decoder = decoding.createDecoder(frame)
  if (framing === 'hocuspocus') decoding.readVarString(decoder)
  const type = decoding.readVarUint(decoder)
  if (type === SYNC) {
    const syncType = decoding.readVarUint(decoder)
    const payload = decoding.readVarUint8Array(decoder)
    if (syncType === SYNC_STEP1) return { kind: 'step1', payload }
    if (syncType === SYNC_STEP2) return { kind: 'step2', payload }
    if (syncType === SYNC_UPDATE) return { kind: 'update', payload }
    return { kind: 'other' }
  }
  if (type === SYNC_STATUS && framing === 'plain') {
    const payload = decoding.readVarUint8Array(decoder)
    return { kind: 'ack', counter: decoding.readVarUint(decoding.createDecoder(payload)) }
  }
  return { kind: 'other' }
}

/** The empty state vector (a fresh client). */
export const EMPTY_STATE_VECTOR = new Uint8Array([0])

/**
 * Builds the Yjs v1 updates one client produces by appending strings to the root `Y.Text`
 * named `text`, without a Y.Doc: each update is one string item whose left origin is the
 * previous item's last character.
 * @remarks Strings must be ASCII (Yjs counts UTF-16 units; ASCII keeps bytes = units).
 */
export function createTextAppender(client: number): { append(text: string): Uint8Array } {
  let clock = 0
  return {
    append(text: string): Uint8Array {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, 1) // one client
      encoding.writeVarUint(encoder, 1) // one struct
      encoding.writeVarUint(encoder, client)
      encoding.writeVarUint(encoder, clock)
      if (clock === 0) {
        encoding.writeUint8(encoder, 4) // ContentString, no origins: parent info follows
        encoding.writeVarUint(encoder, 1) // parent is a root type, by name
        encoding.writeVarString(encoder, 'text')
      } else {
        encoding.writeUint8(encoder, 4 | 0x80) // ContentString with a left origin
        encoding.writeVarUint(encoder, client)
        encoding.writeVarUint(encoder, clock - 1)
      }
      encoding.writeVarString(encoder, text)
      encoding.writeVarUint(encoder, 0) // empty delete set
      clock += text.length
      return encoding.toUint8Array(encoder)
    },
  }
}

/** Token written by a streaming writer: `[seq.sendMicros]`, readable from the update bytes. */
export function stampToken(seq: number, sendMicros: number): string {
  return `[${seq}.${sendMicros}]`
}

const STAMP = /\[(\d+)\.(\d+)\]/

/** Reads the stamp back from an update's bytes (the string content is stored verbatim). */
export function readStamp(update: Uint8Array): { seq: number; sendMicros: number } | undefined {
  const match = STAMP.exec(
    Buffer.from(update.buffer, update.byteOffset, update.byteLength).toString('latin1'),
  )
  if (!match) return undefined
  return { seq: Number(match[1]), sendMicros: Number(match[2]) }
}

/** Seeded PRNG (mulberry32): the same seed gives the same client ids and names. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
