// The turn labels a token allows (issue #17: any token could create turns of any tenant and of class
// 0, jumping every queue and breaking per-tenant fairness): a token's turns go to its `tnt` tenant
// and no better than its `pri` class; a plain write token's to tenant `default`, class 1 at best;
// an admin token without `tnt` (or a server without tokens) names any tenant and class.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { anonymousClaims } from '../../../server/auth/tokens.js'
import { labelsFor, ScopeMode, turnScopeOf, UNKNOWN_WRITER_SCOPE } from '../../../server/auth/turn-scope.js'
import { ColloquyError } from '../../../shared/errors.js'
import { DEFAULT_TENANT } from '../../../shared/turns/turn.js'

function codeOf(act: () => unknown): string {
  try {
    act()
    return 'allowed'
  } catch (error) {
    return error instanceof ColloquyError ? error.code : `foreign: ${String(error)}`
  }
}

describe('the turn scope of a token', () => {
  it('charges every turn of a tenant token to its tenant, and refuses a request naming another', () => {
    const scope = turnScopeOf({ role: 'write', tenant: 'acme', bestPriority: 0 })
    expect(labelsFor(scope, {}, ScopeMode.Refuse)).toEqual({ tenant: 'acme', priority: 1, isClamped: false })
    expect(labelsFor(scope, { tenant: 'acme', priority: 0 }, ScopeMode.Refuse)).toMatchObject({
      tenant: 'acme',
      priority: 0,
    })
    expect(codeOf(() => labelsFor(scope, { tenant: 'globex' }, ScopeMode.Refuse))).toBe('tenant-forbidden')
  })

  it('refuses a class better than the token allows, and gives a later one when none is asked', () => {
    const batch = turnScopeOf({ role: 'write', tenant: 'acme', bestPriority: 2 })
    expect(codeOf(() => labelsFor(batch, { priority: 0 }, ScopeMode.Refuse))).toBe('priority-forbidden')
    expect(codeOf(() => labelsFor(batch, { priority: 1 }, ScopeMode.Refuse))).toBe('priority-forbidden')
    expect(labelsFor(batch, {}, ScopeMode.Refuse).priority).toBe(2)
    expect(labelsFor(batch, { priority: 2 }, ScopeMode.Refuse).priority).toBe(2)
  })

  it('gives a plain write token the default tenant and class 1 at best', () => {
    const plain = turnScopeOf({ role: 'write' })
    expect(labelsFor(plain, {}, ScopeMode.Refuse)).toMatchObject({ tenant: 'default', priority: 1 })
    expect(labelsFor(plain, { tenant: 'default', priority: 2 }, ScopeMode.Refuse)).toMatchObject({
      tenant: 'default',
      priority: 2,
    })
    expect(codeOf(() => labelsFor(plain, { priority: 0 }, ScopeMode.Refuse))).toBe('priority-forbidden')
    expect(codeOf(() => labelsFor(plain, { tenant: 'acme' }, ScopeMode.Refuse))).toBe('tenant-forbidden')
    expect(UNKNOWN_WRITER_SCOPE).toEqual(plain)
  })

  it('lets an admin token without a tenant, and a server without tokens, name any tenant and class', () => {
    for (const scope of [turnScopeOf({ role: 'admin' }), turnScopeOf(anonymousClaims())]) {
      expect(labelsFor(scope, { tenant: 'acme', priority: 0 }, ScopeMode.Refuse)).toEqual({
        tenant: 'acme',
        priority: 0,
        isClamped: false,
      })
      expect(labelsFor(scope, {}, ScopeMode.Refuse)).toMatchObject({ tenant: 'default', priority: 1 })
    }
    // An admin token with claims is bound by them like any other.
    const bound = turnScopeOf({ role: 'admin', tenant: 'ops', bestPriority: 1 })
    expect(codeOf(() => labelsFor(bound, { tenant: 'acme' }, ScopeMode.Refuse))).toBe('tenant-forbidden')
    expect(codeOf(() => labelsFor(bound, { priority: 0 }, ScopeMode.Refuse))).toBe('priority-forbidden')
  })

  it('clamps instead of refusing for automatic turns, saying it did', () => {
    const scope = turnScopeOf({ role: 'write', tenant: 'acme', bestPriority: 1 })
    expect(labelsFor(scope, { tenant: 'globex', priority: 0 }, ScopeMode.Clamp)).toEqual({
      tenant: 'acme',
      priority: 1,
      isClamped: true,
    })
    expect(labelsFor(scope, { tenant: 'acme', priority: 2 }, ScopeMode.Clamp)).toEqual({
      tenant: 'acme',
      priority: 2,
      isClamped: false,
    })
  })

  it('never lets a token through beyond its claims, whatever it asks (property; SEED=… replays)', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`turn-scope property seed: ${seed}`)
    const tenant = fc.constantFrom('acme', 'globex', DEFAULT_TENANT)
    const priority = fc.integer({ min: 0, max: 2 })
    fc.assert(
      fc.property(
        fc.record(
          { role: fc.constantFrom('read', 'write', 'admin'), tenant, bestPriority: priority },
          { requiredKeys: ['role'] },
        ),
        fc.record({ tenant, priority }, { requiredKeys: [] }),
        fc.constantFrom(ScopeMode.Refuse, ScopeMode.Clamp),
        (claims, requested, mode) => {
          const scope = turnScopeOf(claims)
          const best = claims.bestPriority ?? (claims.role === 'admin' ? 0 : 1)
          const mayName = claims.role === 'admin' && claims.tenant === undefined
          const ownTenant = claims.tenant ?? DEFAULT_TENANT
          const isWithin =
            (mayName || requested.tenant === undefined || requested.tenant === ownTenant) &&
            (requested.priority === undefined || requested.priority >= best)
          let labels: ReturnType<typeof labelsFor>
          try {
            labels = labelsFor(scope, requested, mode)
          } catch (error) {
            // Refused only in refuse mode, and only what goes beyond the claims.
            expect(mode).toBe(ScopeMode.Refuse)
            expect(isWithin).toBe(false)
            expect((error as ColloquyError).code).toMatch(/^(tenant|priority)-forbidden$/)
            return
          }
          expect(labels.priority).toBeGreaterThanOrEqual(best)
          expect(labels.tenant).toBe(mayName ? (requested.tenant ?? DEFAULT_TENANT) : ownTenant)
          expect(labels.isClamped).toBe(!isWithin)
          if (mode === ScopeMode.Refuse) expect(isWithin).toBe(true)
          // What was asked within the claims is what is given.
          if (isWithin && requested.priority !== undefined) expect(labels.priority).toBe(requested.priority)
        },
      ),
      { seed, numRuns: 500 },
    )
  })
})
