// The versioned JSON export of a conversation: build it from a Y.Doc, validate one, and rebuild a
// Y.Doc from one. Readers of the format need no Yjs; conversation-export.schema.json describes it.

import * as Y from 'yjs'
import {
  type Author,
  addSummary,
  appendMessage,
  findMessageMap,
  isMessageStatus,
  isPeerKind,
  isRole,
  MessageKey,
  type MessageMetadata,
  type MessageStatus,
  type MessageView,
  type Role,
  readMessages,
  readSessionInfo,
  readSummaries,
  SessionKey,
  type SummaryView,
  sessionMap,
} from '../conversation/index.js'
import { ColloquyError } from '../errors.js'

/** The `format` field of every export. */
export const CONVERSATION_EXPORT_FORMAT = 'colloquy.conversation'
/** The version this code writes and the only one it reads. Bumped on any incompatible change. */
export const CONVERSATION_EXPORT_VERSION = 1

/** An author as exported. */
export interface ExportedAuthor {
  readonly id: string
  readonly kind: 'device' | 'agent'
  readonly name?: string
}

/** One message as exported (the position in `messages` is its order). */
export interface ExportedMessage {
  readonly id: string
  readonly role: Role
  readonly author: ExportedAuthor
  readonly createdAt: number
  readonly updatedAt?: number
  readonly content: string
  readonly status: MessageStatus
  readonly error?: string
  readonly cancelRequest?: { readonly by: ExportedAuthor; readonly at: number }
  readonly metadata: MessageMetadata
}

/** One summary as exported. */
export interface ExportedSummary {
  readonly id: string
  readonly coversThroughId: string
  readonly text: string
  readonly author: ExportedAuthor
  readonly createdAt: number
  readonly tokens?: number
}

/** A participant as exported. */
export interface ExportedParticipant extends ExportedAuthor {
  readonly lastSeenAt?: number
}

/** Format 1 of the JSON export. docs/history.md documents every field. */
export interface ConversationExport {
  readonly format: typeof CONVERSATION_EXPORT_FORMAT
  readonly version: typeof CONVERSATION_EXPORT_VERSION
  /** The session exported (informational: import chooses its own target). */
  readonly sessionId: string
  /** The seq whose state this is. */
  readonly seq: number
  /** Server time (ms since epoch) of that seq's update; 0 when unknown. */
  readonly time: number
  readonly exportedAt: number
  readonly session: {
    readonly title?: string
    readonly createdAt?: number
    readonly participants: Readonly<Record<string, ExportedParticipant>>
  }
  readonly messages: readonly ExportedMessage[]
  readonly summaries: readonly ExportedSummary[]
}

/** Where an export comes from. */
export interface ExportSource {
  readonly sessionId: string
  readonly seq: number
  readonly time: number
  readonly exportedAt: number
}

function exportAuthor(author: Author): ExportedAuthor {
  return { id: author.id, kind: author.kind, ...(author.name === undefined ? {} : { name: author.name }) }
}

function exportMessage(message: MessageView): ExportedMessage {
  return {
    id: message.id,
    role: message.role,
    author: exportAuthor(message.author),
    createdAt: message.createdAt,
    ...(message.updatedAt === undefined ? {} : { updatedAt: message.updatedAt }),
    content: message.content,
    status: message.status,
    ...(message.error === undefined ? {} : { error: message.error }),
    ...(message.cancelRequest === undefined
      ? {}
      : { cancelRequest: { by: exportAuthor(message.cancelRequest.by), at: message.cancelRequest.at } }),
    metadata: message.metadata,
  }
}

function exportSummary(summary: SummaryView): ExportedSummary {
  return {
    id: summary.id,
    coversThroughId: summary.coversThroughId,
    text: summary.text,
    author: exportAuthor(summary.author),
    createdAt: summary.createdAt,
    ...(summary.tokens === undefined ? {} : { tokens: summary.tokens }),
  }
}

/** Reads the conversation in `doc` (with the tolerant readers) into format 1. */
export function buildConversationExport(doc: Y.Doc, source: ExportSource): ConversationExport {
  const info = readSessionInfo(doc)
  const participants: Record<string, ExportedParticipant> = {}
  for (const [id, participant] of Object.entries(info.participants)) {
    participants[id] = {
      ...exportAuthor(participant),
      ...(participant.lastSeenAt === undefined ? {} : { lastSeenAt: participant.lastSeenAt }),
    }
  }
  return {
    format: CONVERSATION_EXPORT_FORMAT,
    version: CONVERSATION_EXPORT_VERSION,
    sessionId: source.sessionId,
    seq: source.seq,
    time: source.time,
    exportedAt: source.exportedAt,
    session: {
      ...(info.title === undefined ? {} : { title: info.title }),
      ...(info.createdAt === undefined ? {} : { createdAt: info.createdAt }),
      participants,
    },
    messages: readMessages(doc).map(exportMessage),
    summaries: readSummaries(doc).map(exportSummary),
  }
}

// --- validation -----------------------------------------------------------------------------------

function fail(path: string, what: string): never {
  throw new ColloquyError('invalid-export', `invalid export: ${path} ${what}`)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function num(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(path, 'must be a finite number')
  return value
}

function str(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, 'must be a string')
  return value
}

function optional<T>(value: unknown, read: (v: unknown) => T): T | undefined {
  return value === undefined ? undefined : read(value)
}

function author(value: unknown, path: string): ExportedAuthor {
  if (!isObject(value)) fail(path, 'must be an object')
  const kind = value.kind
  if (!isPeerKind(kind)) fail(`${path}.kind`, 'must be "device" or "agent"')
  const name = optional(value.name, (v) => str(v, `${path}.name`))
  return { id: str(value.id, `${path}.id`), kind, ...(name === undefined ? {} : { name }) }
}

/**
 * Validates a parsed JSON value as format 1 and returns it typed.
 *
 * @throws ColloquyError `invalid-export` naming the first offending field; an unknown `format` or
 * `version` is refused rather than guessed at.
 */
export function parseConversationExport(value: unknown): ConversationExport {
  if (!isObject(value)) fail('$', 'must be an object')
  if (value.format !== CONVERSATION_EXPORT_FORMAT) fail('$.format', `must be "${CONVERSATION_EXPORT_FORMAT}"`)
  if (value.version !== CONVERSATION_EXPORT_VERSION) {
    fail('$.version', `${JSON.stringify(value.version)} is not supported (this build reads version 1)`)
  }
  const session = value.session
  if (!isObject(session)) fail('$.session', 'must be an object')
  const rawParticipants = session.participants ?? {}
  if (!isObject(rawParticipants)) fail('$.session.participants', 'must be an object')
  const participants: Record<string, ExportedParticipant> = {}
  for (const [id, raw] of Object.entries(rawParticipants)) {
    const path = `$.session.participants[${JSON.stringify(id)}]`
    const lastSeenAt = isObject(raw)
      ? optional(raw.lastSeenAt, (v) => num(v, `${path}.lastSeenAt`))
      : undefined
    participants[id] = { ...author(raw, path), ...(lastSeenAt === undefined ? {} : { lastSeenAt }) }
  }
  if (!Array.isArray(value.messages)) fail('$.messages', 'must be an array')
  const messages = value.messages.map((raw: unknown, i): ExportedMessage => {
    const path = `$.messages[${i}]`
    if (!isObject(raw)) fail(path, 'must be an object')
    if (!isRole(raw.role)) fail(`${path}.role`, 'must be user, assistant, system or tool')
    if (!isMessageStatus(raw.status))
      fail(`${path}.status`, 'must be streaming, complete, cancelled or error')
    if (raw.metadata !== undefined && !isObject(raw.metadata)) fail(`${path}.metadata`, 'must be an object')
    const updatedAt = optional(raw.updatedAt, (v) => num(v, `${path}.updatedAt`))
    const error = optional(raw.error, (v) => str(v, `${path}.error`))
    const cancel = raw.cancelRequest
    let cancelRequest: ExportedMessage['cancelRequest']
    if (cancel !== undefined) {
      if (!isObject(cancel)) fail(`${path}.cancelRequest`, 'must be an object')
      cancelRequest = {
        by: author(cancel.by, `${path}.cancelRequest.by`),
        at: num(cancel.at, `${path}.cancelRequest.at`),
      }
    }
    return {
      id: str(raw.id, `${path}.id`),
      role: raw.role,
      author: author(raw.author, `${path}.author`),
      createdAt: num(raw.createdAt, `${path}.createdAt`),
      ...(updatedAt === undefined ? {} : { updatedAt }),
      content: str(raw.content, `${path}.content`),
      status: raw.status,
      ...(error === undefined ? {} : { error }),
      ...(cancelRequest === undefined ? {} : { cancelRequest }),
      metadata: (raw.metadata ?? {}) as MessageMetadata,
    }
  })
  const rawSummaries = value.summaries ?? []
  if (!Array.isArray(rawSummaries)) fail('$.summaries', 'must be an array')
  const summaries = rawSummaries.map((raw: unknown, i): ExportedSummary => {
    const path = `$.summaries[${i}]`
    if (!isObject(raw)) fail(path, 'must be an object')
    const tokens = optional(raw.tokens, (v) => num(v, `${path}.tokens`))
    return {
      id: str(raw.id, `${path}.id`),
      coversThroughId: str(raw.coversThroughId, `${path}.coversThroughId`),
      text: str(raw.text, `${path}.text`),
      author: author(raw.author, `${path}.author`),
      createdAt: num(raw.createdAt, `${path}.createdAt`),
      ...(tokens === undefined ? {} : { tokens }),
    }
  })
  const title = optional(session.title, (v) => str(v, '$.session.title'))
  const createdAt = optional(session.createdAt, (v) => num(v, '$.session.createdAt'))
  return {
    format: CONVERSATION_EXPORT_FORMAT,
    version: CONVERSATION_EXPORT_VERSION,
    sessionId: str(value.sessionId, '$.sessionId'),
    seq: num(value.seq, '$.seq'),
    time: num(value.time, '$.time'),
    exportedAt: num(value.exportedAt, '$.exportedAt'),
    session: {
      ...(title === undefined ? {} : { title }),
      ...(createdAt === undefined ? {} : { createdAt }),
      participants,
    },
    messages,
    summaries,
  }
}

/**
 * Writes the conversation of an export into a new Y.Doc with the conversation helpers.
 *
 * @remarks Everything an export holds is written back as it was (ids, times, statuses, error
 * texts, cancel requests, metadata), so exporting the result gives the same messages, summaries
 * and session info. The Yjs history (who typed which character when) is not part of the JSON
 * format: use the binary export for that.
 */
export function docFromConversationExport(exported: ConversationExport): Y.Doc {
  const doc = new Y.Doc()
  doc.transact(() => {
    const map = sessionMap(doc)
    for (const participant of Object.values(exported.session.participants)) {
      const { lastSeenAt, ...stored } = participant
      map.set(`${SessionKey.ParticipantPrefix}${participant.id}`, {
        ...stored,
        ...(lastSeenAt === undefined ? {} : { lastSeenAt }),
      })
    }
    for (const message of exported.messages) {
      appendMessage(doc, {
        id: message.id,
        role: message.role,
        author: message.author,
        content: message.content,
        status: message.status,
        metadata: message.metadata,
        createdAt: message.createdAt,
      })
      const messageMap = findMessageMap(doc, message.id)
      if (messageMap === undefined) continue
      if (message.updatedAt === undefined) messageMap.delete(MessageKey.UpdatedAt)
      else messageMap.set(MessageKey.UpdatedAt, message.updatedAt)
      if (message.error !== undefined) messageMap.set(MessageKey.Error, message.error)
      if (message.cancelRequest !== undefined) messageMap.set(MessageKey.CancelRequest, message.cancelRequest)
    }
    for (const summary of exported.summaries) addSummary(doc, summary)
    // Last: the helpers above record a creation time when none is set; the export's value wins.
    if (exported.session.createdAt === undefined) map.delete(SessionKey.CreatedAt)
    else map.set(SessionKey.CreatedAt, exported.session.createdAt)
    if (exported.session.title !== undefined) map.set(SessionKey.Title, exported.session.title)
  })
  return doc
}
