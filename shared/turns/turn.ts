// The turn model: a request that a pool of agent workers answers one message of one session.
// Isomorphic (no I/O, no Node APIs): the server, the worker SDK and the web app read the same types.
// docs/agents.md ("Pools and turns") is the contract; keep the two in step.

import { isValidSessionId } from '../session-id.js'

/** Pool names: 1–64 characters of `a-z0-9_-`, starting with a letter or digit. */
export const POOL_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/
/** Message ids a turn may name: 1–128 characters of `A-Za-z0-9._:-` (UUIDs and `yjs-<client>-<clock>` fit). */
export const TURN_MESSAGE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
/** Tenant ids: 1–64 characters of `A-Za-z0-9._:-`. */
export const TENANT_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/
/** Separates the parts of a turn id; no pool name, session id or message id contains it. */
export const TURN_ID_SEPARATOR = '~'

/** Priority classes: 0 is served first, then 1, …; a turn without one gets {@link DEFAULT_PRIORITY}. */
export const PRIORITY_CLASSES = 3
/** The class of a turn created without a priority. */
export const DEFAULT_PRIORITY = 1
/** The tenant of a turn created without one. */
export const DEFAULT_TENANT = 'default'

/** Every state a turn goes through; `done`, `cancelled`, `expired` and `failed` are final. */
export const TurnState = {
  /** Waiting in its pool's queue. */
  Queued: 'queued',
  /** Given to a worker with a lease; the worker has not yet reported its answer started. */
  Claimed: 'claimed',
  /** The worker reported (on renew) that its answer is streaming into the session. */
  Streaming: 'streaming',
  /** The worker completed it after its answer was durable. */
  Done: 'done',
  /** Cancelled by a device while queued (removed from the queue) or while running. */
  Cancelled: 'cancelled',
  /** Its deadline passed while it was queued. */
  Expired: 'expired',
  /** Failed for good: the worker said so, or its lease was lost `maxAttempts` times. */
  Failed: 'failed',
} as const
/** One of the {@link TurnState} values. */
export type TurnState = (typeof TurnState)[keyof typeof TurnState]

/** Every turn state, in lifecycle order. */
export const TURN_STATES: readonly TurnState[] = Object.values(TurnState)

/** True for `done`, `cancelled`, `expired` and `failed`: nothing changes a turn after these. */
export function isFinalTurnState(state: TurnState): boolean {
  return state !== 'queued' && state !== 'claimed' && state !== 'streaming'
}

/** True when `value` is a turn state. */
export function isTurnState(value: unknown): value is TurnState {
  return typeof value === 'string' && (TURN_STATES as readonly string[]).includes(value)
}

/** Why a turn ended other than `done` (machine-readable; a text beside it explains). */
export const TurnReason = {
  CancelledByDevice: 'cancelled-by-device',
  DeadlinePassed: 'deadline-passed',
  LeaseLostTooOften: 'lease-lost-too-often',
  WorkerFailed: 'worker-failed',
  SessionDeleted: 'session-deleted',
} as const
/** One of the {@link TurnReason} values, or a worker's own short code. */
export type TurnReason = (typeof TurnReason)[keyof typeof TurnReason] | (string & {})

/** Who holds a turn's lease: the worker's peer id (token `sub`) and the instance that claimed it. */
export interface TurnAgent {
  readonly peerId: string
  /** One run of one worker process (random per run). */
  readonly instanceId: string
  readonly name?: string
}

/** The right to work on a turn until `expiresAt`; renewed every `renewIntervalMs` while working. */
export interface Lease {
  /** Random per claim: a late call with an older lease id gets `lost`. */
  readonly id: string
  /** Server time (ms since the epoch) after which the turn goes back to the queue. */
  readonly expiresAt: number
  /** How often the worker should renew (a third of the lease's length). */
  readonly renewIntervalMs: number
  /** The lease's length (ms), as each renew extends it. */
  readonly ttlMs: number
}

/** A turn as the server stores it and the API returns it. */
export interface Turn {
  /** `<pool>~<sessionId>~<messageId>` ({@link turnIdOf}): creating the same turn twice is a no-op. */
  readonly id: string
  readonly sessionId: string
  /** The user message to answer. */
  readonly messageId: string
  readonly pool: string
  /** 0 … {@link PRIORITY_CLASSES} − 1; 0 first. */
  readonly priority: number
  readonly tenant: string
  /** Server time (ms) after which a queued turn expires; undefined: never. */
  readonly deadline?: number
  readonly state: TurnState
  /** Claims so far (1 after the first claim; a redelivery adds one). */
  readonly attempts: number
  /** Why it ended, for `cancelled`, `expired` and `failed`. */
  readonly reason?: TurnReason
  /** A human sentence beside `reason`. */
  readonly reasonText?: string
  readonly createdAt: number
  readonly updatedAt: number
  /** When its current or last claim started (ms). */
  readonly claimedAt?: number
  /** When it reached a final state (ms). */
  readonly endedAt?: number
  /** The holder of the current lease (claimed, streaming) or of the last one. */
  readonly agent?: TurnAgent
  /** The current lease: present while `claimed` or `streaming`. */
  readonly lease?: Lease
  /**
   * The answer message a worker reported (renew/complete): a worker given the turn again continues
   * this message from its durable text instead of starting a new one.
   */
  readonly replyId?: string
  /** A cancel was asked while the turn ran: its worker learns it on its next renew. */
  readonly isCancelRequested?: boolean
}

/** The id of the turn that asks `pool` to answer `messageId` of `sessionId`. */
export function turnIdOf(sessionId: string, messageId: string, pool: string): string {
  return `${pool}${TURN_ID_SEPARATOR}${sessionId}${TURN_ID_SEPARATOR}${messageId}`
}

/** The parts of a turn id, or undefined when it is not one (wrong shape or an invalid part). */
export function parseTurnId(
  id: string,
): { readonly pool: string; readonly sessionId: string; readonly messageId: string } | undefined {
  if (typeof id !== 'string' || id.length > 64 + 128 + 128 + 2) return undefined
  const parts = id.split(TURN_ID_SEPARATOR)
  if (parts.length !== 3) return undefined
  const [pool, sessionId, messageId] = parts as [string, string, string]
  if (!isValidPoolName(pool) || !isValidSessionId(sessionId) || !isValidTurnMessageId(messageId))
    return undefined
  return { pool, sessionId, messageId }
}

/** True when `value` is a valid pool name. */
export function isValidPoolName(value: unknown): value is string {
  return typeof value === 'string' && POOL_NAME_PATTERN.test(value)
}

/** True when `value` is a message id a turn may name. */
export function isValidTurnMessageId(value: unknown): value is string {
  return typeof value === 'string' && TURN_MESSAGE_ID_PATTERN.test(value)
}

/** True when `value` is a valid tenant id. */
export function isValidTenant(value: unknown): value is string {
  return typeof value === 'string' && TENANT_PATTERN.test(value)
}

/** True when `value` is a priority class (an integer in [0, {@link PRIORITY_CLASSES})). */
export function isValidPriority(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < PRIORITY_CLASSES
}
