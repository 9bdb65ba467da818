// The conversation document's layout: the one place that names its Yjs keys, plus the value types
// every reader returns. The field-by-field contract is in docs/conversation-model.md.

import * as random from 'lib0/random'
import type * as Y from 'yjs'

/** Root `Y.Array` of message `Y.Map`s; order is the array order, identical on every replica. */
export const MESSAGES = 'messages'
/** Root `Y.Map` of session metadata (title, createdAt, one `participant:<id>` key per peer). */
export const SESSION = 'session'
/** Root `Y.Array` of summary `Y.Map`s (context compression), in the order they were added. */
export const SUMMARIES = 'summaries'
/** Root `Y.Map` of claims: which agent instance answers which user message, with a lease. */
export const CLAIMS = 'claims'
/** Written into every message, summary and the session map by this version of the helpers. */
export const SCHEMA_VERSION = 1

/** Keys of a message `Y.Map`. */
export const MessageKey = {
  Id: 'id',
  Role: 'role',
  Author: 'author',
  CreatedAt: 'createdAt',
  UpdatedAt: 'updatedAt',
  Content: 'content',
  Status: 'status',
  Error: 'error',
  CancelRequest: 'cancelRequest',
  Metadata: 'metadata',
  SchemaVersion: 'schemaVersion',
} as const

/** Keys of a summary `Y.Map`. */
export const SummaryKey = {
  Id: 'id',
  CoversThroughId: 'coversThroughId',
  Text: 'text',
  Author: 'author',
  CreatedAt: 'createdAt',
  Tokens: 'tokens',
  SchemaVersion: 'schemaVersion',
} as const

/** Keys of a claim (a plain object stored under `<promptId>|<instanceId>` in the `claims` map). */
export const ClaimKey = {
  PromptId: 'promptId',
  InstanceId: 'instanceId',
  Agent: 'agent',
  ClaimedAt: 'claimedAt',
  ExpiresAt: 'expiresAt',
  ReplyId: 'replyId',
  SchemaVersion: 'schemaVersion',
} as const

/** Keys of the session `Y.Map`; each participant has its own key, `participant:<author id>`. */
export const SessionKey = {
  Title: 'title',
  CreatedAt: 'createdAt',
  SchemaVersion: 'schemaVersion',
  ParticipantPrefix: 'participant:',
  /** Not written by these helpers; read for peers that keep all participants under one key. */
  LegacyParticipants: 'participants',
} as const

/** Who speaks in a message, in the sense of a chat-completions API. */
export type Role = 'user' | 'assistant' | 'system' | 'tool'
/** What kind of peer wrote something. */
export type PeerKind = 'device' | 'agent'
/** The life of a message: `streaming` until its writer ends it one of the three other ways. */
export type MessageStatus = 'streaming' | 'complete' | 'cancelled' | 'error'

/** Every role, in a stable order. */
export const ROLES: readonly Role[] = ['user', 'assistant', 'system', 'tool']
/** Every peer kind. */
export const PEER_KINDS: readonly PeerKind[] = ['device', 'agent']
/** Every message status. */
export const MESSAGE_STATUSES: readonly MessageStatus[] = ['streaming', 'complete', 'cancelled', 'error']

/** The peer that wrote something: its peer id, its kind and an optional display name. */
export interface Author {
  readonly id: string
  readonly kind: PeerKind
  readonly name?: string
}

/** A durable request, by any peer, that the writer of a streaming message stop. */
export interface CancelRequest {
  readonly by: Author
  readonly at: number
}

/** Optional facts about a message; the named keys are type-checked by readers, others pass through. */
export interface MessageMetadata {
  readonly model?: string
  readonly promptTokens?: number
  readonly completionTokens?: number
  readonly toolCalls?: readonly unknown[]
  /** The id of the message this one answers. */
  readonly replyTo?: string
  readonly [key: string]: unknown
}

/** A plain snapshot of one message, safe to keep: it shares nothing with the document. */
export interface MessageView {
  readonly id: string
  /** Position in the `messages` array (entries that are not maps keep their positions). */
  readonly index: number
  readonly role: Role
  readonly author: Author
  readonly createdAt: number
  readonly updatedAt?: number
  readonly content: string
  readonly status: MessageStatus
  readonly error?: string
  readonly cancelRequest?: CancelRequest
  readonly metadata: MessageMetadata
}

/** A plain snapshot of one summary: `text` stands for every message up to `coversThroughId`. */
export interface SummaryView {
  readonly id: string
  readonly coversThroughId: string
  readonly text: string
  readonly author: Author
  readonly createdAt: number
  readonly tokens?: number
}

/** A plain snapshot of one claim: `instanceId` of `agent` answers `promptId` until `expiresAt` (renewed while it works). */
export interface ClaimView {
  readonly promptId: string
  readonly instanceId: string
  readonly agent: Author
  readonly claimedAt: number
  readonly expiresAt: number
  readonly replyId?: string
}

/** A plain snapshot of the session map. */
export interface SessionInfo {
  readonly title?: string
  readonly createdAt?: number
  readonly participants: Readonly<Record<string, Author & { lastSeenAt?: number }>>
}

/** True when `value` is one of the four roles. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value)
}

/** True when `value` is `device` or `agent`. */
export function isPeerKind(value: unknown): value is PeerKind {
  return typeof value === 'string' && (PEER_KINDS as readonly string[]).includes(value)
}

/** True when `value` is one of the four message statuses. */
export function isMessageStatus(value: unknown): value is MessageStatus {
  return typeof value === 'string' && (MESSAGE_STATUSES as readonly string[]).includes(value)
}

/** The root array of message maps. Entries are `unknown` on purpose: foreign peers may put anything there. */
export function messagesArray(doc: Y.Doc): Y.Array<unknown> {
  return doc.getArray<unknown>(MESSAGES)
}

/** The root array of summary maps (entries `unknown`, as for messages). */
export function summariesArray(doc: Y.Doc): Y.Array<unknown> {
  return doc.getArray<unknown>(SUMMARIES)
}

/** The root map of claims (values `unknown`: foreign peers may put anything there). */
export function claimsMap(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap<unknown>(CLAIMS)
}

/** The root session map. */
export function sessionMap(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap<unknown>(SESSION)
}

/** A new random id (UUID v4) for a message or summary; works in browsers and Node alike. */
export function newId(): string {
  return random.uuidv4()
}
