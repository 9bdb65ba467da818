// Differential property: the synchronous token verifier (`verifyNow`: node:crypto's HMAC, jose only
// decodes) accepts exactly the tokens jose's own `jwtVerify` accepts with the options the server
// used before (HS256 only, issuer `colloquy`, `sub` and `exp` required, no clock tolerance, the same
// clock), followed by this project's claim checks; and it tells `token-expired` apart exactly where
// jose throws JWTExpired. Tokens are valid ones mutated: claims, header, signature, segments.
// The only disagreements allowed are the ones decided in server/auth/tokens.ts: a signature spelled
// other than canonical base64url, the `b64` / `crit` header parameters, and a token over 8 KiB
// (see isRefusedOnPurpose). 2,000 tokens, seed 1712, in about 1.5 s; RUNS=20000 SEED=n for more.

import { createHmac } from 'node:crypto'
import fc from 'fast-check'
import { errors, jwtVerify, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { createTokenVerifier, MAX_TOKEN_LENGTH, mintToken } from '../../server/auth/tokens.js'
import { ColloquyError } from '../../shared/errors.js'
import { isValidPriority, isValidTenant } from '../../shared/turns/turn.js'

const SECRET = 'property-secret-of-enough-length-0123456789'
const OTHER_SECRET = 'another-secret-of-enough-length-9876543210'
const KEY = new TextEncoder().encode(SECRET)
/** A fixed second of the test's clock; the milliseconds inside it are drawn. */
const NOW_SECONDS = 1_800_000_000

type Answer = 'accepted' | 'token-expired' | 'unauthorized'

/** A JSON value written as given (`1e400`, `-0`, a long integer): JSON.stringify cannot write those. */
interface Raw {
  readonly raw: string
}
type ClaimValue = unknown | Raw
const isRaw = (value: unknown): value is Raw =>
  typeof value === 'object' && value !== null && 'raw' in value && Object.keys(value).length === 1

/** An object as JSON text, raw values written as they are; `undefined` members left out. */
function jsonOf(members: Readonly<Record<string, ClaimValue>>): string {
  const written = Object.entries(members)
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => `${JSON.stringify(name)}:${isRaw(value) ? value.raw : JSON.stringify(value)}`)
  return `{${written.join(',')}}`
}

const b64u = (text: string | Buffer): string => Buffer.from(text).toString('base64url')
const hmac = (secret: string, input: string): string =>
  createHmac('sha256', secret).update(input).digest('base64url')

// ---- What a token is made of, before mutation --------------------------------------------------

/** A wrong-typed value for any claim or header member. */
const wrongType: fc.Arbitrary<ClaimValue> = fc.constantFrom<ClaimValue>(
  null,
  true,
  '',
  '1800000000',
  [],
  ['x'],
  {},
  0,
  -1,
  1.5,
  { raw: '1e400' },
  { raw: '-1e400' },
  'ünïcødé',
)

/** A claim that is kept, dropped, or replaced by a wrong type. */
const claim = (valid: fc.Arbitrary<ClaimValue>): fc.Arbitrary<ClaimValue> =>
  fc.oneof(
    { weight: 40, arbitrary: valid },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: wrongType },
  )

/** Absent mostly; present once in `odds` tokens. */
const rarely = <T>(present: fc.Arbitrary<T>, odds: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: odds - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: present })

/** A time claim near now: ± 0–2 s (whole or fractional seconds), or far off, or huge. */
const timeNear = (center: number): fc.Arbitrary<ClaimValue> =>
  fc.oneof(
    fc.integer({ min: -2, max: 2 }).map((delta) => center + delta),
    fc.integer({ min: -2000, max: 2000 }).map((delta) => center + delta / 1000),
    fc.constantFrom<ClaimValue>(
      center + 3600,
      center - 3600,
      NOW_SECONDS + 86_400 * 365,
      { raw: '1e400' },
      { raw: '-1e400' },
      { raw: '1e21' },
      { raw: '18000000000000000000000' },
      { raw: `${NOW_SECONDS}.0000000000000001` },
      { raw: `${NOW_SECONDS}e0` },
      { raw: '-0' },
      Number.MAX_SAFE_INTEGER,
    ),
  )

const claimsArbitrary = fc.record({
  sub: claim(
    fc.oneof({ weight: 9, arbitrary: fc.constant('p1') }, fc.constantFrom('', 'ünïcødé', 'x'.repeat(300))),
  ),
  iss: claim(
    fc.oneof(
      { weight: 12, arbitrary: fc.constant('colloquy') },
      fc.constantFrom('Colloquy', 'someone', ' colloquy'),
    ),
  ),
  exp: claim(fc.oneof(timeNear(NOW_SECONDS), timeNear(NOW_SECONDS + 3600))),
  nbf: rarely(claim(timeNear(NOW_SECONDS)), 3),
  iat: fc.oneof(fc.constant(undefined), claim(timeNear(NOW_SECONDS))),
  role: claim(
    fc.oneof({ weight: 15, arbitrary: fc.constantFrom('read', 'write', 'admin') }, fc.constant('owner')),
  ),
  kind: claim(fc.oneof({ weight: 10, arbitrary: fc.constantFrom('device', 'agent') }, fc.constant('robot'))),
  scope: fc.oneof(
    { weight: 8, arbitrary: fc.record({ sid: claim(fc.constantFrom('s1', 'team:a')) }) },
    { weight: 8, arbitrary: fc.record({ spx: claim(fc.constantFrom('', 'team:')) }) },
    { weight: 1, arbitrary: fc.constant({ sid: 's1', spx: '' }) },
    { weight: 1, arbitrary: fc.constant({}) },
  ),
  tnt: rarely(
    claim(fc.oneof({ weight: 6, arbitrary: fc.constant('acme') }, fc.constantFrom('no spaces', ''))),
    3,
  ),
  pri: rarely(
    claim(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1, 2) }, fc.constantFrom(3, 0.5, '0'))),
    3,
  ),
  extra: rarely(fc.constantFrom<ClaimValue>('x', 1, { nested: true }, ['a']), 3),
  proto: rarely(fc.constant<ClaimValue>({ raw: '{"sub":"p2"}' }), 20),
})

/** The payload segment's text: the claims, or something that is no claims object. */
const payloadText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 12,
    arbitrary: claimsArbitrary.map(({ proto, extra, scope, ...claims }) =>
      jsonOf({ ...claims, ...scope, extra, ['__proto__']: proto }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '[]',
      `[{"sub":"p1","iss":"colloquy","exp":${NOW_SECONDS + 60}}]`,
      '5',
      '1e400',
      'null',
      '"colloquy"',
      '{',
      '{"sub":"p1",}',
      `{"sub":"p1","role":"admin","kind":"device","spx":"","iss":"colloquy","exp":${NOW_SECONDS + 60},"exp":${NOW_SECONDS - 60}}`,
      `{"sub":"p1","role":"admin","kind":"device","spx":"","iss":"colloquy","exp":${NOW_SECONDS - 60},"exp":${NOW_SECONDS + 60}}`,
      ' {"sub":"p1","role":"read","kind":"device","sid":"s1","iss":"colloquy","exp":1900000000} ',
    ),
  },
)

/** The header segment's text: `{"alg":"HS256"}` with members changed, or no header object. */
const headerText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .record({
        alg: fc.oneof(
          { weight: 8, arbitrary: fc.constant<ClaimValue>('HS256') },
          {
            weight: 1,
            arbitrary: fc.constantFrom<ClaimValue>(
              'none',
              'HS384',
              'HS512',
              'RS256',
              'hs256',
              '',
              undefined,
              256,
            ),
          },
        ),
        typ: rarely(fc.constantFrom<ClaimValue>('JWT', 'at+jwt', 5), 3),
        kid: rarely(fc.constantFrom<ClaimValue>('k1', '', 7), 4),
        crit: rarely(fc.constantFrom<ClaimValue>(['b64'], ['b64', 'b64'], ['x'], [], 'b64', [''], null), 15),
        b64: rarely(fc.constantFrom<ClaimValue>(true, false, 'true', null), 15),
        x: rarely(fc.constantFrom<ClaimValue>(1, 'ünïcødé', { deep: [1] }), 4),
      })
      .map((header) => jsonOf(header)),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      '[]',
      '5',
      'null',
      '{',
      '{"alg":"HS256","alg":"none"}',
      '{"alg":"none","alg":"HS256"}',
    ),
  },
)

/** How a segment's text becomes its base64url, or something close to it. */
const segmentEncoding = fc.oneof(
  { weight: 14, arbitrary: fc.constant((text: string) => b64u(text)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      (text: string) => `${b64u(text)}=`,
      (text: string) => `${b64u(text)}==`,
      (text: string) => Buffer.from(text).toString('base64'),
      (text: string) => ` ${b64u(text)}`,
      (text: string) => `${b64u(text).slice(0, 4)} \n${b64u(text).slice(4)}`,
      (text: string) => `${b64u(text)}*`,
      (text: string) => `${b64u(text)}é`,
      (text: string) => b64u(text).slice(0, -1),
      (text: string) => text,
    ),
  },
)

/** The 43 base64url characters of an HMAC-SHA-256, the last one carrying 4 bits and 2 zero bits. */
const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
/** The characters a base64url digit whose 2 low bits differ decodes the same as (last position). */
const SAME_LAST_BITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

type SignatureMutation = (signature: string, bit: number) => string
/** What is done to the signature segment after signing. */
const signatureMutation: fc.Arbitrary<SignatureMutation> = fc.oneof(
  { weight: 10, arbitrary: fc.constant<SignatureMutation>((signature) => signature) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<SignatureMutation>(
      (signature, bit) => {
        const bytes = Buffer.from(signature, 'base64url')
        if (bytes.length === 0) return signature
        bytes[(bit >> 3) % bytes.length]! ^= 1 << (bit & 7)
        return bytes.toString('base64url')
      },
      (signature) => signature.slice(0, -1),
      (signature) => signature.slice(0, 22),
      () => '',
      (signature) => `${signature}=`,
      (signature) => `${signature}==`,
      (signature) => `${signature}A`,
      (signature) => `${signature.slice(0, 10)} ${signature.slice(10)}`,
      (signature) => `${signature}\n`,
      (signature) => signature.replaceAll('-', '+').replaceAll('_', '/'),
      (signature) => `${signature.slice(0, -1)}*`,
      (signature) => `${signature.slice(0, -1)}é`,
      (signature) => signature.toUpperCase(),
      // Same bytes, another spelling: the last digit's 2 unused bits set.
      (signature, bit) => {
        const last = SAME_LAST_BITS.indexOf(signature.at(-1) ?? '')
        if (last < 0) return signature
        return `${signature.slice(0, -1)}${SAME_LAST_BITS[(last & ~3) | ((bit % 3) + 1)]}`
      },
    ),
  },
)

type Assembly = (header: string, payload: string, signature: string) => string
/** How the three segments are put together. */
const assembly: fc.Arbitrary<Assembly> = fc.oneof(
  { weight: 14, arbitrary: fc.constant<Assembly>((h, p, s) => `${h}.${p}.${s}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Assembly>(
      (h, p) => `${h}.${p}`,
      (h, p, s) => `${h}.${p}.${s}.`,
      (h, p, s) => `${h}.${p}.${s}.${s}`,
      (h, p, s) => `${h}.${p}.${s}..`,
      (h, p, s) => `${h}..${p}.${s}`,
      (_h, p, s) => `.${p}.${s}`,
      (h, _p, s) => `${h}..${s}`,
      (h, p, s) => ` ${h}.${p}.${s}`,
      (h, p, s) => `${h}.${p}.${s} `,
      (h, p, s) => `Bearer ${h}.${p}.${s}`,
      () => '',
      () => '...',
    ),
  },
)

const tokenArbitrary = fc
  .record({
    header: headerText,
    payload: payloadText,
    encodeHeader: segmentEncoding,
    encodePayload: segmentEncoding,
    signer: fc.oneof(
      { weight: 12, arbitrary: fc.constant(SECRET) },
      { weight: 1, arbitrary: fc.constantFrom(OTHER_SECRET, 'none') },
    ),
    mutate: signatureMutation,
    bit: fc.nat(255),
    assemble: assembly,
  })
  .map(({ header, payload, encodeHeader, encodePayload, signer, mutate, bit, assemble }) => {
    const signingInput = `${encodeHeader(header)}.${encodePayload(payload)}`
    const signature = signer === 'none' ? '' : hmac(signer, signingInput)
    const [h, p] = [encodeHeader(header), encodePayload(payload)]
    return assemble(h, p, mutate(signature, bit))
  })

// ---- The two answers ---------------------------------------------------------------------------

/** `verifyNow`'s answer. */
function answerOf(verify: () => unknown): Answer {
  try {
    verify()
    return 'accepted'
  } catch (error) {
    if (!(error instanceof ColloquyError)) throw error
    expect(['unauthorized', 'token-expired']).toContain(error.code)
    return error.code as Answer
  }
}

/** This project's claim checks, after jose's: what the claims must be to make an AccessClaims. */
function projectChecksPass(payload: Record<string, unknown>, nowMs: number, maxLifetimeMs: number): boolean {
  const { sub, exp, role, kind, sid, spx, tnt, pri } = payload
  return (
    typeof sub === 'string' &&
    typeof exp === 'number' &&
    (role === 'read' || role === 'write' || role === 'admin') &&
    (kind === 'device' || kind === 'agent') &&
    (typeof sid === 'string') !== (typeof spx === 'string') &&
    (tnt === undefined || isValidTenant(tnt)) &&
    (pri === undefined || isValidPriority(pri)) &&
    !(maxLifetimeMs > 0 && exp * 1000 - nowMs > maxLifetimeMs)
  )
}

/** jose's answer with the options the server used before, then the project's checks. */
async function joseAnswerOf(token: string, nowMs: number, maxLifetimeMs: number): Promise<Answer> {
  try {
    const { payload } = await jwtVerify(token, KEY, {
      algorithms: ['HS256'],
      issuer: 'colloquy',
      currentDate: new Date(nowMs),
      requiredClaims: ['sub', 'exp'],
    })
    return projectChecksPass(payload, nowMs, maxLifetimeMs) ? 'accepted' : 'unauthorized'
  } catch (error) {
    if (error instanceof errors.JWTExpired) return 'token-expired'
    if (error instanceof errors.JOSEError || error instanceof TypeError) return 'unauthorized'
    throw error
  }
}

/**
 * Tokens jose accepts and `verifyNow` refuses on purpose (server/auth/tokens.ts): a signature not
 * spelled as the one canonical base64url of its 32 bytes (padding, whitespace, the last digit's
 * unused bits; RFC 7515 §2 allows none of them), and a header with `b64` or `crit` (RFC 7797's
 * extension: jose honours `crit: ["b64"]` with `b64: true` and ignores a `b64` outside `crit`),
 * and a token longer than MAX_TOKEN_LENGTH.
 */
function isRefusedOnPurpose(token: string): boolean {
  if (token.length > MAX_TOKEN_LENGTH) return true
  const parts = token.split('.')
  if (parts.length !== 3) return false
  if (!CANONICAL_SIGNATURE.test(parts[2]!)) return true
  try {
    const header: Record<string, unknown> = JSON.parse(Buffer.from(parts[0]!, 'base64').toString())
    return header.b64 !== undefined || header.crit !== undefined
  } catch {
    return false
  }
}

describe('the synchronous token verifier, against jose', () => {
  it('accepts, refuses and calls expired exactly the tokens jose does, but for those it refuses on purpose', async () => {
    const tally = { accepted: 0, 'token-expired': 0, unauthorized: 0, onPurpose: 0 }
    // One verifier without cache, one kept across runs with its cache: they must answer alike.
    const cachedClock = { now: 0 }
    const cached = createTokenVerifier(SECRET, () => cachedClock.now, { cacheSize: 64 })
    await fc.assert(
      fc.asyncProperty(
        tokenArbitrary,
        fc.integer({ min: 0, max: 999 }),
        fc.constantFrom(0, 0, 3_600_000, 1_000),
        async (token, milliseconds, maxLifetimeMs) => {
          const nowMs = NOW_SECONDS * 1000 + milliseconds
          const fresh = createTokenVerifier(SECRET, () => nowMs, { cacheSize: 0, maxLifetimeMs })
          const ours = answerOf(() => fresh.verifyNow(token))
          const jose = await joseAnswerOf(token, nowMs, maxLifetimeMs)
          if (ours !== jose) {
            // Stricter only: jose accepts (or calls expired) what verifyNow refuses on purpose.
            expect({ token, ours, jose, onPurpose: isRefusedOnPurpose(token) }).toEqual({
              token,
              ours: 'unauthorized',
              jose,
              onPurpose: true,
            })
            tally.onPurpose++
          }
          tally[ours]++
          if (maxLifetimeMs === 0) {
            // Asked twice of a verifier with a cache (the second answer may come from it): the same.
            cachedClock.now = nowMs
            expect(
              answerOf(() => cached.verifyNow(token)),
              token,
            ).toBe(ours)
            expect(
              answerOf(() => cached.verifyNow(token)),
              token,
            ).toBe(ours)
          }
        },
      ),
      { numRuns: Number(process.env.RUNS ?? 2_000), seed: Number(process.env.SEED ?? 1712) },
    )
    // The generator reaches every answer, and the mutations do not all make garbage.
    expect(tally.accepted).toBeGreaterThan(100)
    expect(tally['token-expired']).toBeGreaterThan(50)
    expect(tally.unauthorized).toBeGreaterThan(300)
    expect(tally.onPurpose).toBeGreaterThan(0)
  })

  it('refuses what jose accepts only where tokens.ts says so: respelled signatures, b64 and crit, over 8 KiB', async () => {
    const valid = await mintToken({
      secret: SECRET,
      peerId: 'p',
      role: 'read',
      sessionId: 's',
      now: () => NOW_SECONDS * 1000,
    })
    const [header, payload, signature] = valid.split('.') as [string, string, string]
    const last = SAME_LAST_BITS.indexOf(signature.at(-1) as string)
    const withHeader = (members: string) => {
      const input = `${b64u(members)}.${payload}`
      return `${input}.${hmac(SECRET, input)}`
    }
    const stricter = {
      padded: `${valid}=`,
      'space inside the signature': `${header}.${payload}.${signature.slice(0, 9)} ${signature.slice(9)}`,
      'newline after it': `${valid}\n`,
      'last digit respelled (same bytes)': `${header}.${payload}.${signature.slice(0, -1)}${SAME_LAST_BITS[last | 1]}`,
      'b64 true, no crit': withHeader('{"alg":"HS256","b64":true}'),
      'b64 false, no crit': withHeader('{"alg":"HS256","b64":false}'),
      'crit b64, b64 true': withHeader('{"alg":"HS256","crit":["b64"],"b64":true}'),
      'over MAX_TOKEN_LENGTH': withHeader(`{"alg":"HS256","kid":"${'k'.repeat(MAX_TOKEN_LENGTH)}"}`),
    }
    const nowMs = NOW_SECONDS * 1000 + 1
    const verifier = createTokenVerifier(SECRET, () => nowMs)
    expect(answerOf(() => verifier.verifyNow(valid))).toBe('accepted')
    for (const [name, token] of Object.entries(stricter)) {
      expect({ name, jose: await joseAnswerOf(token, nowMs, 0) }).toEqual({ name, jose: 'accepted' })
      expect({ name, ours: answerOf(() => verifier.verifyNow(token)) }).toEqual({
        name,
        ours: 'unauthorized',
      })
      expect(isRefusedOnPurpose(token), name).toBe(true)
    }
  })

  it('answers from its cache as it would afresh, at every moment of a valid token’s life and after', async () => {
    await fc.assert(
      fc.asyncProperty(
        // exp in whole or fractional seconds; the moments asked at, in order, around it.
        fc.oneof(
          fc.integer({ min: 1, max: 5 }).map((seconds) => seconds * 1000),
          fc.integer({ min: 1_000, max: 5_000 }),
        ),
        fc.array(
          fc.oneof(
            fc.integer({ min: -3_000, max: 3_000 }),
            fc.constantFrom(-1_001, -1_000, -999, -1, 0, 1, 999, 1_000),
          ),
          { minLength: 1, maxLength: 12 },
        ),
        fc.constantFrom(0, 500, 1_000),
        async (expMs, offsets, nbfBeforeExpMs) => {
          const exp = NOW_SECONDS + expMs / 1000
          const token = await new SignJWT({ role: 'read', kind: 'device', sid: 's' })
            .setProtectedHeader({ alg: 'HS256' })
            .setSubject('p')
            .setIssuer('colloquy')
            .setNotBefore(exp - nbfBeforeExpMs / 1000)
            .setExpirationTime(exp)
            .sign(KEY)
          let nowMs = 0
          const cached = createTokenVerifier(SECRET, () => nowMs)
          for (const offset of [...offsets].sort((a, b) => a - b)) {
            nowMs = Math.round(exp * 1000) + offset
            const fresh = createTokenVerifier(SECRET, () => nowMs, { cacheSize: 0 })
            expect(
              answerOf(() => cached.verifyNow(token)),
              `at ${offset} ms from exp`,
            ).toBe(answerOf(() => fresh.verifyNow(token)))
          }
        },
      ),
      { numRuns: 300, seed: 1712 },
    )
  })
})
