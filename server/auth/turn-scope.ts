// What a token lets its holder ask of the turn scheduler: the tenant its turns are charged to and
// the best priority class they may use (claims `tnt` and `pri`; docs/agents.md, "Tenants and
// priority"). Decides a new turn's tenant and class from the token and the request, for the HTTP
// route (which refuses what the token does not allow) and automatic turns (which clamp it).
// Knows nothing of HTTP or sockets.

import { ColloquyError } from '../../shared/errors.js'
import { DEFAULT_PRIORITY, DEFAULT_TENANT } from '../../shared/turns/turn.js'
import type { AccessClaims } from './tokens.js'

/** The turn labels a token allows. */
export interface TurnScope {
  /** The tenant of every turn this token creates (its `tnt` claim, or `default` for a plain token). */
  readonly tenant?: string
  /** The best (lowest-numbered) class its turns may use. */
  readonly bestPriority: number
  /**
   * True for a token the operator trusts to name any tenant: an admin token without `tnt` (a
   * service creating turns on behalf of its users), and every peer of a server without a secret
   * (loopback only).
   */
  readonly mayNameTenant: boolean
}

/** The scope of the claims shared by the HTTP route, automatic turns and the tests. */
export function turnScopeOf(
  claims: Pick<AccessClaims, 'role'> & Partial<Pick<AccessClaims, 'tenant' | 'bestPriority'>>,
): TurnScope {
  const isAdmin = claims.role === 'admin'
  const bestPriority = claims.bestPriority ?? (isAdmin ? 0 : DEFAULT_PRIORITY)
  if (claims.tenant !== undefined) return { tenant: claims.tenant, bestPriority, mayNameTenant: false }
  if (isAdmin) return { bestPriority, mayNameTenant: true }
  return { tenant: DEFAULT_TENANT, bestPriority, mayNameTenant: false }
}

/**
 * The scope of a message whose writer this server cannot name (Yjs held it pending until another
 * peer's update completed it): what a plain write token gets.
 */
export const UNKNOWN_WRITER_SCOPE: TurnScope = turnScopeOf({ role: 'write' })

/** What the creator of a turn asked for. */
export interface RequestedLabels {
  readonly tenant?: string | undefined
  readonly priority?: number | undefined
}

/** A new turn's labels, as the scope allows them. */
export interface TurnLabels {
  readonly tenant: string
  readonly priority: number
  /** True when the request asked for something the scope does not allow (clamp mode only). */
  readonly isClamped: boolean
}

/** What to do with a request the scope does not allow. */
export const ScopeMode = {
  /** Throw `tenant-forbidden` / `priority-forbidden` (an HTTP caller reads why). */
  Refuse: 'refuse',
  /** Use the token's tenant and best class instead (an automatic turn: the message is written). */
  Clamp: 'clamp',
} as const
/** One of the {@link ScopeMode} values. */
export type ScopeMode = (typeof ScopeMode)[keyof typeof ScopeMode]

/**
 * The tenant and class of a new turn: the token's tenant (a request naming another is refused or
 * overridden), the request's class unless it is better than the token's best (refused or clamped);
 * without a requested class, the default class or the token's best when that is later.
 */
export function labelsFor(scope: TurnScope, requested: RequestedLabels, mode: ScopeMode): TurnLabels {
  let isClamped = false
  let tenant: string
  if (scope.mayNameTenant) tenant = requested.tenant ?? DEFAULT_TENANT
  else {
    tenant = scope.tenant ?? DEFAULT_TENANT
    if (requested.tenant !== undefined && requested.tenant !== tenant) {
      if (mode === ScopeMode.Refuse)
        throw new ColloquyError(
          'tenant-forbidden',
          `tenant ${JSON.stringify(requested.tenant)}: this token's turns go to tenant ${JSON.stringify(tenant)}`,
        )
      isClamped = true
    }
  }
  let priority = requested.priority ?? Math.max(DEFAULT_PRIORITY, scope.bestPriority)
  if (priority < scope.bestPriority) {
    if (mode === ScopeMode.Refuse)
      throw new ColloquyError(
        'priority-forbidden',
        `priority ${priority}: this token allows class ${scope.bestPriority} and later`,
      )
    priority = scope.bestPriority
    isClamped = true
  }
  return { tenant, priority, isClamped }
}
