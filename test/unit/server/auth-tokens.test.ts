import { SignJWT } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createTokenVerifier, hasRole, isInScope, mintToken } from '../../../server/auth/tokens.js'
import { ColloquyError } from '../../../shared/errors.js'

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
      vi.restoreAllMocks()
    })

    it('answer a token seen before without checking its signature again', async () => {
      const token = await mintToken({ secret, peerId: 'p1', role: 'write', sessionPrefix: 'fleet-' })
      const verifier = createTokenVerifier(secret)
      const checks = vi.spyOn(globalThis.crypto.subtle, 'verify')
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
      const checks = vi.spyOn(globalThis.crypto.subtle, 'verify')
      await verifier.verify(tokens[2]!)
      await verifier.verify(tokens[1]!)
      expect(checks).toHaveBeenCalledTimes(0)
      await verifier.verify(tokens[0]!)
      expect(checks).toHaveBeenCalledTimes(1)
    })
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
