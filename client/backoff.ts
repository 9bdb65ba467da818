// Reconnect delays: capped exponential backoff with jitter. Pure: the random source is a parameter.

/** How long to wait between reconnect attempts. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter (default 500 ms). */
  readonly initialMs?: number
  /** The cap: no delay is longer (default 30 000 ms). Policy closes (45xx limits) always wait this long. */
  readonly maxMs?: number
  /**
   * Fraction of the delay that is random, 0–1 (default 0.5): a delay `d` becomes a value in
   * `[d × (1 − jitter), d]`, so clients dropped together do not return together.
   */
  readonly jitter?: number
  /** A connection that stayed synced this long resets the backoff (default 5 000 ms). */
  readonly resetAfterMs?: number
}

/** {@link BackoffOptions} with every default filled in and checked. */
export type ResolvedBackoff = Required<BackoffOptions>

export const DEFAULT_BACKOFF: ResolvedBackoff = {
  initialMs: 500,
  maxMs: 30_000,
  jitter: 0.5,
  resetAfterMs: 5_000,
}

/**
 * Fills in defaults and checks the values.
 *
 * @throws RangeError when a delay is negative, `maxMs < initialMs` or `jitter` is outside 0–1.
 */
export function resolveBackoff(options: BackoffOptions = {}): ResolvedBackoff {
  const resolved: ResolvedBackoff = { ...DEFAULT_BACKOFF, ...options }
  const { initialMs, maxMs, jitter, resetAfterMs } = resolved
  if (!(initialMs >= 0) || !(maxMs >= initialMs) || !(resetAfterMs >= 0)) {
    throw new RangeError(`backoff needs 0 <= initialMs <= maxMs and resetAfterMs >= 0`)
  }
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`backoff jitter must be within 0..1, got ${jitter}`)
  return resolved
}

/**
 * The delay before retry number `attempt` (1 for the first retry).
 *
 * @remarks
 * `min(maxMs, initialMs × 2^(attempt − 1))`, then jittered down by up to `jitter` of itself, so the
 * result is always within `[0, maxMs]`. `random` returns a number in `[0, 1)` (default Math.random).
 */
export function backoffDelay(
  attempt: number,
  options: ResolvedBackoff,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1)
  // 2^exponent overflows to Infinity for huge attempts; min() keeps the cap.
  const capped = Math.min(options.maxMs, options.initialMs * 2 ** exponent)
  return Math.round(capped * (1 - options.jitter * random()))
}

/** The delay after a policy close (rate or connection limits): the cap, jittered, so they never hammer. */
export function maxBackoffDelay(options: ResolvedBackoff, random: () => number = Math.random): number {
  return Math.round(options.maxMs * (1 - options.jitter * random()))
}
