// Merges two vitest JSON reports (`--reporter=json`) into one, as if one run had run both: what
// test/run-projects.ts writes to test-results/vitest.json for .ci/run to count.

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/**
 * Sums counts, concatenates lists (the files' results), keeps the earliest `startTime`; `success`
 * only if both succeeded, any other flag (e.g. `snapshot.failure`) if either has it.
 */
export function mergeVitestReports(a: Json, b: Json, key = ''): Json {
  if (typeof a === 'number' && typeof b === 'number') return key === 'startTime' ? Math.min(a, b) : a + b
  if (typeof a === 'boolean' && typeof b === 'boolean') return key === 'success' ? a && b : a || b
  if (Array.isArray(a) && Array.isArray(b)) return [...a, ...b]
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: { [key: string]: Json } = { ...a }
    for (const [k, v] of Object.entries(b)) out[k] = k in a ? mergeVitestReports(a[k] as Json, v, k) : v
    return out
  }
  return a
}

/**
 * The report of a vitest process as its exit code says: `success` false when the process failed.
 *
 * @remarks vitest exits 1 on errors outside any test (an unhandled rejection, an error after a
 * test ended) yet writes `success: true` and no failed test: .ci/run would print "N passed, 0
 * failed" for a failed run. With `success` false it counts at least one failure.
 */
export function reportOfRun(report: Json, exitCode: number): Json {
  if (exitCode === 0 || report === null || typeof report !== 'object' || Array.isArray(report)) return report
  return { ...report, success: false }
}
