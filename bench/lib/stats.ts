// Small statistics helpers for the benchmark runner.

/** Nearest-rank percentile of an already sorted array (NaN when empty). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index] ?? Number.NaN
}

/** Sorts a copy of the concatenation of `parts`. */
export function sortedOf(...parts: readonly ArrayLike<number>[]): Float64Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0)
  const all = new Float64Array(total)
  let offset = 0
  for (const part of parts) {
    all.set(Array.from(part), offset)
    offset += part.length
  }
  return all.sort()
}

/** Rounds to `digits` decimals (for tables and JSON). */
export const round = (value: number, digits = 2): number =>
  Number.isFinite(value) ? Number(value.toFixed(digits)) : value

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
