// Reading and writing the `messages` array: tolerant readers, append, status, cancel requests and a
// cached observer. Streaming into a message lives in streaming-writer.ts.

import * as Y from 'yjs'
import {
  type Author,
  isMessageStatus,
  isPeerKind,
  isRole,
  MessageKey,
  type MessageMetadata,
  type MessageStatus,
  type MessageView,
  messagesArray,
  newId,
  type Role,
  SCHEMA_VERSION,
} from './schema.js'
import { ensureSessionCreated } from './session-info.js'
import {
  cloneJson,
  isPlainObject,
  parseAuthor,
  parseCancelRequest,
  parseMetadata,
  readEntryId,
  readFiniteNumber,
  readString,
  readText,
  storedAuthor,
} from './tolerant-read.js'

/** What {@link appendMessage} needs; everything but role and author has a default. */
export interface AppendMessageInput {
  readonly role: Role
  readonly author: Author
  /** Initial text of the content `Y.Text`; default `''`. */
  readonly content?: string
  /** Default `'complete'`; a streaming writer uses `'streaming'`. */
  readonly status?: MessageStatus
  readonly metadata?: MessageMetadata
  /** Default: a new random UUID. Ids must be unique within the session. */
  readonly id?: string
  /** Milliseconds since the epoch; default `Date.now()`. */
  readonly createdAt?: number
}

/**
 * Reads one message map into a plain view, filling documented defaults for anything missing or ill-typed.
 *
 * @remarks Never throws. Defaults: id → derived from the Yjs item (`yjs-<client>-<clock>`); role →
 * `'user'`; author → `{ id: 'unknown', kind: 'device' }`; createdAt → `0`; content → `''` (a `Y.Text` or
 * a plain string are both read); status → `'complete'`; metadata → `{}`. See docs/conversation-model.md.
 */
export function readMessageMap(map: Y.Map<unknown>, index: number): MessageView {
  const role = map.get(MessageKey.Role)
  const status = map.get(MessageKey.Status)
  const updatedAt = readFiniteNumber(map.get(MessageKey.UpdatedAt))
  const error = readString(map.get(MessageKey.Error))
  const cancelRequest = parseCancelRequest(map.get(MessageKey.CancelRequest))
  return {
    id: readEntryId(map, index),
    index,
    role: isRole(role) ? role : 'user',
    author: parseAuthor(map.get(MessageKey.Author)),
    createdAt: readFiniteNumber(map.get(MessageKey.CreatedAt)) ?? 0,
    ...(updatedAt === undefined ? {} : { updatedAt }),
    content: readText(map.get(MessageKey.Content)),
    status: isMessageStatus(status) ? status : 'complete',
    ...(error === undefined ? {} : { error }),
    ...(cancelRequest === undefined ? {} : { cancelRequest }),
    metadata: parseMetadata(map.get(MessageKey.Metadata)),
  }
}

/**
 * Reads every message, in array order.
 *
 * @remarks Entries that are not `Y.Map`s are skipped (their positions stay counted in `index`).
 * Each view is a deep copy: keeping or changing it never touches the document.
 */
export function readMessages(doc: Y.Doc): MessageView[] {
  const views: MessageView[] = []
  messagesArray(doc).forEach((entry, index) => {
    if (entry instanceof Y.Map) views.push(readMessageMap(entry, index))
  })
  return views
}

/**
 * The `Y.Map` of the first message with this id (fallback ids included), or `undefined`.
 *
 * @remarks For bindings that need the live `content` `Y.Text`; everything else should use views.
 */
export function findMessageMap(doc: Y.Doc, id: string): Y.Map<unknown> | undefined {
  const entries = messagesArray(doc).toArray()
  for (let index = 0; index < entries.length; index++) {
    const entry = entries[index]
    if (entry instanceof Y.Map && readEntryId(entry, index) === id) return entry
  }
  return undefined
}

/** Reads the first message with this id, or `undefined` when there is none. */
export function readMessage(doc: Y.Doc, id: string): MessageView | undefined {
  const entries = messagesArray(doc).toArray()
  for (let index = 0; index < entries.length; index++) {
    const entry = entries[index]
    if (entry instanceof Y.Map && readEntryId(entry, index) === id) return readMessageMap(entry, index)
  }
  return undefined
}

/**
 * Appends a message at the end of the conversation in one transaction and returns its view.
 *
 * @remarks The content is a new `Y.Text`; metadata and author are stored as copies (plain objects).
 * Also records the session's `createdAt` if nobody has yet. Throws `TypeError` on a role, status or
 * author kind outside the schema: those are programming errors, not foreign data.
 */
export function appendMessage(doc: Y.Doc, input: AppendMessageInput, origin?: unknown): MessageView {
  const { map, index } = insertMessageMap(doc, input, origin)
  return readMessageMap(map, index)
}

/**
 * {@link appendMessage}, returning the new map and its index instead of a view.
 * @internal For the streaming writer, which keeps the map to observe it.
 */
export function insertMessageMap(
  doc: Y.Doc,
  input: AppendMessageInput,
  origin?: unknown,
): { readonly map: Y.Map<unknown>; readonly index: number; readonly id: string; readonly content: Y.Text } {
  const status = input.status ?? 'complete'
  if (!isRole(input.role)) throw new TypeError(`unknown message role: ${String(input.role)}`)
  if (!isMessageStatus(status)) throw new TypeError(`unknown message status: ${String(status)}`)
  if (!isPeerKind(input.author.kind)) throw new TypeError(`unknown peer kind: ${String(input.author.kind)}`)
  const id = input.id ?? newId()
  const createdAt = input.createdAt ?? Date.now()
  const array = messagesArray(doc)
  const map = new Y.Map<unknown>()
  const content = new Y.Text(input.content ?? '')
  let index = 0
  doc.transact(() => {
    index = array.length
    array.push([map])
    map.set(MessageKey.Id, id)
    map.set(MessageKey.Role, input.role)
    map.set(MessageKey.Author, storedAuthor(input.author))
    map.set(MessageKey.CreatedAt, createdAt)
    map.set(MessageKey.Content, content)
    map.set(MessageKey.Status, status)
    if (input.metadata !== undefined) map.set(MessageKey.Metadata, cloneJson(input.metadata) ?? {})
    map.set(MessageKey.SchemaVersion, SCHEMA_VERSION)
    ensureSessionCreated(doc, createdAt)
  }, origin)
  return { map, index, id, content }
}

/** Options of {@link setMessageStatus}. */
export interface SetMessageStatusOptions {
  /** The error text, stored when the new status is `'error'`. */
  readonly error?: string
}

/**
 * Sets a message's status (and `updatedAt`) in one transaction; false when no message has this id.
 *
 * @remarks Any transition is allowed (crash recovery turns `streaming` into `error`). With status
 * `'error'` the given error text is stored; any other status removes a previous error text. An open
 * streaming writer of this message stops writing when it sees the status leave `streaming`.
 */
export function setMessageStatus(
  doc: Y.Doc,
  id: string,
  status: MessageStatus,
  options: SetMessageStatusOptions = {},
  origin?: unknown,
): boolean {
  if (!isMessageStatus(status)) throw new TypeError(`unknown message status: ${String(status)}`)
  const map = findMessageMap(doc, id)
  if (map === undefined) return false
  doc.transact(() => writeStatus(map, status, options.error), origin)
  return true
}

/**
 * Writes status, `updatedAt` and error text into a message map; call inside a transaction.
 * @internal Shared with the streaming writer so that its final text and status go out as one update.
 */
export function writeStatus(map: Y.Map<unknown>, status: MessageStatus, error: string | undefined): void {
  map.set(MessageKey.Status, status)
  map.set(MessageKey.UpdatedAt, Date.now())
  if (status === 'error') {
    if (error !== undefined) map.set(MessageKey.Error, error)
  } else if (map.has(MessageKey.Error)) {
    map.delete(MessageKey.Error)
  }
}

/**
 * Merges keys into a message's metadata (shallow: a given key replaces the stored one); false when
 * no message has this id.
 *
 * @remarks Metadata is one plain object under one key, so concurrent merges by two peers resolve as
 * last-writer-wins for the whole object. In practice only a message's writer changes it.
 */
export function updateMessageMetadata(
  doc: Y.Doc,
  id: string,
  patch: MessageMetadata,
  origin?: unknown,
): boolean {
  const map = findMessageMap(doc, id)
  if (map === undefined) return false
  doc.transact(() => writeMetadataPatch(map, patch), origin)
  return true
}

/**
 * Merges `patch` into the metadata stored in `map`; call inside a transaction.
 * @internal Shared with the streaming writer.
 */
export function writeMetadataPatch(map: Y.Map<unknown>, patch: MessageMetadata): void {
  const current = parseMetadata(map.get(MessageKey.Metadata))
  const copy = cloneJson(patch)
  map.set(MessageKey.Metadata, { ...current, ...(isPlainObject(copy) ? copy : {}) })
  map.set(MessageKey.UpdatedAt, Date.now())
}

/**
 * Asks the writer of a streaming message to stop, by storing a durable `cancelRequest` in the message.
 *
 * @remarks Returns false, writing nothing, when no message has this id or it is not `streaming`.
 * When a request is already stored it is kept (the first request wins) and the result is true. The
 * writer, on whichever peer it runs, sees the key through Yjs and sets the status to `'cancelled'`.
 */
export function requestCancel(doc: Y.Doc, id: string, by: Author, origin?: unknown): boolean {
  const map = findMessageMap(doc, id)
  if (map === undefined) return false
  if (map.get(MessageKey.Status) !== 'streaming') return false
  if (parseCancelRequest(map.get(MessageKey.CancelRequest)) !== undefined) return true
  doc.transact(() => {
    map.set(MessageKey.CancelRequest, { by: storedAuthor(by), at: Date.now() })
  }, origin)
  return true
}

/**
 * Calls `listener` with every message after each transaction that changed the `messages` array or
 * anything inside it (content, status, …); returns the function that stops it.
 *
 * @remarks Not called for the current state: read it with {@link readMessages}. Views of messages that
 * the transaction did not touch are reused from the previous call (same object when the index is the
 * same), so a streamed token costs one message's read, not the whole conversation's.
 */
export function observeMessages(
  doc: Y.Doc,
  listener: (messages: MessageView[], transaction: Y.Transaction) => void,
): () => void {
  const array = messagesArray(doc)
  const cache = new WeakMap<Y.Map<unknown>, MessageView>()
  const handler: Parameters<typeof array.observeDeep>[0] = (events, transaction) => {
    for (const event of events) {
      // Walk up from the changed type (a content Y.Text, a message map, …) to its message map.
      let type: Y.AbstractType<unknown> | null = event.target
      while (type !== null && type !== array && type.parent !== array) type = type.parent
      if (type instanceof Y.Map) cache.delete(type)
    }
    const views: MessageView[] = []
    array.forEach((entry, index) => {
      if (!(entry instanceof Y.Map)) return
      let view = cache.get(entry)
      if (view === undefined) view = readMessageMap(entry, index)
      else if (view.index !== index) view = { ...view, index }
      cache.set(entry, view)
      views.push(view)
    })
    listener(views, transaction)
  }
  array.observeDeep(handler)
  return () => array.unobserveDeep(handler)
}
