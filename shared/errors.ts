// The project's one error type and the table that maps each error code to what a peer is told.
// Server and client read the same table, so a close code always means the same thing.

import { CloseCode } from './protocol/close-codes.js'

/** Every error the project raises on purpose has one of these codes. */
export type ErrorCode =
  | 'malformed-message'
  | 'text-frame'
  | 'unknown-message-type'
  | 'invalid-update'
  | 'invalid-state-vector'
  | 'loading-queue-full'
  | 'session-load-failed'
  | 'storage-unavailable'
  | 'invalid-session-id'
  | 'shutting-down'
  | 'internal'

/** How an error reaches a peer: the WebSocket close code, a short reason and whether to retry. */
export interface ErrorInfo {
  readonly closeCode: number
  readonly httpStatus: number
  readonly reason: string
  /** True when the same request may succeed later (the client reconnects with backoff). */
  readonly isRetryable: boolean
}

/** The one table of error codes. `docs` and `shared/protocol/PROTOCOL.md` list the same rows. */
export const ERRORS: Readonly<Record<ErrorCode, ErrorInfo>> = {
  'malformed-message': {
    closeCode: CloseCode.MalformedMessage,
    httpStatus: 400,
    reason: 'malformed message',
    isRetryable: false,
  },
  'text-frame': {
    closeCode: CloseCode.TextFrame,
    httpStatus: 400,
    reason: 'text frames are not accepted',
    isRetryable: false,
  },
  'unknown-message-type': {
    closeCode: CloseCode.UnknownMessageType,
    httpStatus: 400,
    reason: 'unknown message type',
    isRetryable: false,
  },
  'invalid-update': {
    closeCode: CloseCode.InvalidUpdate,
    httpStatus: 400,
    reason: 'invalid Yjs update',
    isRetryable: false,
  },
  'invalid-state-vector': {
    closeCode: CloseCode.InvalidUpdate,
    httpStatus: 400,
    reason: 'invalid state vector',
    isRetryable: false,
  },
  'loading-queue-full': {
    closeCode: CloseCode.TryAgainLater,
    httpStatus: 503,
    reason: 'too many messages while the session loads',
    isRetryable: true,
  },
  'session-load-failed': {
    closeCode: CloseCode.SessionLoadFailed,
    httpStatus: 503,
    reason: 'session could not be loaded',
    isRetryable: true,
  },
  'storage-unavailable': {
    closeCode: CloseCode.StorageUnavailable,
    httpStatus: 503,
    reason: 'storage unavailable, writes refused',
    isRetryable: true,
  },
  'invalid-session-id': {
    closeCode: CloseCode.MalformedMessage,
    httpStatus: 400,
    reason: 'invalid session id',
    isRetryable: false,
  },
  'shutting-down': {
    closeCode: CloseCode.GoingAway,
    httpStatus: 503,
    reason: 'server shutting down',
    isRetryable: true,
  },
  internal: {
    closeCode: CloseCode.InternalError,
    httpStatus: 500,
    reason: 'internal error',
    isRetryable: true,
  },
}

/** The project's error: a stable `code` from {@link ErrorCode} and a human message. */
export class ColloquyError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].reason, options)
    this.name = 'ColloquyError'
    this.code = code
  }

  /** What the peer is told about this error. */
  get info(): ErrorInfo {
    return ERRORS[this.code]
  }
}

/** Narrows an unknown thrown value to a ColloquyError, wrapping anything else as `internal`. */
export function toColloquyError(error: unknown): ColloquyError {
  if (error instanceof ColloquyError) return error
  return new ColloquyError('internal', error instanceof Error ? error.message : String(error), {
    cause: error,
  })
}

/** Finds the table row for a WebSocket close code, if it is one of ours. */
export function errorForCloseCode(closeCode: number): ErrorCode | undefined {
  for (const [code, info] of Object.entries(ERRORS) as [ErrorCode, ErrorInfo][]) {
    if (info.closeCode === closeCode) return code
  }
  return undefined
}
