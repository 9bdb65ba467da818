// Token buckets for per-connection and per-address rate limits. Pure: the caller passes the time.

/** A bucket refilled at `ratePerSecond` up to `burst`. */
export interface TokenBucket {
  /** Takes `amount` tokens if available at time `now` (ms); false (and nothing taken) otherwise. */
  take(amount: number, now: number): boolean
}

const UNLIMITED: TokenBucket = { take: () => true }

/** Creates a full bucket. A rate or a burst of 0 (or less) means "unlimited": 0 disables a limit. */
export function createTokenBucket(ratePerSecond: number, burst: number, now: number): TokenBucket {
  if (ratePerSecond <= 0 || burst <= 0) return UNLIMITED
  let tokens = burst
  let updatedAt = now
  return {
    take(amount, at) {
      tokens = Math.min(burst, tokens + ((at - updatedAt) * ratePerSecond) / 1000)
      updatedAt = at
      if (tokens < amount) return false
      tokens -= amount
      return true
    },
  }
}

/** Counts connection attempts per remote address in a fixed window; forgets quiet addresses. */
export interface AttemptLimiter {
  /** Records an attempt from `address` at `now`; false when the address is over its limit. */
  attempt(address: string, now: number): boolean
  readonly trackedAddresses: number
}

/** At most `max` attempts per `windowMs` per address (`max` 0: unlimited). */
export function createAttemptLimiter(max: number, windowMs: number): AttemptLimiter {
  const windows = new Map<string, { start: number; count: number }>()
  let lastSweep = 0
  return {
    attempt(address, now) {
      if (max <= 0) return true
      // Sweep old windows at most once per window so the map stays bounded by active addresses.
      if (now - lastSweep > windowMs) {
        for (const [key, window] of windows) if (now - window.start >= windowMs) windows.delete(key)
        lastSweep = now
      }
      const window = windows.get(address)
      if (window === undefined || now - window.start >= windowMs) {
        windows.set(address, { start: now, count: 1 })
        return true
      }
      window.count++
      return window.count <= max
    },
    get trackedAddresses() {
      return windows.size
    },
  }
}
