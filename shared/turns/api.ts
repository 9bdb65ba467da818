// The HTTP API of turns, as types: what a device sends to create or cancel a turn and what a worker
// sends to claim, renew, complete or fail one. The server's routes (server/http/turn-routes.ts)
// and the worker SDK both import these; docs/agents.md lists the same routes with their errors.

import type { Lease, Turn, TurnAgent } from './turn.js'

/** Route paths, for clients (`:id` is a turn id, URI-encoded; `:pool` a pool name). */
export const TurnRoute = {
  Create: '/api/turns',
  Get: '/api/turns/:id',
  Claim: '/api/pools/:pool/claim',
  Renew: '/api/turns/:id/renew',
  Complete: '/api/turns/:id/complete',
  Fail: '/api/turns/:id/fail',
  Cancel: '/api/turns/:id/cancel',
  Pool: '/api/pools/:pool',
} as const

/** `POST /api/turns`: asks `pool` to answer `messageId` of `sessionId`. */
export interface CreateTurnRequest {
  readonly sessionId: string
  readonly messageId: string
  readonly pool: string
  /** 0 (first) … PRIORITY_CLASSES − 1; default DEFAULT_PRIORITY. */
  readonly priority?: number
  /** Default DEFAULT_TENANT. */
  readonly tenant?: string
  /** Server time (ms since the epoch) after which the turn, if still queued, expires. */
  readonly deadline?: number
  /** Alternative to `deadline`: ms from now. */
  readonly timeoutMs?: number
}

/** Answer of `POST /api/turns`: 201 when created, 200 when it already existed (`isNew` false). */
export interface CreateTurnResponse {
  readonly turn: Turn
  readonly isNew: boolean
  /** 1-based position in its pool's queue while queued. */
  readonly position?: number
}

/** `POST /api/pools/:pool/claim`: up to `max` turns, waiting up to `waitMs` for the first. */
export interface ClaimRequest {
  /** 1 … 64 (default 1): the worker's free slots. */
  readonly max?: number
  /** Long-poll: 0 … 30,000 ms (default 0: answer at once, possibly with no turn). */
  readonly waitMs?: number
  /** One run of the worker process (random per run); shown to devices as the turn's agent. */
  readonly instanceId: string
  /** A display name for devices. */
  readonly name?: string
}

/** A claimed turn: the turn (state `claimed`) and its lease. */
export interface ClaimedTurn {
  readonly turn: Turn
  readonly lease: Lease
}

/** Answer of a claim: zero or more turns (an empty list after `waitMs` with nothing queued). */
export interface ClaimResponse {
  readonly turns: readonly ClaimedTurn[]
}

/** `POST /api/turns/:id/renew`: extends the lease; reports progress. */
export interface RenewRequest {
  readonly leaseId: string
  /** `streaming` once the answer message exists (devices then see the turn streaming). */
  readonly state?: 'claimed' | 'streaming'
  /** The answer message, so that a redelivered turn continues it. */
  readonly replyId?: string
}

/**
 * Answer of a renew (always 200 for a known turn):
 * - `ok`: keep working, with the extended lease;
 * - `lost`: the lease expired or another worker holds the turn: stop, write nothing more;
 * - `cancelled`: a device cancelled it: stop the model, end the answer as cancelled, then call
 *   complete (or stop: the turn is already final).
 */
export type RenewResponse =
  | { readonly status: 'ok'; readonly lease: Lease }
  | { readonly status: 'lost' }
  | { readonly status: 'cancelled' }

/** `POST /api/turns/:id/complete`: the answer is durable in the session (call only then). */
export interface CompleteRequest {
  readonly leaseId: string
  readonly replyId?: string
}

/** `POST /api/turns/:id/fail`: the worker gives the turn up. */
export interface FailRequest {
  readonly leaseId: string
  /** A short code (`model-error`, …), shown to devices. */
  readonly reason: string
  readonly reasonText?: string
  /** True: another worker may try (requeued unless attempts are used up); false: failed for good. */
  readonly retry?: boolean
}

/** `POST /api/turns/:id/cancel` (body optional). */
export interface CancelRequest {
  readonly reasonText?: string
}

/** Answer of get, renew-less calls (complete, fail, cancel) and `GET /api/turns/:id`. */
export interface TurnResponse {
  readonly turn: Turn
  readonly position?: number
}

/** `GET /api/pools/:pool`: the pool's figures. */
export interface PoolResponse {
  readonly pool: string
  readonly concurrency: number
  readonly queued: number
  readonly running: number
  readonly queuedByPriority: readonly number[]
}

/** An error answer of every route: `{"error":{"code","message"}}` with a code of shared/errors.ts. */
export interface TurnErrorResponse {
  readonly error: { readonly code: string; readonly message: string }
}

export type { Lease, Turn, TurnAgent }
