// The `session` map: title, creation time and one key per participant. Each participant has its own
// key (`participant:<id>`) so that peers touching themselves concurrently never overwrite each other.

import * as Y from 'yjs'
import {
  type Author,
  isPeerKind,
  SCHEMA_VERSION,
  type SessionInfo,
  SessionKey,
  sessionMap,
} from './schema.js'
import { parseAuthor, readFiniteNumber, readRecord, readText, storedAuthor } from './tolerant-read.js'

type Participant = Author & { lastSeenAt?: number }

function parseParticipant(value: unknown, keyId: string | undefined): Participant | undefined {
  const record = readRecord(value)
  if (record === undefined) return undefined
  const author = parseAuthor(record)
  const lastSeenAt = readFiniteNumber(record.lastSeenAt)
  return {
    ...author,
    // The key names the participant; a stored `id` that disagrees is a hand-written mistake.
    id: keyId !== undefined && keyId.length > 0 ? keyId : author.id,
    ...(lastSeenAt === undefined ? {} : { lastSeenAt }),
  }
}

/**
 * Reads the session map into a plain snapshot.
 *
 * @remarks Never throws. A title that is not a string (or `Y.Text`) and a createdAt that is not a
 * finite number are left out. Participants come from the `participant:<id>` keys; a legacy
 * `participants` object (plain or `Y.Map`) written by other peers is read too, the per-key entries
 * winning. Entries that are not objects are skipped.
 */
export function readSessionInfo(doc: Y.Doc): SessionInfo {
  const map = sessionMap(doc)
  const rawTitle = map.get(SessionKey.Title)
  const title = typeof rawTitle === 'string' || rawTitle instanceof Y.Text ? readText(rawTitle) : undefined
  const createdAt = readFiniteNumber(map.get(SessionKey.CreatedAt))
  const participants = new Map<string, Participant>()
  const legacy = readRecord(map.get(SessionKey.LegacyParticipants))
  if (legacy !== undefined) {
    for (const [key, value] of Object.entries(legacy)) {
      const participant = parseParticipant(value, key)
      if (participant !== undefined) participants.set(participant.id, participant)
    }
  }
  map.forEach((value, key) => {
    if (!key.startsWith(SessionKey.ParticipantPrefix)) return
    const participant = parseParticipant(value, key.slice(SessionKey.ParticipantPrefix.length))
    if (participant !== undefined) participants.set(participant.id, participant)
  })
  return {
    ...(title === undefined ? {} : { title }),
    ...(createdAt === undefined ? {} : { createdAt }),
    // fromEntries: a participant id such as `__proto__` stays an ordinary key.
    participants: Object.fromEntries(participants),
  }
}

/**
 * Records the session's creation time and schema version unless a peer already has.
 *
 * @remarks Called by every writer in this folder; concurrent first writes resolve last-writer-wins,
 * between times that differ by the network delay.
 */
export function ensureSessionCreated(doc: Y.Doc, at: number, origin?: unknown): void {
  const map = sessionMap(doc)
  if (map.has(SessionKey.CreatedAt)) return
  doc.transact(() => {
    map.set(SessionKey.CreatedAt, at)
    map.set(SessionKey.SchemaVersion, SCHEMA_VERSION)
  }, origin)
}

/** Sets the session's title (last writer wins). */
export function setSessionTitle(doc: Y.Doc, title: string, origin?: unknown): void {
  doc.transact(() => {
    sessionMap(doc).set(SessionKey.Title, title)
    ensureSessionCreated(doc, Date.now())
  }, origin)
}

/**
 * Records that `author` took part in the session, last seen at `at` (default `Date.now()`).
 *
 * @remarks Writes only this author's own key, replacing its previous entry (name changes included).
 */
export function touchParticipant(
  doc: Y.Doc,
  author: Author,
  at: number = Date.now(),
  origin?: unknown,
): void {
  if (!isPeerKind(author.kind)) throw new TypeError(`unknown peer kind: ${String(author.kind)}`)
  doc.transact(() => {
    sessionMap(doc).set(`${SessionKey.ParticipantPrefix}${author.id}`, {
      ...storedAuthor(author),
      lastSeenAt: at,
    })
    ensureSessionCreated(doc, at)
  }, origin)
}
