import { describe, expect, it } from 'vitest'
import { backoffDelay, DEFAULT_BACKOFF, maxBackoffDelay, resolveBackoff } from '../../../client/backoff.js'

describe('backoff', () => {
  const options = resolveBackoff({ initialMs: 100, maxMs: 5_000, jitter: 0.5 })

  it('doubles from the initial delay and never passes the cap', () => {
    const noJitter = resolveBackoff({ initialMs: 100, maxMs: 5_000, jitter: 0 })
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => backoffDelay(attempt, noJitter))).toEqual([
      100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000,
    ])
    expect(backoffDelay(10_000, noJitter)).toBe(5_000)
    expect(backoffDelay(0, noJitter)).toBe(100)
  })

  it('jitters each delay down by at most the jitter fraction', () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const capped = Math.min(5_000, 100 * 2 ** (attempt - 1))
      expect(backoffDelay(attempt, options, () => 0)).toBe(capped)
      // random() < 1, so the lowest value is approached, not reached.
      expect(backoffDelay(attempt, options, () => 0.999_999)).toBe(Math.round(capped * 0.5))
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt, options)
        expect(delay).toBeGreaterThanOrEqual(Math.floor(capped * 0.5))
        expect(delay).toBeLessThanOrEqual(capped)
      }
    }
  })

  it('spreads delays over the jitter range', () => {
    const delays = new Set(Array.from({ length: 200 }, () => backoffDelay(3, options)))
    // 400 ms jittered over [200, 400]: 200 draws give many distinct values.
    expect(delays.size).toBeGreaterThan(50)
  })

  it('waits the cap, jittered, after a non-retryable close', () => {
    for (let i = 0; i < 100; i++) {
      const delay = maxBackoffDelay(options)
      expect(delay).toBeGreaterThanOrEqual(2_500)
      expect(delay).toBeLessThanOrEqual(5_000)
    }
    expect(maxBackoffDelay(options, () => 0)).toBe(5_000)
  })

  it('fills in defaults and rejects options that make no sense', () => {
    expect(resolveBackoff()).toEqual(DEFAULT_BACKOFF)
    expect(resolveBackoff({ maxMs: 60_000 })).toEqual({ ...DEFAULT_BACKOFF, maxMs: 60_000 })
    expect(() => resolveBackoff({ initialMs: 1_000, maxMs: 100 })).toThrow(RangeError)
    expect(() => resolveBackoff({ initialMs: -1 })).toThrow(RangeError)
    expect(() => resolveBackoff({ jitter: 1.5 })).toThrow(RangeError)
    expect(() => resolveBackoff({ jitter: Number.NaN })).toThrow(RangeError)
  })
})
