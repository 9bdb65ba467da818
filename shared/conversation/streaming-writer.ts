// The streaming writer: appends tokens to one message's Y.Text, coalescing the tokens of a short
// window into one transaction, and stops when any peer requests cancellation.

import * as Y from 'yjs'
import { findMessageMap, insertMessageMap, writeMetadataPatch, writeStatus } from './messages.js'
import { type Author, type CancelRequest, MessageKey, type MessageMetadata, type Role } from './schema.js'
import { parseCancelRequest } from './tolerant-read.js'

/** How long tokens are gathered before they go out as one transaction, unless told otherwise. */
export const DEFAULT_COALESCE_MS = 20
/** Error texts longer than this are cut: a stack trace does not belong in every replica forever. */
export const MAX_ERROR_TEXT_LENGTH = 1000

/** Writes one message token by token. Created by {@link openStreamingWriter}. */
export interface StreamingWriter {
  /** The message's id. */
  readonly id: string
  /** Buffers a token; the buffer goes out as one transaction when the coalescing window closes. Ignored once closed. */
  write(token: string): void
  /** Flushes and sets status `complete`, merging `metadata` in, all in one transaction; after a cancel only merges metadata. */
  end(metadata?: MessageMetadata): void
  /** Flushes and sets status `error` with the error's text, in one transaction; after a cancel does nothing. */
  fail(error: unknown): void
  /** Writes buffered tokens now, in one transaction. */
  flush(): void
  /** True once a cancel request for this message has been seen. */
  readonly isCancelRequested: boolean
  /**
   * Calls `listener` when a cancel request is seen (at once if one was already seen); returns the
   * function that removes it.
   */
  onCancel(listener: (request: CancelRequest) => void): () => void
  /**
   * Calls `listener` once when the writer is closed by someone else: a cancel request, or another
   * writer moving the status off `streaming` (at once if that already happened). Not called for
   * this writer's own end or fail. Returns the function that removes it.
   */
  onStop(listener: () => void): () => void
  /** True after end, fail, a cancel request, or another writer moving the status off `streaming`. */
  readonly isClosed: boolean
}

/** Options of {@link openStreamingWriter}. */
export interface StreamingWriterOptions {
  readonly author: Author
  /** Default `'assistant'`. */
  readonly role?: Role
  readonly metadata?: MessageMetadata
  /** Default: a new random UUID. */
  readonly id?: string
  /**
   * With `id`: when a message with that id exists, continue it instead of appending a new one: its
   * text is kept and new tokens go after it, its status goes back to `streaming`, `metadata` is
   * merged in. A message whose `cancelRequest` is set is not reopened: the writer starts closed
   * (`isClosed`, and `onStop` listeners are called at once). Used to resume an answer another
   * worker started (docs/conversation-model.md §10).
   */
  readonly resume?: boolean
  /** Coalescing window in milliseconds; default {@link DEFAULT_COALESCE_MS}; 0 = one transaction per write. */
  readonly coalesceMs?: number
  /** Transaction origin of every write, so a sync client can tell its own updates apart. */
  readonly origin?: unknown
  /** Timer injection for tests and custom schedulers; default `setTimeout`. */
  readonly setTimer?: (fn: () => void, ms: number) => unknown
  /** Clears a handle returned by `setTimer`; default `clearTimeout`. */
  readonly clearTimer?: (handle: unknown) => void
}

type Phase = 'open' | 'stopped' | 'ended'

const defaultSetTimer = (fn: () => void, ms: number): unknown => setTimeout(fn, ms)
const defaultClearTimer = (handle: unknown): void => {
  clearTimeout(handle as Parameters<typeof clearTimeout>[0])
}

function describeError(error: unknown): string {
  let text: string
  if (error instanceof Error) text = error.message || error.name
  else if (typeof error === 'string') text = error
  else if (typeof error === 'object' && error !== null) {
    text =
      'message' in error && typeof error.message === 'string'
        ? error.message
        : Object.prototype.toString.call(error)
  } else text = String(error)
  return text.length > MAX_ERROR_TEXT_LENGTH ? `${text.slice(0, MAX_ERROR_TEXT_LENGTH)}…` : text
}

/**
 * Appends a `streaming` message (role `assistant` by default) and returns a writer for its content.
 *
 * @remarks
 * - Coalescing: the first `write` after a flush starts a timer of `coalesceMs`; every token written
 *   before it fires goes out in one `doc.transact`, so one Yjs update per window. Tokens are appended
 *   with `text.insert(text.length, chunk)`, which Yjs does in near-constant time on a long text.
 * - Cancellation: the writer observes its message map. When a `cancelRequest` appears (from this or any
 *   peer), it writes what was already buffered together with status `cancelled` in one transaction,
 *   closes, and then calls the `onCancel` listeners; later writes are ignored.
 * - If another writer moves the status off `streaming` (e.g. `setMessageStatus`), the writer flushes
 *   what it had buffered and closes without changing the status.
 * - After end, fail or a cancel no timer is pending and the map is no longer observed.
 */
export function openStreamingWriter(doc: Y.Doc, options: StreamingWriterOptions): StreamingWriter {
  const coalesceMs = options.coalesceMs ?? DEFAULT_COALESCE_MS
  if (!Number.isFinite(coalesceMs) || coalesceMs < 0) {
    throw new RangeError(`coalesceMs must be a finite number ≥ 0, got ${coalesceMs}`)
  }
  const setTimer = options.setTimer ?? defaultSetTimer
  const clearTimer = options.clearTimer ?? (options.setTimer === undefined ? defaultClearTimer : undefined)
  const origin = options.origin
  const existing =
    options.resume === true && options.id !== undefined ? findMessageMap(doc, options.id) : undefined
  const reopened = existing === undefined ? undefined : reopenMessage(doc, existing, options)
  const {
    map,
    id,
    content: text,
  } = reopened ??
  insertMessageMap(
    doc,
    {
      role: options.role ?? 'assistant',
      author: options.author,
      status: 'streaming',
      ...(options.metadata === undefined ? {} : { metadata: options.metadata }),
      ...(options.id === undefined ? {} : { id: options.id }),
    },
    origin,
  )

  let phase: Phase = reopened?.isCancelled === true ? 'stopped' : 'open'
  let buffer = ''
  let timer: { readonly handle: unknown } | undefined
  let cancelRequest: CancelRequest | undefined
  const cancelListeners = new Set<(request: CancelRequest) => void>()
  const stopListeners = new Set<() => void>()
  let isStoppedByPeer = phase === 'stopped'

  const notifyStop = (): void => {
    isStoppedByPeer = true
    const errors: unknown[] = []
    for (const listener of [...stopListeners]) {
      try {
        listener()
      } catch (error) {
        errors.push(error)
      }
    }
    stopListeners.clear()
    if (errors.length > 0) throw errors[0]
  }

  const stopTimer = (): void => {
    if (timer === undefined) return
    const { handle } = timer
    timer = undefined
    clearTimer?.(handle)
  }

  /** Appends the buffer to the text; call inside a transaction. */
  const appendBuffer = (): void => {
    if (buffer.length === 0) return
    const chunk = buffer
    buffer = ''
    text.insert(text.length, chunk)
  }

  const stopObserving = (): void => map.unobserve(onMapChange)

  const onMapChange = (event: Y.YMapEvent<unknown>): void => {
    if (phase !== 'open') return
    if (event.keysChanged.has(MessageKey.CancelRequest)) {
      const request = parseCancelRequest(map.get(MessageKey.CancelRequest))
      if (request !== undefined) {
        onCancelRequested(request)
        return
      }
    }
    if (event.keysChanged.has(MessageKey.Status) && map.get(MessageKey.Status) !== 'streaming') {
      phase = 'stopped'
      stopTimer()
      stopObserving()
      doc.transact(appendBuffer, origin)
      notifyStop()
    }
  }

  const onCancelRequested = (request: CancelRequest): void => {
    phase = 'stopped'
    cancelRequest = request
    stopTimer()
    stopObserving()
    // Runs after the transaction that carried the request: Yjs queues transactions opened by observers.
    doc.transact(() => {
      appendBuffer()
      writeStatus(map, 'cancelled', undefined)
    }, origin)
    // The document is settled before any listener runs; a throwing listener cannot skip the others.
    const errors: unknown[] = []
    for (const listener of [...cancelListeners]) {
      try {
        listener(request)
      } catch (error) {
        errors.push(error)
      }
    }
    notifyStop()
    if (errors.length > 0) throw errors[0]
  }

  if (phase === 'open') map.observe(onMapChange)

  const flush = (): void => {
    stopTimer()
    if (phase !== 'open' || buffer.length === 0) return
    doc.transact(appendBuffer, origin)
  }

  return {
    id,
    write(token) {
      if (phase !== 'open' || token.length === 0) return
      buffer += token
      if (coalesceMs === 0) flush()
      else if (timer === undefined) {
        timer = {
          handle: setTimer(() => {
            timer = undefined
            flush()
          }, coalesceMs),
        }
      }
    },
    end(metadata) {
      const wasOpen = phase === 'open'
      if (phase === 'ended') return
      phase = 'ended'
      stopTimer()
      if (wasOpen) {
        stopObserving()
        doc.transact(() => {
          appendBuffer()
          if (metadata !== undefined) writeMetadataPatch(map, metadata)
          writeStatus(map, 'complete', undefined)
        }, origin)
      } else if (metadata !== undefined) {
        doc.transact(() => writeMetadataPatch(map, metadata), origin)
      }
    },
    fail(error) {
      const wasOpen = phase === 'open'
      if (phase === 'ended') return
      phase = 'ended'
      stopTimer()
      if (!wasOpen) return
      stopObserving()
      doc.transact(() => {
        appendBuffer()
        writeStatus(map, 'error', describeError(error))
      }, origin)
    },
    flush,
    get isCancelRequested() {
      return cancelRequest !== undefined
    },
    onCancel(listener) {
      if (cancelRequest !== undefined) {
        listener(cancelRequest)
        return () => {}
      }
      cancelListeners.add(listener)
      return () => {
        cancelListeners.delete(listener)
      }
    },
    onStop(listener) {
      if (isStoppedByPeer) {
        listener()
        return () => {}
      }
      stopListeners.add(listener)
      return () => {
        stopListeners.delete(listener)
      }
    },
    get isClosed() {
      return phase !== 'open'
    },
  }
}

/**
 * Reopens an existing message for a resumed writer: its `content` stays (a plain-string content
 * becomes a `Y.Text` holding it), status back to `streaming`, metadata merged; all one transaction.
 * A message with a cancel request is left alone and reported cancelled.
 */
function reopenMessage(
  doc: Y.Doc,
  map: Y.Map<unknown>,
  options: StreamingWriterOptions,
): { map: Y.Map<unknown>; id: string; content: Y.Text; isCancelled: boolean } {
  const id = options.id as string
  const stored = map.get(MessageKey.Content)
  if (parseCancelRequest(map.get(MessageKey.CancelRequest)) !== undefined) {
    return { map, id, content: stored instanceof Y.Text ? stored : new Y.Text(), isCancelled: true }
  }
  let content = stored instanceof Y.Text ? stored : undefined
  doc.transact(() => {
    if (content === undefined) {
      content = new Y.Text(typeof stored === 'string' ? stored : '')
      map.set(MessageKey.Content, content)
    }
    if (options.metadata !== undefined) writeMetadataPatch(map, options.metadata)
    writeStatus(map, 'streaming', undefined)
  }, options.origin)
  return { map, id, content: content as Y.Text, isCancelled: false }
}
