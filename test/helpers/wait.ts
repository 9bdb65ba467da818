// Bounded waiting for tests: every wait has a deadline and says what it waited for.

/** Rejects with `label` if `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Resolves once `predicate()` is true, checking after every macrotask turn; rejects after `ms`.
 * For conditions that have no event of their own (e.g. "both docs equal"); bounded, never a sleep.
 */
export function until(predicate: () => boolean, ms: number, label: string): Promise<void> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (predicate()) resolve()
      else if (Date.now() > deadline) reject(new Error(`timed out after ${ms} ms: ${label}`))
      else setTimeout(check, 5)
    }
    check()
  })
}
