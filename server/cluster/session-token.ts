// Session ids as NATS subject tokens and KV key parts: one reversible encoding, shared by every
// cluster module. Ids follow shared/session-id.ts; `.` separates subject tokens and `:` is not
// allowed in KV keys, so every character outside [A-Za-z0-9-] is written as `_` + two hex digits.

import { ColloquyError } from '../../shared/errors.js'

const KEPT = /[A-Za-z0-9-]/

/**
 * Encodes a session id as one subject token that is also a valid KV key part.
 *
 * @remarks Injective: `_` itself is escaped (`_5f`), so `a.b` (`a_2eb`) and `a_2eb` (`a_5f2eb`)
 * never meet. Ids are at most 128 characters, so a token is at most 384.
 */
export function encodeSessionToken(sessionId: string): string {
  let token = ''
  for (const char of sessionId) {
    token += KEPT.test(char) ? char : `_${char.charCodeAt(0).toString(16).padStart(2, '0')}`
  }
  return token
}

/** The session id a token encodes (see {@link encodeSessionToken}). */
export function decodeSessionToken(token: string): string {
  return token.replace(/_([0-9a-f]{2})/g, (sequence, hex: string) => {
    const code = Number.parseInt(hex, 16)
    if (Number.isNaN(code)) throw new ColloquyError('internal', `bad session token escape ${sequence}`)
    return String.fromCharCode(code)
  })
}

/** A seq as 16 decimal digits, so that keys sort by seq (seqs are below 2^53 < 10^16). */
export function padSeq(seq: number): string {
  return String(seq).padStart(16, '0')
}
