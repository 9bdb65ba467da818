// One Hocuspocus socket, many sessions: routes each frame by its document name to that document's
// Connection, runs the per-document auth handshake, and keeps a bad document from hurting the
// socket's others. Sessions see one Peer per (socket, document); the socket is the transport's.

import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import {
  decodeHocuspocusBody,
  encodeHocuspocus,
  HocuspocusSyncStatus,
  readDocumentName,
} from '../../shared/protocol/hocuspocus-codec.js'
import {
  AuthMessageType,
  type AuthScope,
  type Message,
  messageByteLength,
} from '../../shared/protocol/message.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { createTokenBucket } from '../limits/token-bucket.js'
import type { Logger } from '../observability/log.js'
import type { Peer } from '../session/peer.js'
import type { Admission, ConnectionHandler } from './uws-transport.js'

/** What the multiplexer needs of its socket. */
export interface MuxSocket {
  /** The client's address, for logs. */
  readonly remote: string
  /** Sends one frame (an auth answer, a document's close). */
  sendFrame(frame: Uint8Array): void
  /** Closes the whole socket. */
  end(code: number, reason: string): void
  /**
   * A Peer for one document of this socket: it sends with the Hocuspocus codec and the document's
   * name, after `outgoing` (which may rewrite or drop a message); its `close` calls `closed` once.
   */
  documentPeer(documentName: string, hooks: DocumentPeerHooks): Peer
}

/** How a document's Peer reports to its multiplexer. */
export interface DocumentPeerHooks {
  /** The message to send instead of `message`, or undefined to send nothing. */
  outgoing(message: Message): Message | undefined
  /** The peer was closed (by its session, or because the socket closed). */
  closed(code: number, reason: string): void
}

/** What the transport hands a Hocuspocus socket's frames and its end to. */
export interface SocketHandler {
  receive(frame: Uint8Array): void
  closed(code: number): void
}

/** Server-wide options of {@link createHocuspocusMux}. */
export interface HocuspocusMuxOptions {
  readonly logger: Logger
  /** Decides on a document's token: the claims for `accept`, or the error to refuse it with. */
  readonly authenticate: (documentName: string, token: string) => Admission | Promise<Admission>
  /** The scope an admitted peer gets (read-only when it may not write). */
  readonly scopeOf: (admitted: unknown) => AuthScope
  /** Attaches an authenticated document's Peer to its session (the classic path's `accept`). */
  readonly accept: (sessionId: string, peer: Peer, admitted: unknown) => ConnectionHandler
  /** Documents open or authenticating at once (0: no cap). */
  readonly maxDocuments: number
  /** Document opens per second, sustained; the burst is `maxDocuments` or 1,000 (0: no limit). */
  readonly opensPerSecond: number
  /** Messages (and bytes) a document may send while its token is checked. */
  readonly maxQueuedMessages: number
  readonly maxQueuedBytes: number
  /** A socket that authenticates no document within this time is closed with 4401 (0: never). */
  readonly authDeadlineMs: number
  readonly now?: () => number
  /** A document was refused or closed by the multiplexer (error code), or a frame ignored. */
  readonly observer?: {
    documentRefused?(code: string): void
    unknownMessage?(): void
  }
}

/** The default of {@link HocuspocusMuxOptions.authDeadlineMs}. */
export const AUTH_DEADLINE_MS = 30_000

interface AuthenticatingDocument {
  readonly kind: 'authenticating'
  readonly queue: Message[]
  bytes: number
}

interface OpenDocument {
  readonly kind: 'open'
  readonly peer: Peer
  handler: ConnectionHandler | undefined
  /** Write refusals sent as sync-status 0 whose update's sync-status 1 is still to be dropped. */
  refusals: number
  /** The client closed it: no close frame goes back. */
  isClosedByClient: boolean
  /** It sent its first sync step 1 (the one that opens its sync). */
  hasStartedSync: boolean
}

type DocumentState = AuthenticatingDocument | OpenDocument

/** A document's refusal as the provider shows it: the close code, then the reason. */
export function refusalReason(error: ColloquyError): string {
  return `${error.info.closeCode} ${error.message}`
}

function isSaved(payload: Uint8Array): boolean {
  return payload.length === 1 && payload[0] === HocuspocusSyncStatus.Saved[0]
}

/**
 * Creates the multiplexer of one Hocuspocus socket.
 *
 * @remarks
 * A document opens with its auth message (a token; `authenticate` decides): answered with
 * `authenticated` (scope read-write or readonly) or `permission-denied` with a reason, its
 * messages queued meanwhile. An open document is one Connection of its session. Each sync-update
 * or sync-step2 it sends is followed by a sync-status the session echoes once everything before it
 * is durable, so a provider's unsynced count means "not yet on disk"; a write the session refuses
 * (read-only, quota) is answered with sync-status 0 instead. A bad message for a document closes
 * that document (a close message with `<code> <reason>`), never the socket; only a frame with no
 * readable document name closes the socket (4400).
 */
export function createHocuspocusMux(socket: MuxSocket, options: HocuspocusMuxOptions): SocketHandler {
  const { logger } = options
  const now = options.now ?? Date.now
  const docs = new Map<string, DocumentState>()
  const opens = createTokenBucket(
    options.opensPerSecond,
    options.maxDocuments > 0 ? options.maxDocuments : 1_000,
    now(),
  )
  let isSocketClosed = false
  let hasAuthenticated = false
  let refusalsLogged = 0
  const deadline =
    options.authDeadlineMs > 0
      ? setTimeout(() => {
          if (isSocketClosed || hasAuthenticated) return
          logger.info(
            { remote: socket.remote },
            'hocuspocus socket closed: no document authenticated in time',
          )
          socket.end(CloseCode.Unauthorized, 'no document authenticated')
        }, options.authDeadlineMs)
      : undefined
  deadline?.unref()

  const send = (message: Message, documentName: string): void => {
    if (!isSocketClosed) socket.sendFrame(encodeHocuspocus(message, documentName))
  }

  /** Refuses a document's open: a permission-denied message with the reason, a metric, a log line. */
  const refuseOpen = (documentName: string, error: ColloquyError): void => {
    options.observer?.documentRefused?.(error.code)
    // A flood of refused opens is logged once per socket at info, the rest at debug.
    const log = refusalsLogged++ === 0 ? logger.info : logger.debug
    log.call(
      logger,
      { remote: socket.remote, document: documentName.slice(0, 200), code: error.code },
      'document refused: %s',
      error.message,
    )
    send(
      { type: 'auth', authType: AuthMessageType.PermissionDenied, reason: refusalReason(error) },
      documentName,
    )
  }

  /** Closes a document the multiplexer cannot go on with (not its session's decision). */
  const closeDocument = (documentName: string, error: ColloquyError): void => {
    const doc = docs.get(documentName)
    if (doc?.kind === 'open') {
      doc.peer.close(error.info.closeCode, error.message)
      return
    }
    docs.delete(documentName)
    options.observer?.documentRefused?.(error.code)
    logger.warn(
      { remote: socket.remote, document: documentName.slice(0, 200), code: error.code },
      'document closed: %s',
      error.message,
    )
    send({ type: 'close', reason: refusalReason(error) }, documentName)
  }

  const ignore = (documentName: string, why: string): void => {
    options.observer?.unknownMessage?.()
    logger.debug({ remote: socket.remote, document: documentName.slice(0, 200) }, 'message ignored: %s', why)
  }

  const deliver = (documentName: string, doc: OpenDocument, message: Message): void => {
    const handler = doc.handler
    if (handler === undefined) return
    handler.receive(message)
    // Echoed by the session once every update before it is durable (its ack path). The provider
    // counts 1 per update it sends, and resets its count to 1 with every sync step 1: its first is
    // settled by the sync-status of the step 2 it then sends, a later one (`forceSyncInterval`) by
    // its own, since everything it had to send was sent before it.
    const isLaterStep1 = message.type === 'sync-step1' && doc.hasStartedSync
    if (message.type === 'sync-step1') doc.hasStartedSync = true
    if (message.type === 'sync-update' || message.type === 'sync-step2' || isLaterStep1) {
      handler.receive({ type: 'sync-status', payload: HocuspocusSyncStatus.Saved, sessionId: documentName })
    }
  }

  const openDocument = (documentName: string, token: string): void => {
    if (options.maxDocuments > 0 && docs.size >= options.maxDocuments) {
      refuseOpen(documentName, new ColloquyError('too-many-connections', 'too many documents on this socket'))
      return
    }
    if (!opens.take(1, now())) {
      refuseOpen(documentName, new ColloquyError('rate-limited', 'too many document opens on this socket'))
      return
    }
    if (!isValidSessionId(documentName)) {
      refuseOpen(
        documentName,
        new ColloquyError('invalid-session-id', 'invalid document name: 1-128 characters of A-Za-z0-9._:-'),
      )
      return
    }
    const pending: AuthenticatingDocument = { kind: 'authenticating', queue: [], bytes: 0 }
    docs.set(documentName, pending)
    const settle = (admission: Admission): void => {
      // The socket closed, or the client closed the document, while its token was checked.
      if (isSocketClosed || docs.get(documentName) !== pending) return
      if ('error' in admission) {
        docs.delete(documentName)
        refuseOpen(documentName, admission.error)
        return
      }
      const hooks: DocumentPeerHooks = {
        outgoing(message) {
          // The session refuses a write (read-only, quota) with y-protocols' permission-denied;
          // Hocuspocus says it with sync-status 0, and the update's own sync-status 1 is dropped.
          if (message.type === 'auth') {
            doc.refusals++
            return { type: 'sync-status', payload: HocuspocusSyncStatus.Refused }
          }
          if (message.type === 'sync-status' && doc.refusals > 0 && isSaved(message.payload)) {
            doc.refusals--
            return undefined
          }
          return message
        },
        closed(code, reason) {
          if (docs.get(documentName) === doc) docs.delete(documentName)
          if (!isSocketClosed && !doc.isClosedByClient) {
            // Shutting down: the provider reconnects the socket (a closed document stays closed).
            if (code === CloseCode.GoingAway) socket.end(code, reason)
            else send({ type: 'close', reason: `${code} ${reason}` }, documentName)
          }
          const handler = doc.handler
          if (handler === undefined) return
          // Later: the session may be inside a loop over its connections when it closes one.
          if (isSocketClosed) handler.closed(code)
          else queueMicrotask(() => handler.closed(code))
        },
      }
      const doc: OpenDocument = {
        kind: 'open',
        peer: socket.documentPeer(documentName, hooks),
        handler: undefined,
        refusals: 0,
        isClosedByClient: false,
        hasStartedSync: false,
      }
      docs.set(documentName, doc)
      send({ type: 'authenticated', scope: options.scopeOf(admission.admitted) }, documentName)
      try {
        doc.handler = options.accept(documentName, doc.peer, admission.admitted)
      } catch (error) {
        const refusal = toColloquyError(error)
        if (refusal.code === 'internal')
          logger.error({ err: error, document: documentName }, 'opening a document failed')
        doc.peer.close(refusal.info.closeCode, refusal.message)
        return
      }
      hasAuthenticated = true
      for (const message of pending.queue) {
        if (docs.get(documentName) !== doc) break
        deliver(documentName, doc, message)
      }
    }
    let admission: Admission | Promise<Admission>
    try {
      admission = options.authenticate(documentName, token)
    } catch (error) {
      admission = { error: toColloquyError(error) }
    }
    if (admission instanceof Promise) {
      admission.then(settle, (error: unknown) => settle({ error: toColloquyError(error) }))
    } else {
      settle(admission)
    }
  }

  const route = (documentName: string, message: Message): void => {
    const doc = docs.get(documentName)
    if (message.type === 'auth-token') {
      if (doc === undefined) openDocument(documentName, message.token)
      else ignore(documentName, 'auth for a document already open')
      return
    }
    if (message.type === 'close') {
      if (doc === undefined) return
      docs.delete(documentName)
      if (doc.kind === 'open') {
        doc.isClosedByClient = true
        doc.peer.close(CloseCode.Normal, 'closed by the client')
      }
      return
    }
    if (doc === undefined) {
      // Providers authenticate a document before anything else: this one was closed or refused.
      ignore(documentName, `${message.type} for a document not open`)
      return
    }
    if (doc.kind === 'open') {
      deliver(documentName, doc, message)
      return
    }
    const bytes = messageByteLength(message)
    if (
      (options.maxQueuedMessages > 0 && doc.queue.length >= options.maxQueuedMessages) ||
      doc.bytes + bytes > options.maxQueuedBytes
    ) {
      closeDocument(
        documentName,
        new ColloquyError('loading-queue-full', 'too many messages before authentication'),
      )
      return
    }
    doc.queue.push(message)
    doc.bytes += bytes
  }

  return {
    receive(frame) {
      if (isSocketClosed) return
      let head: ReturnType<typeof readDocumentName>
      try {
        head = readDocumentName(frame)
      } catch (error) {
        // No document to blame: the socket itself speaks garbage.
        const refusal = toColloquyError(error)
        logger.warn(
          { remote: socket.remote, code: refusal.code },
          'hocuspocus socket closed: %s',
          refusal.message,
        )
        socket.end(refusal.info.closeCode, refusal.info.reason)
        return
      }
      const { documentName } = head
      let message: Message
      try {
        message = decodeHocuspocusBody(frame, documentName, head.bodyOffset)
      } catch (error) {
        const doc = docs.get(documentName)
        if (doc?.kind === 'open') {
          // The session counts an unknown type, or closes this document for a malformed one.
          doc.handler?.refuse(error)
        } else if (error instanceof ColloquyError && error.code === 'unknown-message-type') {
          ignore(documentName, error.message)
        } else {
          closeDocument(documentName, toColloquyError(error))
        }
        return
      }
      route(documentName, message)
    },
    closed(code) {
      if (isSocketClosed) return
      isSocketClosed = true
      clearTimeout(deadline)
      const open = [...docs.values()]
      docs.clear()
      for (const doc of open) if (doc.kind === 'open') doc.peer.close(code, 'socket closed')
    },
  }
}
