// Parses the `--turn-pools` specs (`name:concurrency[:maxQueued[:maxQueuedPerTenant]]`) into pool
// configurations. Pure; config.ts calls it to refuse a bad flag at start.

import { isValidPoolName } from '../../shared/turns/turn.js'
import type { TurnPoolConfig } from './turn-service.js'

/** Queued turns a pool holds when its spec does not say. */
export const DEFAULT_MAX_QUEUED = 10_000

/** Parses one spec; throws a RangeError naming what is wrong. */
export function parsePoolSpec(spec: string): TurnPoolConfig {
  const parts = spec.split(':')
  const [name, ...numbers] = parts
  if (!isValidPoolName(name)) {
    throw new RangeError(
      `"${spec}": the pool name must be 1–64 of a-z 0-9 _ - (starting with a letter or digit)`,
    )
  }
  if (numbers.length < 1 || numbers.length > 3) {
    throw new RangeError(`"${spec}" is not name:concurrency[:maxQueued[:maxQueuedPerTenant]]`)
  }
  const values = numbers.map((raw) => {
    const value = Number(raw)
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`"${spec}": "${raw}" is not a positive integer`)
    }
    return value
  })
  const [concurrency, maxQueued = DEFAULT_MAX_QUEUED, maxQueuedPerTenant = maxQueued] = values as [
    number,
    number?,
    number?,
  ]
  return { name, concurrency, maxQueued, maxQueuedPerTenant }
}

/** Parses every spec; throws on a bad one or a name given twice. */
export function parsePoolSpecs(specs: readonly string[]): TurnPoolConfig[] {
  const pools = specs.map(parsePoolSpec)
  const names = new Set<string>()
  for (const pool of pools) {
    if (names.has(pool.name)) throw new RangeError(`pool "${pool.name}" is given twice`)
    names.add(pool.name)
  }
  return pools
}
