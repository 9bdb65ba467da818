import { describe, expect, it } from 'vitest'
import { createAttemptLimiter, createTokenBucket } from '../../../server/limits/token-bucket.js'

describe('token bucket', () => {
  it('allows a burst, then the sustained rate', () => {
    const bucket = createTokenBucket(10, 3, 0)
    expect([1, 2, 3, 4].map(() => bucket.take(1, 0))).toEqual([true, true, true, false])
    expect(bucket.take(1, 100)).toBe(true)
    expect(bucket.take(1, 100)).toBe(false)
  })

  it('is unlimited when its rate or its burst is 0', () => {
    for (const bucket of [createTokenBucket(0, 3, 0), createTokenBucket(10, 0, 0)]) {
      for (let i = 0; i < 10_000; i++) expect(bucket.take(1_000, 0)).toBe(true)
    }
  })
})

describe('attempt limiter', () => {
  it('refuses past its maximum per window, and never when the maximum is 0', () => {
    const limited = createAttemptLimiter(2, 1_000)
    expect([0, 1, 2].map((t) => limited.attempt('a', t))).toEqual([true, true, false])
    expect(limited.attempt('a', 1_000)).toBe(true)
    const open = createAttemptLimiter(0, 1_000)
    for (let i = 0; i < 1_000; i++) expect(open.attempt('a', 0)).toBe(true)
  })
})
