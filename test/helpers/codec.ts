// Helpers for codec tests: the error code a decode throws, and a frame written by hand.

import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../../shared/errors.js'

/** The `ColloquyError` code `fn` throws (undefined if it returns; `foreign: …` for any other error). */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (error) {
    return error instanceof ColloquyError ? error.code : `foreign: ${String(error)}`
  }
}

/** The bytes `write` puts in a fresh lib0 encoder. */
export function frame(write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder()
  write(encoder)
  return encoding.toUint8Array(encoder)
}
