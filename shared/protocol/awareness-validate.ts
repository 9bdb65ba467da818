// Validation of awareness updates before y-protocols applies them: every entry must decode and its
// state must be JSON, so an update is applied whole or refused whole. Also re-encodes a subset of
// entries byte for byte (the server relays only the entries it accepted).

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../errors.js'

/** One decoded entry of an awareness update. */
export interface AwarenessEntry {
  readonly clientId: number
  readonly clock: number
  /** The state's JSON text as received (`null` means the client left). */
  readonly stateJson: string
  /** True when the state is JSON `null`: the entry removes the client's presence. */
  readonly isRemoval: boolean
}

/**
 * Decodes an awareness update fully, throwing `malformed-message` if any entry does not decode,
 * its state is not valid JSON, or bytes are left over.
 */
export function decodeAwarenessUpdate(update: Uint8Array): AwarenessEntry[] {
  try {
    const decoder = decoding.createDecoder(update)
    const count = decoding.readVarUint(decoder)
    // Each entry takes at least 3 bytes: a count larger than that cannot be honest.
    if (count > update.length) throw new Error(`awareness update claims ${count} entries`)
    const entries: AwarenessEntry[] = []
    for (let i = 0; i < count; i++) {
      const clientId = decoding.readVarUint(decoder)
      const clock = decoding.readVarUint(decoder)
      const stateJson = decoding.readVarString(decoder)
      const isRemoval = JSON.parse(stateJson) === null
      entries.push({ clientId, clock, stateJson, isRemoval })
    }
    if (decoding.hasContent(decoder)) throw new Error('trailing bytes after awareness update')
    return entries
  } catch (error) {
    throw new ColloquyError(
      'malformed-message',
      `invalid awareness update: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  }
}

/**
 * Encodes entries as an awareness update (y-protocols layout), each state's JSON text as received.
 *
 * @remarks `encodeAwarenessUpdate(decodeAwarenessUpdate(u))` gives back `u` byte for byte.
 */
export function encodeAwarenessUpdate(entries: readonly AwarenessEntry[]): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(encoder, entry.clientId)
    encoding.writeVarUint(encoder, entry.clock)
    encoding.writeVarString(encoder, entry.stateJson)
  }
  return encoding.toUint8Array(encoder)
}
