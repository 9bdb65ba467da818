// Signed access tokens (JWT, HS256, via jose): minting for operators and verification for the
// upgrade handler and the HTTP API. Knows claims and scopes; knows nothing of sockets.

import { createHmac, timingSafeEqual } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose'
import { ColloquyError } from '../../shared/errors.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { isValidPriority, isValidTenant } from '../../shared/turns/turn.js'

/** What a token lets its holder do, each role including the ones before it. */
export type AccessRole = 'read' | 'write' | 'admin'
export type PeerKindClaim = 'device' | 'agent'

const ROLE_RANK: Readonly<Record<AccessRole, number>> = { read: 1, write: 2, admin: 3 }

/** The verified content of a token. */
export interface AccessClaims {
  /** The peer's id (`sub`). */
  readonly peerId: string
  readonly role: AccessRole
  readonly kind: PeerKindClaim
  /** Exactly this session (`sid`), or … */
  readonly sessionId?: string
  /** … every session whose id starts with this (`spx`; `""` means every session). */
  readonly sessionPrefix?: string
  /** Expiry in ms since the epoch (`exp`). */
  readonly expiresAt: number
  /** The tenant every turn this token creates is charged to (`tnt`; docs/agents.md "Tenants and priority"). */
  readonly tenant?: string
  /** The best (lowest-numbered) priority class its turns may use (`pri`). */
  readonly bestPriority?: number
}

/** Options of {@link mintToken}. */
export interface MintOptions {
  readonly secret: string
  readonly peerId: string
  readonly role: AccessRole
  readonly kind?: PeerKindClaim
  readonly sessionId?: string
  readonly sessionPrefix?: string
  /** The `tnt` claim: the tenant of every turn the token creates. */
  readonly tenant?: string
  /** The `pri` claim: the best priority class (0, 1 or 2) its turns may use. */
  readonly bestPriority?: number
  /** Lifetime in seconds (default 3600). */
  readonly ttlSeconds?: number
  readonly now?: () => number
}

const ISSUER = 'colloquy'
const ALGORITHM = 'HS256'

/**
 * The longest token minted or verified (characters). A minted token is a few hundred; 8 KiB is the
 * header line most proxies allow. A longer one is refused before any decoding: a Hocuspocus auth
 * message may carry up to `--max-message-bytes` (16 MiB), and a 1 MB token took 8–120 ms to refuse
 * (a deeply nested payload the slowest).
 */
export const MAX_TOKEN_LENGTH = 8_192

function keyOf(secret: string): Uint8Array {
  return new TextEncoder().encode(secret)
}

/** Signs a token. Exactly one of `sessionId` and `sessionPrefix` must be given. */
export async function mintToken(options: MintOptions): Promise<string> {
  if ((options.sessionId === undefined) === (options.sessionPrefix === undefined)) {
    throw new ColloquyError('bad-request', 'a token needs exactly one of sessionId and sessionPrefix')
  }
  if (options.sessionId !== undefined && !isValidSessionId(options.sessionId)) {
    throw new ColloquyError('invalid-session-id')
  }
  if (options.tenant !== undefined && !isValidTenant(options.tenant)) {
    throw new ColloquyError('bad-request', 'a tenant is 1–64 of A-Za-z0-9._:-')
  }
  if (options.bestPriority !== undefined && !isValidPriority(options.bestPriority)) {
    throw new ColloquyError('bad-request', 'a priority class is 0, 1 or 2')
  }
  const nowSeconds = Math.floor((options.now ?? Date.now)() / 1000)
  const claims: Record<string, string | number> = { role: options.role, kind: options.kind ?? 'device' }
  if (options.sessionId !== undefined) claims.sid = options.sessionId
  if (options.sessionPrefix !== undefined) claims.spx = options.sessionPrefix
  if (options.tenant !== undefined) claims.tnt = options.tenant
  if (options.bestPriority !== undefined) claims.pri = options.bestPriority
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: ALGORITHM })
    .setSubject(options.peerId)
    .setIssuer(ISSUER)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + (options.ttlSeconds ?? 3600))
    .sign(keyOf(options.secret))
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new ColloquyError(
      'bad-request',
      `a token is at most ${MAX_TOKEN_LENGTH} characters (its ids are too long)`,
    )
  }
  return token
}

/** Verifies tokens signed with one secret. */
export interface TokenVerifier {
  /** Resolves the claims, or rejects with `unauthorized` (bad, missing) or `token-expired`. */
  verify(token: string | undefined): Promise<AccessClaims>
  /**
   * The same check, synchronous: returns the claims or throws. The upgrade handler uses it so that
   * uWS upgrades every socket inside its upgrade callback (see sync-server.ts, `authorizeSession`).
   */
  verifyNow(token: string | undefined): AccessClaims
}

/** Options of {@link createTokenVerifier}. */
export interface VerifierOptions {
  /**
   * Tokens whose verified claims are kept (default {@link DEFAULT_VERIFIED_CACHE}; 0: none): a
   * token seen again is answered without checking its signature again, until it expires.
   */
  readonly cacheSize?: number
  /** A token whose `exp` is further than this from now is refused (ms; 0 or absent: no cap). */
  readonly maxLifetimeMs?: number
}

/**
 * Verified tokens a verifier keeps by default. Devices, workers and tenants reuse one token for
 * every call; checking its signature each time (WebCrypto HMAC, a key import and an async job per
 * call) was 17 % of the server's CPU in issue 17's burst of turn creates.
 */
export const DEFAULT_VERIFIED_CACHE = 1_024

/**
 * Creates a verifier for `secret` (HS256 only: a token naming another algorithm is refused).
 * A token verified once is answered from a bounded cache until its `exp`: the other checks hold
 * for good once they held (the signature, the claims, `nbf`, and the lifetime cap, which only gets
 * easier as time passes); a refused token is never kept.
 * With `maxLifetimeMs`, a token that would stay valid longer than that is refused too: a leaked
 * long-lived token cannot outlive the operator's policy.
 *
 * The check is synchronous (node:crypto's HMAC; jose decodes the header and the claims): jose's
 * own `jwtVerify` runs on WebCrypto, always asynchronous, and an upgrade answered later than its
 * uWS callback goes through `res.cork(() => res.upgrade())`, which uWS 20.30 can end at once
 * (1006) when the socket's memory is reused in place (uWebSockets PR #1929; issue 17's token-cache
 * failures of auth.test.ts). HMAC-SHA-256 of a short token costs microseconds.
 */
export function createTokenVerifier(
  secret: string,
  now: () => number = Date.now,
  options: VerifierOptions = {},
): TokenVerifier {
  const key = keyOf(secret)
  const maxLifetimeMs = options.maxLifetimeMs ?? 0
  const cacheSize = options.cacheSize ?? DEFAULT_VERIFIED_CACHE
  /** Verified claims by token, oldest first (a full cache forgets its oldest). */
  const verified = new Map<string, AccessClaims>()

  const verifyNow = (token: string | undefined): AccessClaims => {
    if (token === undefined || token.length === 0) throw new ColloquyError('unauthorized', 'missing token')
    if (token.length > MAX_TOKEN_LENGTH) throw new ColloquyError('unauthorized', 'token too long')
    const known = verified.get(token)
    if (known !== undefined) {
      if (now() < known.expiresAt) return known
      // Expired since: verified again below, which refuses it the way it refuses any expired token.
      verified.delete(token)
    }
    const claims = verifyFully(token)
    if (cacheSize > 0) {
      if (verified.size >= cacheSize) verified.delete(verified.keys().next().value as string)
      verified.set(token, claims)
    }
    return claims
  }
  return {
    verifyNow,
    verify: async (token) => verifyNow(token),
  }

  /**
   * The header, the signature, and only then the payload (as jose: nothing unsigned is parsed but
   * the header), then the registered claims as jose's `jwtVerify` checks them (no clock tolerance).
   *
   * Stricter than jose on purpose (test/property/token-verifier.test.ts holds the rest equal):
   * - the signature must be spelled exactly as the base64url of the HMAC (RFC 7515 §2: no padding,
   *   no whitespace); jose decodes it leniently and accepts `sig=`, `sig\n`, a space inside, or the
   *   last digit's 2 unused bits set: one token, many spellings, each a new cache entry;
   * - no `b64` nor `crit` header: RFC 7797 (updating RFC 7519) says a JWT MUST NOT use its
   *   unencoded payload, and §6 that `b64` goes with `crit: ["b64"]`; jose ignores a `b64` outside
   *   `crit` (`b64: false` too) and honours `crit: ["b64"]` with `b64: true`. No token minted
   *   here has either;
   * - at most {@link MAX_TOKEN_LENGTH} characters.
   */
  function checkedPayload(token: string): Record<string, unknown> {
    const parts = token.split('.')
    if (parts.length !== 3) throw new ColloquyError('unauthorized', 'invalid token')
    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(token)
    } catch (error) {
      throw new ColloquyError('unauthorized', 'invalid token', { cause: error })
    }
    // Only HS256, and no header parameter this verifier would not understand (`crit`, `b64`).
    if (header.alg !== ALGORITHM || header.crit !== undefined || header.b64 !== undefined) {
      throw new ColloquyError('unauthorized', 'invalid token')
    }
    const expected = Buffer.from(
      createHmac('sha256', key).update(`${parts[0]}.${parts[1]}`).digest('base64url'),
    )
    // Compared in constant time, and only buffers of one length (timingSafeEqual throws otherwise).
    const given = Buffer.from(parts[2] ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ColloquyError('unauthorized', 'invalid token')
    }
    let payload: Record<string, unknown>
    try {
      payload = decodeJwt(token)
    } catch (error) {
      throw new ColloquyError('unauthorized', 'invalid token', { cause: error })
    }
    // jose's order, so that a token is called expired exactly when jose called it so: `sub` and
    // `exp` present and the issuer ours, then the types of `iat` and `nbf`, `nbf`, `exp`'s type,
    // `exp`. What `sub` holds is this project's check, made after (regression: a token with a
    // non-string `sub` and a past `exp` was `unauthorized` here, `token-expired` for jose).
    const nowSeconds = Math.floor(now() / 1000)
    const { iss, exp, nbf, iat } = payload
    if (!Object.hasOwn(payload, 'sub') || !Object.hasOwn(payload, 'exp') || iss !== ISSUER) {
      throw new ColloquyError('unauthorized', 'token claims incomplete')
    }
    if ((nbf !== undefined && typeof nbf !== 'number') || (iat !== undefined && typeof iat !== 'number')) {
      throw new ColloquyError('unauthorized', 'token claims invalid (nbf, iat)')
    }
    if (typeof nbf === 'number' && nbf > nowSeconds) {
      throw new ColloquyError('unauthorized', 'token not valid yet')
    }
    if (typeof exp !== 'number') throw new ColloquyError('unauthorized', 'token claims invalid (exp)')
    // RFC 7519 §4.1.4: not accepted on or after `exp` (jose alike: `exp` equal to now, in whole
    // seconds, is expired; `nbf` equal to now is valid).
    if (exp <= nowSeconds) throw new ColloquyError('token-expired', 'token expired')
    return payload
  }

  function verifyFully(token: string): AccessClaims {
    const payload = checkedPayload(token)
    const { sub, exp, role, kind, sid, spx, tnt, pri } = payload
    const isRole = role === 'read' || role === 'write' || role === 'admin'
    const isKind = kind === 'device' || kind === 'agent'
    const hasScope = (typeof sid === 'string') !== (typeof spx === 'string')
    if (typeof sub !== 'string' || typeof exp !== 'number' || !isRole || !isKind || !hasScope) {
      throw new ColloquyError('unauthorized', 'token claims incomplete')
    }
    // A turn claim that is present but unusable is refused, never read as "no limit".
    if ((tnt !== undefined && !isValidTenant(tnt)) || (pri !== undefined && !isValidPriority(pri))) {
      throw new ColloquyError('unauthorized', 'token turn claims invalid (tnt, pri)')
    }
    if (maxLifetimeMs > 0 && exp * 1000 - now() > maxLifetimeMs) {
      throw new ColloquyError('unauthorized', "token lifetime over the server's maximum")
    }
    return {
      peerId: sub,
      role,
      kind,
      expiresAt: exp * 1000,
      ...(typeof sid === 'string' ? { sessionId: sid } : {}),
      ...(typeof spx === 'string' ? { sessionPrefix: spx } : {}),
      ...(tnt === undefined ? {} : { tenant: tnt }),
      ...(pri === undefined ? {} : { bestPriority: pri }),
    }
  }
}

/** True when the claims cover `sessionId`. */
export function isInScope(claims: AccessClaims, sessionId: string): boolean {
  if (claims.sessionId !== undefined) return claims.sessionId === sessionId
  return claims.sessionPrefix !== undefined && sessionId.startsWith(claims.sessionPrefix)
}

/** True when `role` includes `needed` (admin ⊃ write ⊃ read). */
export function hasRole(role: AccessRole, needed: AccessRole): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed]
}

/** The claims of an anonymous peer on a server without a secret (loopback only). */
export function anonymousClaims(): AccessClaims {
  return {
    peerId: 'anonymous',
    role: 'admin',
    kind: 'device',
    sessionPrefix: '',
    expiresAt: Number.POSITIVE_INFINITY,
  }
}
