import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  compareKeys,
  decodeCheckpointKey,
  decodeLogKey,
  decodeMetaKey,
  decodeMetaValue,
  decodeTimedValue,
  encodeCheckpointKey,
  encodeLogKey,
  encodeMetaKey,
  encodeMetaValue,
  encodeTimedValue,
  FORMAT_KEY,
  logKeyRange,
  metaKeyRange,
  readUint64BE,
  writeUint64BE,
} from '../../../server/persistence/keys.js'

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-'.split('')

/** Valid session ids, biased towards short ones drawn from few characters so prefixes are common. */
const sessionId = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'b', '.', ':', '-', '0'), minLength: 1, maxLength: 4 }),
  fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 128 }),
)
const seq = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.constantFrom(0xff, 0x100, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER),
  fc.maxSafeNat(),
)

function compareTuples(a: readonly [string, number], b: readonly [string, number]): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1
  return a[1] - b[1]
}

function isInRange(key: Uint8Array, range: { gte: Uint8Array; lt: Uint8Array }): boolean {
  return compareKeys(key, range.gte) >= 0 && compareKeys(key, range.lt) < 0
}

describe('keys', () => {
  it('lays a log key out as L, the id, 0x00 and an 8-byte big-endian seq', () => {
    expect([...encodeLogKey('ab', 258)]).toEqual([0x4c, 0x61, 0x62, 0x00, 0, 0, 0, 0, 0, 0, 1, 2])
    expect([...encodeCheckpointKey('a', 2 ** 32)]).toEqual([0x43, 0x61, 0x00, 0, 0, 0, 1, 0, 0, 0, 0])
    expect([...encodeMetaKey('a:b')]).toEqual([0x4d, 0x61, 0x3a, 0x62, 0x00])
    expect(new TextDecoder().decode(FORMAT_KEY.subarray(1))).toBe('format')
  })

  it('orders log keys as (session id, seq) tuples and decodes what it encodes', () => {
    fc.assert(
      fc.property(fc.tuple(sessionId, seq), fc.tuple(sessionId, seq), (a, b) => {
        const keyA = encodeLogKey(a[0], a[1])
        const keyB = encodeLogKey(b[0], b[1])
        expect(Math.sign(compareKeys(keyA, keyB))).toBe(Math.sign(compareTuples(a, b)))
        expect(decodeLogKey(keyA)).toEqual({ sessionId: a[0], seq: a[1] })
        expect(decodeCheckpointKey(encodeCheckpointKey(b[0], b[1]))).toEqual({ sessionId: b[0], seq: b[1] })
        expect(decodeMetaKey(encodeMetaKey(a[0]))).toBe(a[0])
      }),
      { numRuns: 2000 },
    )
  })

  it('puts exactly one session’s log keys inside its range, prefixes included', () => {
    fc.assert(
      fc.property(sessionId, sessionId, seq, (owner, other, someSeq) => {
        const range = logKeyRange(owner)
        expect(isInRange(encodeLogKey(owner, someSeq), range)).toBe(true)
        if (other !== owner) expect(isInRange(encodeLogKey(other, someSeq), range)).toBe(false)
        expect(isInRange(encodeCheckpointKey(owner, someSeq), range)).toBe(false)
        expect(isInRange(encodeMetaKey(owner), range)).toBe(false)
        expect(isInRange(encodeMetaKey(owner), metaKeyRange())).toBe(true)
        expect(isInRange(FORMAT_KEY, metaKeyRange())).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })

  it('bounds a seq range inclusively', () => {
    fc.assert(
      fc.property(sessionId, seq, seq, seq, (id, x, y, probe) => {
        const [from, to] = x <= y ? [x, y] : [y, x]
        const inside = isInRange(encodeLogKey(id, probe), logKeyRange(id, from, to))
        expect(inside).toBe(probe >= from && probe <= to)
      }),
    )
  })

  it('round-trips 64-bit big-endian integers below 2^53 and refuses the rest', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const bytes = new Uint8Array(8)
        writeUint64BE(bytes, 0, value)
        expect(readUint64BE(bytes, 0)).toBe(value)
        expect(Buffer.from(bytes).readBigUInt64BE()).toBe(BigInt(value))
      }),
    )
    expect(() => readUint64BE(Uint8Array.of(0, 0x20, 0, 0, 0, 0, 0, 0), 0)).toThrow(RangeError)
    expect(() => encodeLogKey('s', -1)).toThrow(RangeError)
    expect(() => encodeLogKey('s', 1.5)).toThrow(RangeError)
    expect(() => encodeLogKey('s', 2 ** 53)).toThrow(RangeError)
  })

  it('refuses invalid session ids when encoding and decoding', () => {
    for (const id of ['', 'a b', 'x'.repeat(129), 'a\u0000b', 'ü']) {
      expect(() => encodeLogKey(id, 1)).toThrow(expect.objectContaining({ code: 'invalid-session-id' }))
    }
    expect(() => decodeLogKey(Uint8Array.of(0x4c, 0x00, 0, 0, 0, 0, 0, 0, 0, 1))).toThrow()
    expect(() => decodeLogKey(encodeCheckpointKey('a', 1))).toThrow(RangeError)
  })

  it('encodes values as an 8-byte time followed by the payload', () => {
    const value = encodeTimedValue(1_700_000_000_123, Uint8Array.of(9, 8, 7))
    expect(value.byteLength).toBe(11)
    const decoded = decodeTimedValue(value)
    expect(decoded.time).toBe(1_700_000_000_123)
    expect([...decoded.bytes]).toEqual([9, 8, 7])
  })

  it('round-trips meta values and refuses unknown versions', () => {
    const meta = {
      lastSeq: 9,
      checkpointSeq: 4,
      logCount: 5,
      logBytes: 120,
      checkpointBytes: 33,
      createdAt: 1,
      updatedAt: 2,
    }
    expect(decodeMetaValue(encodeMetaValue(meta))).toEqual(meta)
    expect(JSON.parse(new TextDecoder().decode(encodeMetaValue(meta)))).toMatchObject({ v: 1 })
    const future = new TextEncoder().encode(JSON.stringify({ ...meta, v: 2 }))
    expect(() => decodeMetaValue(future)).toThrow(/unknown meta version 2/)
    const missing = new TextEncoder().encode(JSON.stringify({ v: 1, lastSeq: 1 }))
    expect(() => decodeMetaValue(missing)).toThrow(/checkpointSeq missing/)
  })
})
