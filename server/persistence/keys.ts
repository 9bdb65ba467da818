// The binary key and value layout of the one LevelDB database that holds every session (format 1).
// Pure functions over bytes: no I/O. STORAGE.md describes the same layout byte by byte.

import { ColloquyError } from '../../shared/errors.js'
import { isValidSessionId } from '../../shared/session-id.js'

/** The storage format this build writes and the only one it reads. */
export const STORAGE_FORMAT_VERSION = 1

/**
 * The key that holds the storage format version (`0x00 "format"`).
 *
 * @remarks Its first byte 0x00 sorts before every kind byte, so it never falls inside a session range.
 */
export const FORMAT_KEY: Uint8Array = Uint8Array.of(0x00, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74)

/** The first byte of every session key. */
export const KeyKind = {
  Checkpoint: 0x43, // 'C'
  Log: 0x4c, // 'L'
  Meta: 0x4d, // 'M'
  /** Not a session key: a turn of the turn service, `'T' turnId` (server/turns/turn-store.ts). */
  Turn: 0x54, // 'T'
} as const

/** One of the {@link KeyKind} bytes. */
export type KeyKind = (typeof KeyKind)[keyof typeof KeyKind]

/** Ends the session id inside a key; smaller than every byte a session id may contain. */
const TERMINATOR = 0x00
const SEQ_BYTES = 8
const TIME_BYTES = 8
const TWO_POW_32 = 0x1_0000_0000

/** A log or checkpoint key, decoded. */
export interface SeqKey {
  readonly sessionId: string
  readonly seq: number
}

/** Throws `invalid-session-id` unless `sessionId` matches the shared session id rule. */
export function assertSessionId(sessionId: string): void {
  if (typeof sessionId !== 'string' || !isValidSessionId(sessionId)) {
    throw new ColloquyError('invalid-session-id', `invalid session id: ${JSON.stringify(sessionId)}`)
  }
}

/** Throws a RangeError unless `value` is an integer in [0, 2^53). */
export function assertUint53(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be an integer in [0, 2^53), got ${String(value)}`)
  }
}

/** Writes `value` (an integer in [0, 2^53)) as 8 big-endian bytes at `offset`. */
export function writeUint64BE(target: Uint8Array, offset: number, value: number): void {
  // Why byte by byte: a DataView (or a BigInt for setBigUint64) per key is an allocation on the hot path.
  const high = Math.floor(value / TWO_POW_32)
  const low = value >>> 0
  target[offset] = high >>> 24
  target[offset + 1] = (high >>> 16) & 0xff
  target[offset + 2] = (high >>> 8) & 0xff
  target[offset + 3] = high & 0xff
  target[offset + 4] = low >>> 24
  target[offset + 5] = (low >>> 16) & 0xff
  target[offset + 6] = (low >>> 8) & 0xff
  target[offset + 7] = low & 0xff
}

/** Reads 8 big-endian bytes at `offset`; throws if the value does not fit in 2^53. */
export function readUint64BE(source: Uint8Array, offset: number): number {
  if (offset < 0 || offset + 8 > source.length) throw new RangeError('not enough bytes for a 64-bit integer')
  const high =
    ((source[offset]! << 24) |
      (source[offset + 1]! << 16) |
      (source[offset + 2]! << 8) |
      source[offset + 3]!) >>>
    0
  const low =
    ((source[offset + 4]! << 24) |
      (source[offset + 5]! << 16) |
      (source[offset + 6]! << 8) |
      source[offset + 7]!) >>>
    0
  if (high >= 0x20_0000) throw new RangeError('stored integer exceeds 2^53')
  return high * TWO_POW_32 + low
}

/**
 * `length` bytes, uninitialised, outside the V8 heap (the caller writes every byte).
 *
 * @remarks Why not `new Uint8Array(length)`: V8 keeps typed arrays under 64 bytes (every key, most
 * log values) on its heap, and the first native access to one (classic-level's batch put) moves it
 * out: an allocation and a copy per key. That was a fifth of the CPU of a group commit. Buffer's
 * allocUnsafe hands out slices of a shared off-heap pool, and a Buffer takes the binding's fast path.
 */
function allocateOffHeap(length: number): Uint8Array {
  return Buffer.allocUnsafe(length)
}

/** `kind`, the id's bytes and the terminator; `extra` free bytes after it. */
function sessionPrefix(kind: KeyKind, sessionId: string, extra: number): Uint8Array {
  assertSessionId(sessionId)
  const key = allocateOffHeap(1 + sessionId.length + 1 + extra)
  key[0] = kind
  // Session ids are ASCII (checked above), so one char is one byte.
  for (let i = 0; i < sessionId.length; i++) key[1 + i] = sessionId.charCodeAt(i)
  key[1 + sessionId.length] = TERMINATOR
  return key
}

function encodeSeqKey(kind: KeyKind, sessionId: string, seq: number): Uint8Array {
  assertUint53(seq, 'seq')
  const key = sessionPrefix(kind, sessionId, SEQ_BYTES)
  writeUint64BE(key, key.length - SEQ_BYTES, seq)
  return key
}

function decodeSessionId(key: Uint8Array, kind: KeyKind, trailing: number): string {
  const end = key.length - trailing - 1
  if (key.length < 3 + trailing || key[0] !== kind || key[end] !== TERMINATOR) {
    throw new RangeError(`not a ${String.fromCharCode(kind)} key`)
  }
  let sessionId = ''
  for (let i = 1; i < end; i++) sessionId += String.fromCharCode(key[i]!)
  assertSessionId(sessionId)
  return sessionId
}

function decodeSeqKey(kind: KeyKind, key: Uint8Array): SeqKey {
  const sessionId = decodeSessionId(key, kind, SEQ_BYTES)
  return { sessionId, seq: readUint64BE(key, key.length - SEQ_BYTES) }
}

/** Encodes the key of log entry `seq` of `sessionId`: `'L' id 0x00 seq(8, BE)`. */
export function encodeLogKey(sessionId: string, seq: number): Uint8Array {
  return encodeSeqKey(KeyKind.Log, sessionId, seq)
}

/** Decodes a key written by {@link encodeLogKey}. */
export function decodeLogKey(key: Uint8Array): SeqKey {
  return decodeSeqKey(KeyKind.Log, key)
}

/** Encodes the key of the checkpoint at `seq` of `sessionId`: `'C' id 0x00 seq(8, BE)`. */
export function encodeCheckpointKey(sessionId: string, seq: number): Uint8Array {
  return encodeSeqKey(KeyKind.Checkpoint, sessionId, seq)
}

/** Decodes a key written by {@link encodeCheckpointKey}. */
export function decodeCheckpointKey(key: Uint8Array): SeqKey {
  return decodeSeqKey(KeyKind.Checkpoint, key)
}

/** Encodes the meta key of `sessionId`: `'M' id 0x00`. */
export function encodeMetaKey(sessionId: string): Uint8Array {
  return sessionPrefix(KeyKind.Meta, sessionId, 0)
}

/** Decodes a key written by {@link encodeMetaKey} into its session id. */
export function decodeMetaKey(key: Uint8Array): string {
  return decodeSessionId(key, KeyKind.Meta, 0)
}

/** Inclusive lower and exclusive upper bound of a key range, for LevelDB's `gte`/`lt`. */
export interface KeyRange {
  readonly gte: Uint8Array
  readonly lt: Uint8Array
}

/**
 * The keys of kind `kind` of one session with seq in [fromSeq, toSeq] (defaults: all of them).
 *
 * @remarks The upper bound without `toSeq` is the prefix with its terminator raised to 0x01: every
 * seq key of the session sorts below it, and every key of another session sorts outside the range
 * because the terminator is smaller than any id byte (so "ab" never captures "abc").
 */
export function seqKeyRange(kind: KeyKind, sessionId: string, fromSeq = 0, toSeq?: number): KeyRange {
  const gte = encodeSeqKey(kind, sessionId, fromSeq)
  if (toSeq === undefined || toSeq >= Number.MAX_SAFE_INTEGER) {
    const lt = sessionPrefix(kind, sessionId, 0)
    lt[lt.length - 1] = TERMINATOR + 1
    return { gte, lt }
  }
  return { gte, lt: encodeSeqKey(kind, sessionId, toSeq + 1) }
}

/** The range of a session's log keys with seq in [fromSeq, toSeq]. */
export function logKeyRange(sessionId: string, fromSeq?: number, toSeq?: number): KeyRange {
  return seqKeyRange(KeyKind.Log, sessionId, fromSeq, toSeq)
}

/** The range of a session's checkpoint keys with seq in [fromSeq, toSeq]. */
export function checkpointKeyRange(sessionId: string, fromSeq?: number, toSeq?: number): KeyRange {
  return seqKeyRange(KeyKind.Checkpoint, sessionId, fromSeq, toSeq)
}

/** The range holding every meta key (one per session), in session id order. */
export function metaKeyRange(): KeyRange {
  return { gte: Uint8Array.of(KeyKind.Meta), lt: Uint8Array.of(KeyKind.Meta + 1) }
}

/** Encodes the key of a turn: `'T'` then the turn id's bytes (ASCII: pool, session and message ids). */
export function encodeTurnKey(turnId: string): Uint8Array {
  const key = allocateOffHeap(1 + turnId.length)
  key[0] = KeyKind.Turn
  for (let i = 0; i < turnId.length; i++) {
    const code = turnId.charCodeAt(i)
    if (code < 0x21 || code > 0x7e) throw new RangeError('turn ids are printable ASCII')
    key[1 + i] = code
  }
  return key
}

/** Decodes a key written by {@link encodeTurnKey} into its turn id. */
export function decodeTurnKey(key: Uint8Array): string {
  if (key.length < 2 || key[0] !== KeyKind.Turn) throw new RangeError('not a T key')
  let turnId = ''
  for (let i = 1; i < key.length; i++) turnId += String.fromCharCode(key[i]!)
  return turnId
}

/** The range holding every turn key. */
export function turnKeyRange(): KeyRange {
  return { gte: Uint8Array.of(KeyKind.Turn), lt: Uint8Array.of(KeyKind.Turn + 1) }
}

/** A log value or checkpoint value, decoded: server time (ms) and payload bytes. */
export interface TimedBytes {
  readonly time: number
  readonly bytes: Uint8Array
}

/**
 * Encodes a log or checkpoint value: `time(8, BE)` then the payload.
 *
 * @remarks Always a fresh buffer, so the stored bytes never alias the caller's.
 */
export function encodeTimedValue(time: number, bytes: Uint8Array): Uint8Array {
  assertUint53(time, 'time')
  const value = allocateOffHeap(TIME_BYTES + bytes.byteLength)
  writeUint64BE(value, 0, time)
  value.set(bytes, TIME_BYTES)
  return value
}

/** Decodes a value written by {@link encodeTimedValue}; `bytes` is a view into `value`. */
export function decodeTimedValue(value: Uint8Array): TimedBytes {
  if (value.byteLength < TIME_BYTES) throw new RangeError('stored value shorter than its time field')
  return { time: readUint64BE(value, 0), bytes: value.subarray(TIME_BYTES) }
}

/** The payload size of a value written by {@link encodeTimedValue}, without decoding it. */
export function timedValuePayloadBytes(value: Uint8Array): number {
  return Math.max(0, value.byteLength - TIME_BYTES)
}

/** Version of the meta value encoding (the `v` field). */
export const META_VERSION = 1

/** The fields of a meta value (the session id lives in the key). */
export interface MetaFields {
  readonly lastSeq: number
  readonly checkpointSeq: number
  readonly logCount: number
  readonly logBytes: number
  readonly checkpointBytes: number
  readonly createdAt: number
  readonly updatedAt: number
}

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

/** Encodes a meta value as UTF-8 JSON `{"v":1,"lastSeq":…,…}` (fields in {@link MetaFields} order). */
export function encodeMetaValue(meta: MetaFields): Uint8Array {
  const { lastSeq, checkpointSeq, logCount, logBytes, checkpointBytes, createdAt, updatedAt } = meta
  assertUint53(lastSeq, 'lastSeq')
  assertUint53(checkpointSeq, 'checkpointSeq')
  assertUint53(logCount, 'logCount')
  assertUint53(logBytes, 'logBytes')
  assertUint53(checkpointBytes, 'checkpointBytes')
  assertUint53(createdAt, 'createdAt')
  assertUint53(updatedAt, 'updatedAt')
  // Written on every group commit for every session in it, so built by hand: the same bytes as
  // JSON.stringify of the record in this field order (safe integers print alike), at a fraction of
  // the cost of a record object, Object.entries and TextEncoder. All of it is ASCII.
  const json = `{"v":${META_VERSION},"lastSeq":${lastSeq},"checkpointSeq":${checkpointSeq},"logCount":${logCount},"logBytes":${logBytes},"checkpointBytes":${checkpointBytes},"createdAt":${createdAt},"updatedAt":${updatedAt}}`
  return Buffer.from(json, 'latin1')
}

/** Decodes a meta value; throws on an unknown version or a missing or invalid field. */
export function decodeMetaValue(value: Uint8Array): MetaFields {
  const parsed: unknown = JSON.parse(utf8Decoder.decode(value))
  if (typeof parsed !== 'object' || parsed === null) throw new RangeError('meta value is not an object')
  const record = parsed as Record<string, unknown>
  if (record.v !== META_VERSION) throw new RangeError(`unknown meta version ${String(record.v)}`)
  const read = (field: keyof MetaFields): number => {
    const fieldValue = record[field]
    if (typeof fieldValue !== 'number') throw new RangeError(`meta field ${field} missing`)
    assertUint53(fieldValue, field)
    return fieldValue
  }
  return {
    lastSeq: read('lastSeq'),
    checkpointSeq: read('checkpointSeq'),
    logCount: read('logCount'),
    logBytes: read('logBytes'),
    checkpointBytes: read('checkpointBytes'),
    createdAt: read('createdAt'),
    updatedAt: read('updatedAt'),
  }
}

/** Encodes the value of {@link FORMAT_KEY}: the version as ASCII decimal. */
export function encodeFormatValue(version: number = STORAGE_FORMAT_VERSION): Uint8Array {
  return utf8Encoder.encode(String(version))
}

/** Decodes the value of {@link FORMAT_KEY} as text (not a number: an unknown value is reported as is). */
export function decodeFormatValue(value: Uint8Array): string {
  return new TextDecoder('utf-8').decode(value)
}

/** Compares two keys bytewise, as LevelDB's default comparator does. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const diff = a[i]! - b[i]!
    if (diff !== 0) return diff
  }
  return a.length - b.length
}
