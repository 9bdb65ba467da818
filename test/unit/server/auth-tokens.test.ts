import * as nodeCrypto from 'node:crypto'
import { errors, jwtVerify, SignJWT } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createTokenVerifier,
  hasRole,
  isInScope,
  MAX_TOKEN_LENGTH,
  mintToken,
} from '../../../server/auth/tokens.js'
import { ColloquyError } from '../../../shared/errors.js'

// The verifier's signature check is node:crypto's HMAC and timing-safe compare: counted and
// watched through these wrappers.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>()
  return { ...actual, createHmac: vi.fn(actual.createHmac), timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})
const hmacs = vi.mocked(nodeCrypto.createHmac)
const compares = vi.mocked(nodeCrypto.timingSafeEqual)

const secret = 'test-secret-of-enough-length-0123456789'

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'resolved'
  } catch (error) {
    return error instanceof ColloquyError ? error.code : `foreign: ${String(error)}`
  }
}

describe('access tokens', () => {
  it('round-trip their claims', async () => {
    const token = await mintToken({ secret, peerId: 'p1', role: 'write', kind: 'agent', sessionId: 's1' })
    const claims = await createTokenVerifier(secret).verify(token)
    expect(claims).toMatchObject({ peerId: 'p1', role: 'write', kind: 'agent', sessionId: 's1' })
    expect(claims.expiresAt).toBeGreaterThan(Date.now())
  })

  it('refuse a missing token, a wrong signature, garbage and another algorithm', async () => {
    const verifier = createTokenVerifier(secret)
    expect(await codeOf(verifier.verify(undefined))).toBe('unauthorized')
    expect(await codeOf(verifier.verify('not.a.jwt'))).toBe('unauthorized')
    const foreign = await mintToken({
      secret: 'another-secret-of-enough-length-99',
      peerId: 'p',
      role: 'admin',
      sessionPrefix: '',
    })
    expect(await codeOf(verifier.verify(foreign))).toBe('unauthorized')
    // alg "none": header {"alg":"none"}, no signature.
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x","role":"admin","kind":"device","spx":"","exp":9999999999,"iss":"colloquy"}').toString('base64url')}.`
    expect(await codeOf(verifier.verify(none))).toBe('unauthorized')
  })

  describe('checked once (regression: issue 17, every call checked the same signature again: 17 % of the server during a burst)', () => {
    afterEach(() => {
      hmacs.mockClear()
    })

    it('answer a token seen before without checking its signature again', async () => {
      const token = await mintToken({ secret, peerId: 'p1', role: 'write', sessionPrefix: 'fleet-' })
      const verifier = createTokenVerifier(secret)
      hmacs.mockClear()
      const checks = hmacs
      const first = await verifier.verify(token)
      for (let i = 0; i < 5; i++) expect(await verifier.verify(token)).toEqual(first)
      expect(checks).toHaveBeenCalledTimes(1)
      // A refused token is never kept: checked (and refused) each time.
      const forged = `${token.slice(0, -4)}AAAA`
      expect(await codeOf(verifier.verify(forged))).toBe('unauthorized')
      expect(await codeOf(verifier.verify(forged))).toBe('unauthorized')
      expect(checks).toHaveBeenCalledTimes(3)
    })

    it('still refuse a kept token once it expired, and keep at most cacheSize tokens', async () => {
      let now = Date.now()
      const token = await mintToken({ secret, peerId: 'p', role: 'read', sessionId: 's', ttlSeconds: 60 })
      const verifier = createTokenVerifier(secret, () => now, { cacheSize: 2 })
      expect(await codeOf(verifier.verify(token))).toBe('resolved')
      now += 61_000
      expect(await codeOf(verifier.verify(token))).toBe('token-expired')

      now = Date.now()
      const tokens = await Promise.all(
        ['a', 'b', 'c'].map((peerId) => mintToken({ secret, peerId, role: 'read', sessionId: 's' })),
      )
      for (const t of tokens) await verifier.verify(t)
      hmacs.mockClear()
      const checks = hmacs
      await verifier.verify(tokens[2]!)
      await verifier.verify(tokens[1]!)
      expect(checks).toHaveBeenCalledTimes(0)
      await verifier.verify(tokens[0]!)
      expect(checks).toHaveBeenCalledTimes(1)
    })
  })

  it('answer synchronously, refusing a token not valid yet, of another issuer, or with a crit header', async () => {
    const verifier = createTokenVerifier(secret)
    const token = await mintToken({ secret, peerId: 'p1', role: 'write', sessionId: 's1' })
    expect(verifier.verifyNow(token)).toMatchObject({ peerId: 'p1', sessionId: 's1' })
    const key = new TextEncoder().encode(secret)
    const claims = { role: 'write', kind: 'device', sid: 's1' }
    const sign = (jwt: SignJWT) => jwt.setSubject('p').setIssuedAt().setExpirationTime('1h').sign(key)
    const notYet = await sign(
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer('colloquy').setNotBefore('10m'),
    )
    const otherIssuer = await sign(
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer('someone'),
    )
    // A header extension this verifier does not know (jose will not sign one): signed by hand.
    const signingInput = `${Buffer.from('{"alg":"HS256","crit":["x"],"x":1}').toString('base64url')}.${token.split('.')[1]}`
    const crit = `${signingInput}.${nodeCrypto.createHmac('sha256', key).update(signingInput).digest('base64url')}`
    for (const refused of [notYet, otherIssuer, crit, `${token}x`, `${token.slice(0, -1)}=`]) {
      expect(() => verifier.verifyNow(refused), refused).toThrow(ColloquyError)
      expect(await codeOf(verifier.verify(refused))).toBe('unauthorized')
    }
  })

  it('tell an expired token apart', async () => {
    const past = Date.now() - 7_200_000
    const token = await mintToken({
      secret,
      peerId: 'p',
      role: 'read',
      sessionId: 's',
      ttlSeconds: 60,
      now: () => past,
    })
    expect(await codeOf(createTokenVerifier(secret).verify(token))).toBe('token-expired')
  })

  it('call a token with a non-string sub and a past exp expired, as jose did (regression: verifyNow called it unauthorized)', async () => {
    const key = new TextEncoder().encode(secret)
    const nowMs = 1_800_000_000_250
    const verifier = createTokenVerifier(secret, () => nowMs)
    for (const sub of [null, 7, ['p']]) {
      // exp equal to now in whole seconds: expired (RFC 7519 §4.1.4: "on or after").
      const token = await new SignJWT({ sub, role: 'read', kind: 'device', sid: 's' } as Record<
        string,
        unknown
      >)
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('colloquy')
        .setExpirationTime(Math.floor(nowMs / 1000))
        .sign(key)
      expect(() => verifier.verifyNow(token)).toThrow(expect.objectContaining({ code: 'token-expired' }))
      const joseSays = await jwtVerify(token, key, {
        algorithms: ['HS256'],
        issuer: 'colloquy',
        currentDate: new Date(nowMs),
        requiredClaims: ['sub', 'exp'],
      }).catch((error: unknown) => error)
      expect(joseSays).toBeInstanceOf(errors.JWTExpired)
    }
  })

  it('scope a token to one session or a prefix', async () => {
    const verifier = createTokenVerifier(secret)
    const one = await verifier.verify(
      await mintToken({ secret, peerId: 'p', role: 'read', sessionId: 'team:a' }),
    )
    expect(isInScope(one, 'team:a')).toBe(true)
    expect(isInScope(one, 'team:ab')).toBe(false)
    const prefix = await verifier.verify(
      await mintToken({ secret, peerId: 'p', role: 'read', sessionPrefix: 'team:' }),
    )
    expect(isInScope(prefix, 'team:b')).toBe(true)
    expect(isInScope(prefix, 'other')).toBe(false)
    await expect(mintToken({ secret, peerId: 'p', role: 'read' })).rejects.toThrow(/exactly one/)
  })

  it('order roles admin ⊃ write ⊃ read', () => {
    expect(hasRole('admin', 'write')).toBe(true)
    expect(hasRole('write', 'read')).toBe(true)
    expect(hasRole('read', 'write')).toBe(false)
    expect(hasRole('write', 'admin')).toBe(false)
  })
})

describe('the turn claims of a token (tnt, pri)', () => {
  it('round-trip, and are absent from a token minted without them', async () => {
    const verifier = createTokenVerifier(secret)
    const token = await mintToken({
      secret,
      peerId: 'p',
      role: 'write',
      sessionPrefix: 'acme:',
      tenant: 'acme',
      bestPriority: 2,
    })
    expect(await verifier.verify(token)).toMatchObject({ tenant: 'acme', bestPriority: 2 })
    const plain = await verifier.verify(
      await mintToken({ secret, peerId: 'p', role: 'write', sessionId: 's' }),
    )
    expect(plain.tenant).toBeUndefined()
    expect(plain.bestPriority).toBeUndefined()
  })

  it('are checked when minting', async () => {
    const base = { secret, peerId: 'p', role: 'write', sessionId: 's' } as const
    await expect(mintToken({ ...base, tenant: 'no spaces' })).rejects.toThrow(/tenant/)
    await expect(mintToken({ ...base, bestPriority: 3 })).rejects.toThrow(/priority/)
    await expect(mintToken({ ...base, bestPriority: 0.5 })).rejects.toThrow(/priority/)
  })

  it('refuse a signed token whose turn claims are unusable rather than read them as no limit', async () => {
    const verifier = createTokenVerifier(secret)
    const key = new TextEncoder().encode(secret)
    const signed = (claims: Record<string, unknown>) =>
      new SignJWT({ role: 'write', kind: 'device', spx: '', ...claims })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('p')
        .setIssuer('colloquy')
        .setExpirationTime('1h')
        .sign(key)
    expect(await codeOf(verifier.verify(await signed({ pri: '0' })))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await signed({ pri: -1 })))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await signed({ tnt: 7 })))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await signed({ tnt: '' })))).toBe('unauthorized')
    expect(await verifier.verify(await signed({ tnt: 'a', pri: 0 }))).toMatchObject({
      tenant: 'a',
      bestPriority: 0,
    })
  })
})

describe('hostile tokens', () => {
  const key = new TextEncoder().encode(secret)
  const b64u = (text: string) => Buffer.from(text).toString('base64url')
  const signed = (header: string, payload: string) => {
    const input = `${b64u(header)}.${b64u(payload)}`
    return `${input}.${nodeCrypto.createHmac('sha256', key).update(input).digest('base64url')}`
  }
  afterEach(() => {
    hmacs.mockClear()
    compares.mockClear()
  })

  it('compare signatures in constant time only when both have one length, and never throw on the others', async () => {
    const verifier = createTokenVerifier(secret, Date.now, { cacheSize: 0 })
    const token = await mintToken({ secret, peerId: 'p', role: 'read', sessionId: 's' })
    const [header, payload, signature] = token.split('.') as [string, string, string]
    // 43 characters but 44 bytes; 42 characters and 43 bytes; shorter; longer; empty; huge.
    const signatures = [
      `${signature.slice(0, -1)}é`,
      `${signature.slice(0, -2)}é`,
      signature.slice(0, 20),
      `${signature}AAAA`,
      '',
      'A'.repeat(4_000),
    ]
    for (const forged of signatures) {
      expect(() => verifier.verifyNow(`${header}.${payload}.${forged}`)).toThrow(
        expect.objectContaining({ code: 'unauthorized' }),
      )
    }
    expect(compares.mock.calls.length).toBeGreaterThan(0)
    for (const [a, b] of compares.mock.calls) expect((a as Buffer).length).toBe((b as Buffer).length)
  })

  it('refuse a token over MAX_TOKEN_LENGTH before decoding anything, however it is made (a 1 MB one too)', () => {
    const verifier = createTokenVerifier(secret, Date.now, { cacheSize: 0 })
    const big = 'x'.repeat(1_000_000)
    const giants = [
      'a'.repeat(1_000_000),
      '.'.repeat(1_000_000),
      signed('{"alg":"HS256"}', `{"sub":"p","iss":"colloquy","exp":9999999999,"x":"${big}"}`),
      `${b64u('{"alg":"HS256"}')}.${b64u(`${'['.repeat(500_000)}${']'.repeat(500_000)}`)}.AAAA`,
      signed('{"alg":"HS256"}', '{}').padEnd(MAX_TOKEN_LENGTH + 1, 'A'),
    ]
    hmacs.mockClear()
    const started = performance.now()
    for (let round = 0; round < 20; round++) {
      for (const giant of giants) {
        expect(() => verifier.verifyNow(giant)).toThrow(expect.objectContaining({ code: 'unauthorized' }))
      }
    }
    expect(hmacs).not.toHaveBeenCalled()
    // 100 refusals: a length test each (decoding them took 8-120 ms apiece).
    expect(performance.now() - started).toBeLessThan(1_000)
  })

  it('accept a signed token of exactly MAX_TOKEN_LENGTH characters, and mint none longer', async () => {
    const verifier = createTokenVerifier(secret)
    const claims = `"role":"read","kind":"device","sid":"s","iss":"colloquy","exp":9999999999`
    const withSub = (sub: string) => signed('{"alg":"HS256"}', `{"sub":"${sub}",${claims}}`)
    // base64url grows by 4 characters per 3 bytes: the one peer id whose token is exactly the limit.
    const estimate = Math.floor(((MAX_TOKEN_LENGTH - withSub('').length) * 3) / 4)
    const fill = [0, 1, 2, -1, -2]
      .map((delta) => 'p'.repeat(estimate + delta))
      .find((sub) => withSub(sub).length === MAX_TOKEN_LENGTH) as string
    const longest = withSub(fill)
    expect(longest.length).toBe(MAX_TOKEN_LENGTH)
    expect(verifier.verifyNow(longest).peerId).toBe(fill)
    await expect(
      mintToken({ secret, peerId: 'p'.repeat(MAX_TOKEN_LENGTH), role: 'read', sessionId: 's' }),
    ).rejects.toThrow(/at most 8192 characters/)
  })

  it("check the signature before parsing the payload (regression: a forged token's payload was parsed first)", () => {
    const verifier = createTokenVerifier(secret, Date.now, { cacheSize: 0 })
    const nested = `${'['.repeat(2_000)}${']'.repeat(2_000)}`
    const forged = `${b64u('{"alg":"HS256"}')}.${b64u(nested)}.${'A'.repeat(43)}`
    const parse = vi.spyOn(JSON, 'parse')
    try {
      expect(() => verifier.verifyNow(forged)).toThrow(expect.objectContaining({ code: 'unauthorized' }))
      // The header only.
      expect(parse.mock.calls.map(([text]) => text)).toEqual(['{"alg":"HS256"}'])
    } finally {
      parse.mockRestore()
    }
  })
})

describe('the verified-token cache', () => {
  afterEach(() => {
    hmacs.mockClear()
  })

  it('answer a kept token until the millisecond its exp begins, then call it expired', async () => {
    const exp = 1_800_000_060
    let now = (exp - 60) * 1000
    const token = await mintToken({
      secret,
      peerId: 'p',
      role: 'read',
      sessionId: 's',
      ttlSeconds: 60,
      now: () => now,
    })
    const verifier = createTokenVerifier(secret, () => now)
    verifier.verifyNow(token)
    hmacs.mockClear()
    now = exp * 1000 - 1
    expect(verifier.verifyNow(token).expiresAt).toBe(exp * 1000)
    expect(hmacs).not.toHaveBeenCalled()
    now = exp * 1000
    expect(() => verifier.verifyNow(token)).toThrow(expect.objectContaining({ code: 'token-expired' }))
    now = exp * 1000 - 1
    // Not kept once refused: checked afresh (and valid again only for a clock that went back).
    hmacs.mockClear()
    verifier.verifyNow(token)
    expect(hmacs).toHaveBeenCalledTimes(1)
  })

  it('keep no answer for a token refused earlier: one not valid yet is accepted once its nbf comes', async () => {
    let now = 1_800_000_000_000
    const verifier = createTokenVerifier(secret, () => now)
    const token = await new SignJWT({ role: 'write', kind: 'device', sid: 's' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('p')
      .setIssuer('colloquy')
      .setNotBefore(now / 1000 + 10)
      .setExpirationTime(now / 1000 + 3600)
      .sign(new TextEncoder().encode(secret))
    expect(() => verifier.verifyNow(token)).toThrow(/not valid yet/)
    expect(() => verifier.verifyNow(token)).toThrow(/not valid yet/)
    now += 10_000
    expect(verifier.verifyNow(token).peerId).toBe('p')
    expect(hmacs).toHaveBeenCalledTimes(3)
  })
})
