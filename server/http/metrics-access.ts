// Who may scrape `/metrics`: a dedicated bearer token (`--metrics-token`), or on a server with a
// secret an admin token for every session, or, in anonymous mode, whoever the origin checks let in.

import { createHash, timingSafeEqual } from 'node:crypto'
import { ColloquyError } from '../../shared/errors.js'
import { type AccessClaims, hasRole } from '../auth/tokens.js'
import type { HttpRequest } from './router.js'

/** Refuses a `/metrics` request with the error to answer, or lets it through (undefined). */
export type MetricsAccess = (request: HttpRequest) => Promise<ColloquyError | undefined>

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

function bearerOf(request: HttpRequest): string | undefined {
  const header = request.headers.authorization
  return header?.startsWith('Bearer ') ? header.slice(7) : undefined
}

/**
 * Who may scrape `/metrics`: with `--metrics-token`, whoever sends it as a bearer token; else, on
 * a server with a secret, an admin token for every session (prefix ""); else (anonymous mode,
 * loopback) anyone the Host and Origin checks let through.
 */
export function createMetricsAccess(
  metricsToken: string | undefined,
  verify: ((token: string | undefined) => Promise<AccessClaims>) | undefined,
): MetricsAccess {
  if (metricsToken !== undefined) {
    const expected = sha256(metricsToken)
    return async (request) => {
      const given = bearerOf(request)
      // Digests of equal length, compared in constant time.
      if (given !== undefined && timingSafeEqual(sha256(given), expected)) return undefined
      return new ColloquyError('unauthorized', 'metrics need the metrics token')
    }
  }
  if (verify === undefined) return async () => undefined
  return async (request) => {
    let claims: AccessClaims
    try {
      claims = await verify(bearerOf(request))
    } catch (error) {
      return error instanceof ColloquyError ? error : new ColloquyError('unauthorized')
    }
    if (!hasRole(claims.role, 'admin') || claims.sessionPrefix !== '') {
      return new ColloquyError('forbidden', 'metrics need an admin token for every session')
    }
    return undefined
  }
}
