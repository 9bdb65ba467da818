// What every device sees of a session's turns: the root `turns` Y.Map of the session's document,
// keyed by message id, one plain object per entry. Only the server writes it (server origin);
// readers are tolerant like the conversation helpers (shared/conversation/tolerant-read.ts).

import type * as Y from 'yjs'
import { isTurnState, type TurnAgent, type TurnState } from './turn.js'

/** Root `Y.Map` of turn states, keyed by the id of the message each turn answers. */
export const TURNS = 'turns'

/** Keys of a turn entry (a plain object stored under the message id in the `turns` map). */
export const TurnEntryKey = {
  TurnId: 'turnId',
  Pool: 'pool',
  State: 'state',
  Position: 'position',
  Agent: 'agent',
  Attempts: 'attempts',
  Reason: 'reason',
  ReasonText: 'reasonText',
  ReplyId: 'replyId',
  UpdatedAt: 'updatedAt',
} as const

/** One message's turn as devices see it. */
export interface TurnEntry {
  readonly turnId: string
  readonly pool: string
  readonly state: TurnState
  /** 1-based place in the pool's queue while `queued` (refreshed at most every few hundred ms). */
  readonly position?: number
  /** The worker holding or last holding it. */
  readonly agent?: TurnAgent
  readonly attempts: number
  readonly reason?: string
  readonly reasonText?: string
  /** The answer message, once a worker reported it. */
  readonly replyId?: string
  /** Server time (ms) of the last change. */
  readonly updatedAt: number
}

/** The root map of turn entries (values `unknown`: foreign peers may put anything there). */
export function turnsMap(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap<unknown>(TURNS)
}

/** Writes (replaces) the entry of `messageId` in one transaction. */
export function writeTurnEntry(doc: Y.Doc, messageId: string, entry: TurnEntry, origin?: unknown): void {
  doc.transact(() => turnsMap(doc).set(messageId, storedEntry(entry)), origin)
}

/** Writes several entries in one transaction (one update for a batch of position changes). */
export function writeTurnEntries(
  doc: Y.Doc,
  entries: ReadonlyMap<string, TurnEntry>,
  origin?: unknown,
): void {
  if (entries.size === 0) return
  doc.transact(() => {
    const map = turnsMap(doc)
    for (const [messageId, entry] of entries) map.set(messageId, storedEntry(entry))
  }, origin)
}

/** Reads the entry of one message, or undefined when there is none or it is unreadable. */
export function readTurnEntry(doc: Y.Doc, messageId: string): TurnEntry | undefined {
  return parseTurnEntry(turnsMap(doc).get(messageId))
}

/** Reads every readable entry, keyed by message id (unreadable ones are skipped). */
export function readTurnEntries(doc: Y.Doc): Map<string, TurnEntry> {
  const entries = new Map<string, TurnEntry>()
  turnsMap(doc).forEach((value, messageId) => {
    const entry = parseTurnEntry(value)
    if (entry !== undefined) entries.set(messageId, entry)
  })
  return entries
}

function storedEntry(entry: TurnEntry): Record<string, unknown> {
  const stored: Record<string, unknown> = {
    turnId: entry.turnId,
    pool: entry.pool,
    state: entry.state,
    attempts: entry.attempts,
    updatedAt: entry.updatedAt,
  }
  if (entry.position !== undefined) stored.position = entry.position
  if (entry.agent !== undefined) stored.agent = { ...entry.agent }
  if (entry.reason !== undefined) stored.reason = entry.reason
  if (entry.reasonText !== undefined) stored.reasonText = entry.reasonText
  if (entry.replyId !== undefined) stored.replyId = entry.replyId
  return stored
}

/** A tolerant read of one stored value: undefined unless it has a string turn id, pool and a known state. */
export function parseTurnEntry(value: unknown): TurnEntry | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const record = value as Record<string, unknown>
  const { turnId, pool, state } = record
  if (typeof turnId !== 'string' || typeof pool !== 'string' || !isTurnState(state)) return undefined
  const count = (field: unknown): number | undefined =>
    typeof field === 'number' && Number.isFinite(field) && field >= 0 ? field : undefined
  const text = (field: unknown): string | undefined => (typeof field === 'string' ? field : undefined)
  const position = count(record.position)
  const reason = text(record.reason)
  const reasonText = text(record.reasonText)
  const replyId = text(record.replyId)
  const agent = parseAgent(record.agent)
  return {
    turnId,
    pool,
    state,
    attempts: count(record.attempts) ?? 0,
    updatedAt: count(record.updatedAt) ?? 0,
    ...(position === undefined ? {} : { position }),
    ...(agent === undefined ? {} : { agent }),
    ...(reason === undefined ? {} : { reason }),
    ...(reasonText === undefined ? {} : { reasonText }),
    ...(replyId === undefined ? {} : { replyId }),
  }
}

function parseAgent(value: unknown): TurnAgent | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { peerId, instanceId, name } = value as Record<string, unknown>
  if (typeof peerId !== 'string' || typeof instanceId !== 'string') return undefined
  return { peerId, instanceId, ...(typeof name === 'string' ? { name } : {}) }
}
