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
  | 'overloaded'
  | 'invalid-session-id'
  | 'shutting-down'
  | 'session-exists'
  | 'session-not-found'
  | 'history-trimmed'
  | 'seq-out-of-range'
  | 'bad-request'
  | 'forbidden'
  | 'not-found'
  | 'invalid-export'
  | 'unauthorized'
  | 'token-expired'
  | 'read-only'
  | 'rate-limited'
  | 'awareness-limit'
  | 'too-many-connections'
  | 'session-quota'
  | 'internal'
  | 'unknown-pool'
  | 'queue-full'
  | 'lease-lost'
  | 'turn-finished'
  | 'tenant-forbidden'
  | 'priority-forbidden'

/** How an error reaches a peer: the WebSocket close code, a short reason and whether to retry. */
export interface ErrorInfo {
  readonly closeCode: number
  readonly httpStatus: number
  readonly reason: string
  /** True when the same request may succeed later (the client reconnects with backoff). */
  readonly isRetryable: boolean
  /** A policy limit: retry, but only after the longest backoff, never hammering. */
  readonly isPolicy?: boolean
}

/**
 * The one table of error codes. `docs` and `shared/protocol/PROTOCOL.md` list the same rows.
 *
 * @remarks
 * Close codes follow the convention stock clients read (see `close-codes.ts`): a row with a close
 * code in 4400–4499 is never retryable, one in 4500–4599 always is. `token-expired` (4301) stands
 * apart: retryable once the token is refreshed. The first row for a close code names it
 * ({@link errorForCloseCode}).
 */
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
  // Never a close: a frame of an unknown type is ignored and counted (protocol version 2). Listed
  // after `malformed-message`, so close code 4400 still maps back to that.
  'unknown-message-type': {
    closeCode: CloseCode.MalformedMessage,
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
  overloaded: {
    closeCode: CloseCode.Overloaded,
    httpStatus: 503,
    reason: 'write backlog full, writes refused for now',
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
  unauthorized: {
    closeCode: CloseCode.Unauthorized,
    httpStatus: 401,
    reason: 'missing or invalid token',
    isRetryable: false,
  },
  forbidden: {
    closeCode: CloseCode.Forbidden,
    httpStatus: 403,
    reason: 'forbidden',
    isRetryable: false,
  },
  'token-expired': {
    closeCode: CloseCode.TokenExpired,
    httpStatus: 401,
    reason: 'token expired',
    isRetryable: true,
  },
  'read-only': {
    closeCode: CloseCode.Forbidden,
    httpStatus: 403,
    reason: 'read-only access: writes are refused',
    isRetryable: false,
  },
  'rate-limited': {
    closeCode: CloseCode.RateLimited,
    httpStatus: 429,
    reason: 'rate limit exceeded',
    isRetryable: true,
    isPolicy: true,
  },
  'awareness-limit': {
    closeCode: CloseCode.AwarenessLimit,
    httpStatus: 429,
    reason: 'awareness limit exceeded',
    isRetryable: true,
    isPolicy: true,
  },
  'too-many-connections': {
    closeCode: CloseCode.TooManyConnections,
    httpStatus: 429,
    reason: 'too many connections',
    isRetryable: true,
    isPolicy: true,
  },
  'session-quota': {
    closeCode: CloseCode.InternalError,
    httpStatus: 507,
    reason: 'session size quota reached: writes are refused',
    isRetryable: false,
  },
  internal: {
    closeCode: CloseCode.InternalError,
    httpStatus: 500,
    reason: 'internal error',
    isRetryable: true,
  },
  // History API, HTTP only: never sent on a socket. After `internal` so that close code 1011 still
  // maps back to `internal` (errorForCloseCode returns the first row).
  'session-exists': {
    closeCode: CloseCode.InternalError,
    httpStatus: 409,
    reason: 'the target session already exists',
    isRetryable: false,
  },
  'session-not-found': {
    closeCode: CloseCode.InternalError,
    httpStatus: 404,
    reason: 'no such session',
    isRetryable: false,
  },
  'history-trimmed': {
    closeCode: CloseCode.InternalError,
    httpStatus: 410,
    reason: 'that point of history is outside the retained window',
    isRetryable: false,
  },
  'seq-out-of-range': {
    closeCode: CloseCode.InternalError,
    httpStatus: 416,
    reason: "seq beyond the session's last seq",
    isRetryable: false,
  },
  'bad-request': {
    closeCode: CloseCode.InternalError,
    httpStatus: 400,
    reason: 'bad request',
    isRetryable: false,
  },
  'not-found': {
    closeCode: CloseCode.InternalError,
    httpStatus: 404,
    reason: 'not found',
    isRetryable: false,
  },
  'invalid-export': {
    closeCode: CloseCode.InternalError,
    httpStatus: 400,
    reason: 'not a valid Colloquy export',
    isRetryable: false,
  },
  // Turns API (docs/agents.md), HTTP only.
  'unknown-pool': {
    closeCode: CloseCode.InternalError,
    httpStatus: 404,
    reason: 'no such pool on this server',
    isRetryable: false,
  },
  'queue-full': {
    closeCode: CloseCode.InternalError,
    httpStatus: 429,
    reason: "the pool's queue is full: try again later",
    isRetryable: true,
    isPolicy: true,
  },
  'lease-lost': {
    closeCode: CloseCode.InternalError,
    httpStatus: 409,
    reason: 'the lease expired or another worker holds the turn',
    isRetryable: false,
  },
  'turn-finished': {
    closeCode: CloseCode.InternalError,
    httpStatus: 409,
    reason: 'the turn already ended',
    isRetryable: false,
  },
  'tenant-forbidden': {
    closeCode: CloseCode.InternalError,
    httpStatus: 403,
    reason: "the token does not allow this tenant: its turns go to the token's tenant",
    isRetryable: false,
  },
  'priority-forbidden': {
    closeCode: CloseCode.InternalError,
    httpStatus: 403,
    reason: "the token does not allow this priority class: ask for the token's best class or a later one",
    isRetryable: false,
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
