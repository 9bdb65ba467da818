// Tolerant conversions from whatever a peer stored to the typed values readers return.
// Pure functions over `unknown`; they never throw and never return a reference into the document.

import * as Y from 'yjs'
import { type Author, type CancelRequest, isPeerKind, MessageKey, type MessageMetadata } from './schema.js'

/** The author readers report when a map has none they can read. */
export const UNKNOWN_AUTHOR: Author = Object.freeze({ id: 'unknown', kind: 'device' })

const MAX_CLONE_DEPTH = 32

/** A plain object (not an array, not a Yjs type, not a class instance other than Object). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** `value` if it is a string, else `undefined`. */
export function readString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

/** `value` if it is a finite number, else `undefined`. */
export function readFiniteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined
}

/** Text stored as a `Y.Text` or as a plain string; anything else reads as `''`. */
export function readText(value: unknown): string {
  if (value instanceof Y.Text) return value.toString()
  return typeof value === 'string' ? value : ''
}

/**
 * A deep copy of JSON-like data (objects, arrays, strings, numbers, booleans, null, bytes).
 *
 * @remarks Yjs hands back the very object a local writer stored, so views copy before returning.
 * Yjs types become their JSON; functions, symbols and anything nested deeper than 32 levels are dropped.
 */
export function cloneJson(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value === 'bigint') return value
  if (depth >= MAX_CLONE_DEPTH) return undefined
  if (value instanceof Uint8Array) return value.slice()
  if (value instanceof Y.AbstractType) return cloneJson(value.toJSON(), depth + 1)
  if (Array.isArray(value)) return value.map((item) => cloneJson(item, depth + 1) ?? null)
  if (isPlainObject(value)) {
    const entries: [string, unknown][] = []
    for (const [key, item] of Object.entries(value)) {
      const cloned = cloneJson(item, depth + 1)
      if (cloned !== undefined) entries.push([key, cloned])
    }
    // fromEntries defines own properties, so a key named `__proto__` stays data, not a prototype.
    return Object.fromEntries(entries)
  }
  return undefined
}

/** An object's entries whether it was stored as a plain object or as a `Y.Map`; else `undefined`. */
export function readRecord(value: unknown): Record<string, unknown> | undefined {
  if (value instanceof Y.Map) {
    const json: unknown = value.toJSON()
    return isPlainObject(json) ? json : undefined
  }
  return isPlainObject(value) ? value : undefined
}

/**
 * Reads an author: a `{ id, kind, name? }` object (plain or `Y.Map`), or a bare string taken as the id.
 *
 * @remarks Missing or non-string id → `'unknown'`; kind other than `device`/`agent` → `'device'`;
 * a non-string name is left out.
 */
export function parseAuthor(value: unknown): Author {
  if (typeof value === 'string' && value.length > 0) return { id: value, kind: 'device' }
  const record = readRecord(value)
  if (record === undefined) return { ...UNKNOWN_AUTHOR }
  const id = readString(record.id)
  const name = readString(record.name)
  return {
    id: id !== undefined && id.length > 0 ? id : UNKNOWN_AUTHOR.id,
    kind: isPeerKind(record.kind) ? record.kind : 'device',
    ...(name === undefined ? {} : { name }),
  }
}

/** The author as stored: a fresh plain object with only the known fields. */
export function storedAuthor(author: Author): Author {
  return {
    id: author.id,
    kind: author.kind,
    ...(author.name === undefined ? {} : { name: author.name }),
  }
}

/**
 * Reads a cancel request. Any value other than `undefined`/`null` is a request (a hand-written peer
 * may store `true`): unreadable parts default to the unknown author and time 0.
 */
export function parseCancelRequest(value: unknown): CancelRequest | undefined {
  if (value === undefined || value === null || value === false) return undefined
  const record = readRecord(value)
  return {
    by: parseAuthor(record?.by),
    at: readFiniteNumber(record?.at) ?? 0,
  }
}

const isOptionalString = (value: unknown): boolean => value === undefined || typeof value === 'string'
const isOptionalCount = (value: unknown): boolean =>
  value === undefined || (typeof value === 'number' && Number.isFinite(value) && value >= 0)

/**
 * Reads metadata stored as a plain object or a `Y.Map` into a deep copy; anything else reads as `{}`.
 *
 * @remarks The named keys are checked: `model` and `replyTo` must be strings, the token counts finite
 * numbers ≥ 0, `toolCalls` an array; an ill-typed named key is left out. Other keys pass through.
 */
export function parseMetadata(value: unknown): MessageMetadata {
  const record = readRecord(value)
  if (record === undefined) return {}
  const copy = cloneJson(record)
  if (!isPlainObject(copy)) return {}
  if (!isOptionalString(copy.model)) delete copy.model
  if (!isOptionalString(copy.replyTo)) delete copy.replyTo
  if (!isOptionalCount(copy.promptTokens)) delete copy.promptTokens
  if (!isOptionalCount(copy.completionTokens)) delete copy.completionTokens
  if (copy.toolCalls !== undefined && !Array.isArray(copy.toolCalls)) delete copy.toolCalls
  return copy
}

/**
 * The id readers give an entry that has no usable `id` of its own: derived from the Yjs item that
 * holds the map, so it is the same on every replica and survives inserts before it.
 */
export function fallbackId(type: { readonly _item: Y.Item | null }, index: number): string {
  const item = type._item
  return item === null ? `index-${index}` : `yjs-${item.id.client}-${item.id.clock}`
}

/** The id of an entry: its `id` key when that is a non-empty string, else {@link fallbackId}. */
export function readEntryId(map: Y.Map<unknown>, index: number): string {
  // Messages and summaries both keep their id under `id`.
  const id = map.get(MessageKey.Id)
  return typeof id === 'string' && id.length > 0 ? id : fallbackId(map, index)
}
