// A bound on any wait in the benchmark: a scenario that stalls fails with what it waited for,
// rather than hanging the run.

/** `promise`, or a rejection after `ms`; `state` (if given) describes in the error what was reached. */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  state?: () => string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what}: timed out after ${ms} ms${state ? ` (${state()})` : ''}`)),
      ms,
    )
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}
