// Validation of Yjs payloads before they touch a document: a peer's bytes are hostile until decoded.

import * as Y from 'yjs'
import { ColloquyError } from '../errors.js'

/**
 * Throws `invalid-update` unless `update` decodes fully as a Yjs (v1) update.
 *
 * @remarks
 * `Y.applyUpdate` reads structs, integrates them and only then reads the delete set, so a frame that
 * is valid up to its tail could change a document and then throw. Decoding everything first, without
 * a document, means an update either applies whole or is refused before anything changed.
 * A zero-length array is not an update (the empty update is the two bytes `0 0`).
 */
export function validateUpdate(update: Uint8Array): void {
  if (update.length === 0) throw new ColloquyError('invalid-update', 'empty update')
  try {
    Y.decodeUpdate(update)
  } catch (error) {
    throw new ColloquyError('invalid-update', error instanceof Error ? error.message : String(error), {
      cause: error,
    })
  }
}

/** Decodes a state vector, throwing `invalid-state-vector` if it does not decode fully. */
export function decodeStateVectorStrict(stateVector: Uint8Array): Map<number, number> {
  try {
    // Yjs ignores trailing bytes; we require the length to match what the entries consume.
    const decoded = Y.decodeStateVector(stateVector)
    for (const [client, clock] of decoded) {
      if (!Number.isSafeInteger(client) || !Number.isSafeInteger(clock) || clock < 0) {
        throw new Error('state vector entry out of range')
      }
    }
    return decoded
  } catch (error) {
    throw new ColloquyError('invalid-state-vector', error instanceof Error ? error.message : String(error), {
      cause: error,
    })
  }
}
