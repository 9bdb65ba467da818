// Connection statuses and what a close code means to a client, read from the shared error table
// (shared/errors.ts), so the client and the server agree on which closes are worth retrying.

import { ERRORS, type ErrorCode, errorForCloseCode } from '../shared/errors.js'
import { isPermanentCloseCode } from '../shared/protocol/close-codes.js'

/** Where a sync client stands. */
export type ConnectionStatus = 'connecting' | 'connected' | 'offline' | 'error'

/**
 * A status change, with why it happened.
 *
 * @remarks
 * `offline` and `error` carry the close code and reason of the connection that ended (if there was
 * one) and, when a retry is scheduled, `retryInMs` and the retry's `attempt` number (1, 2, …).
 * `error` means the server refused the connection for a reason retrying will not fix (a close code
 * in 4400–4499, which the shared table marks non-retryable): `errorCode` says which. The client
 * then stops reconnecting until `connect()` is called. `connecting` carries the `attempt` it belongs
 * to (0 for a fresh connect).
 */
export interface StatusEvent {
  readonly status: ConnectionStatus
  readonly reason?: string
  readonly closeCode?: number
  readonly errorCode?: ErrorCode
  readonly retryInMs?: number
  readonly attempt?: number
}

/** What a client makes of a closed connection. */
export interface CloseVerdict {
  readonly closeCode: number
  readonly reason: string
  /** Our error code for this close code, when the shared table has one. */
  readonly errorCode?: ErrorCode
  /** False for close codes the shared table marks non-retryable, and any other in 4400–4499. */
  readonly isRetryable: boolean
  /** True for policy closes (rate limits): the client waits the longest backoff before retrying. */
  readonly isPolicy?: boolean
}

const STANDARD_REASONS: Readonly<Record<number, string>> = {
  1000: 'closed',
  1001: 'going away',
  1005: 'closed without a status',
  1006: 'connection lost',
  1009: 'message too big',
  1011: 'server error',
  1015: 'TLS handshake failed',
}

/**
 * Classifies a close code (and the reason the server gave) with the shared error table.
 *
 * @remarks Codes not in the table (network drops, 1006, codes of other servers) are retryable,
 * except 4400–4499, which by the convention stock clients follow means reconnecting cannot help.
 */
export function classifyClose(closeCode: number, reason: string): CloseVerdict {
  const errorCode = errorForCloseCode(closeCode)
  if (errorCode === undefined) {
    return {
      closeCode,
      reason: reason.length > 0 ? reason : (STANDARD_REASONS[closeCode] ?? `closed with code ${closeCode}`),
      isRetryable: !isPermanentCloseCode(closeCode),
    }
  }
  const info = ERRORS[errorCode]
  return {
    closeCode,
    reason: reason.length > 0 ? reason : info.reason,
    errorCode,
    isRetryable: info.isRetryable,
    ...(info.isPolicy === true ? { isPolicy: true } : {}),
  }
}
