// The turns' Prometheus metrics: queue depth and running turns per pool and class (read at scrape
// time), wait and run time histograms, ends, refusals and lost leases. Registers on the server's
// own registry; docs/operations.md lists the names.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { TurnObserver } from './turn-service.js'

/** Queue figures read at scrape time. */
export interface TurnMetricsSource {
  pools(): readonly { pool: string; running: number; queuedByPriority: readonly number[] }[]
  /** In a cluster: claims of this node's workers waiting on a pool's scheduler. */
  readonly forwardedClaims?: number
}

/** Seconds buckets for waits and runs: from 50 ms to 10 minutes. */
const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600]

/** Registers the metrics and returns the observer that feeds them. */
export function createTurnMetrics(
  registry: Registry,
  source: () => TurnMetricsSource | undefined,
): TurnObserver {
  const registers = [registry]
  new Gauge({
    name: 'colloquy_turns_queued',
    help: 'Turns queued, per pool and priority class.',
    labelNames: ['pool', 'priority'],
    registers,
    collect() {
      this.reset()
      for (const pool of source()?.pools() ?? []) {
        pool.queuedByPriority.forEach((count, priority) => {
          this.set({ pool: pool.pool, priority: String(priority) }, count)
        })
      }
    },
  })
  new Gauge({
    name: 'colloquy_turns_running',
    help: 'Turns claimed or streaming, per pool.',
    labelNames: ['pool'],
    registers,
    collect() {
      this.reset()
      for (const pool of source()?.pools() ?? []) this.set({ pool: pool.pool }, pool.running)
    },
  })
  new Gauge({
    name: 'colloquy_turn_claims_forwarded',
    help: 'Claims (long polls) of workers on this node waiting on a pool scheduler, in a cluster.',
    registers,
    collect() {
      const count = source()?.forwardedClaims
      if (count === undefined) this.reset()
      else this.set(count)
    },
  })
  const wait = new Histogram({
    name: 'colloquy_turn_wait_seconds',
    help: 'From creation to first claim, per pool and priority class.',
    labelNames: ['pool', 'priority'],
    buckets: BUCKETS,
    registers,
  })
  const run = new Histogram({
    name: 'colloquy_turn_run_seconds',
    help: 'From the last claim to the end, per pool and priority class.',
    labelNames: ['pool', 'priority'],
    buckets: BUCKETS,
    registers,
  })
  const ended = new Counter({
    name: 'colloquy_turns_ended_total',
    help: 'Turns that reached a final state, per pool and state.',
    labelNames: ['pool', 'state'],
    registers,
  })
  const created = new Counter({
    name: 'colloquy_turns_created_total',
    help: 'Turns created, per pool.',
    labelNames: ['pool'],
    registers,
  })
  const refused = new Counter({
    name: 'colloquy_turns_refused_total',
    help: 'Turns refused at creation because a queue was full, per pool and reason (pool-full, tenant-full).',
    labelNames: ['pool', 'reason'],
    registers,
  })
  const leasesExpired = new Counter({
    name: 'colloquy_turn_leases_expired_total',
    help: 'Leases that expired before their worker renewed them, per pool.',
    labelNames: ['pool'],
    registers,
  })
  return {
    created: (turn) => created.inc({ pool: turn.pool }),
    refused: (pool, reason) => refused.inc({ pool, reason }),
    firstClaimed: (turn, waitMs) =>
      wait.observe({ pool: turn.pool, priority: String(turn.priority) }, waitMs / 1000),
    ended: (turn, runMs) => {
      ended.inc({ pool: turn.pool, state: turn.state })
      if (runMs !== undefined) run.observe({ pool: turn.pool, priority: String(turn.priority) }, runMs / 1000)
    },
    leaseExpired: (turn) => leasesExpired.inc({ pool: turn.pool }),
  }
}
