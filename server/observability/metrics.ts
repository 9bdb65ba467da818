// Prometheus metrics (prom-client) of one server instance: a registry of its own, never the global
// default, so two servers in one process (tests) do not mix their figures.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { Store } from '../persistence/store.js'
import type { SessionObserver } from '../session/session.js'

/** The server's metrics. Names are documented in docs/operations.md. */
export interface Metrics {
  readonly registry: Registry
  readonly connectionsOpened: Counter
  readonly connectionsClosed: Counter<'code'>
  readonly upgradesRefused: Counter<'reason'>
  readonly updatesIn: Counter
  readonly updateBytesIn: Counter
  readonly framesOut: Counter
  readonly bytesOut: Counter
  readonly rejects: Counter<'reason'>
  readonly awarenessForged: Counter
  readonly unknownMessages: Counter
  readonly commitBatchEntries: Histogram
  readonly commitSeconds: Histogram
  readonly commitFailures: Counter
  readonly ackSeconds: Histogram
  readonly compactionRuns: Counter<'result'>
  readonly compactionSeconds: Histogram
  /** A SessionObserver feeding these metrics. */
  readonly sessionObserver: SessionObserver
  /** Wraps a store so every append is timed and counted. */
  instrumentStore(store: Store): Store
}

/** Gauges read at scrape time. */
export interface MetricsSources {
  readonly connections: () => number
  readonly sessionsLoaded: () => number
  readonly queuedWriteBytes: () => number
  readonly storageFailing: () => boolean
  /** What an ack means here (docs/operations.md), e.g. `local-fsync`; reported as a label. */
  readonly ackDurability?: string
}

/** Creates the metrics of one server. */
export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'colloquy_process_' })
  const registers = [registry]

  new Gauge({
    name: 'colloquy_connections',
    help: 'Open WebSocket connections.',
    registers,
    collect() {
      this.set(sources.connections())
    },
  })
  new Gauge({
    name: 'colloquy_sessions_loaded',
    help: 'Sessions held in memory (loading or ready).',
    registers,
    collect() {
      this.set(sources.sessionsLoaded())
    },
  })
  new Gauge({
    name: 'colloquy_write_queue_bytes',
    help: 'Update bytes waiting for the disk (queued and in flight).',
    registers,
    collect() {
      this.set(sources.queuedWriteBytes())
    },
  })
  new Gauge({
    name: 'colloquy_storage_failing',
    help: '1 while group commits fail (writes refused, /readyz 503), else 0.',
    registers,
    collect() {
      this.set(sources.storageFailing() ? 1 : 0)
    },
  })
  if (sources.ackDurability !== undefined) {
    new Gauge({
      name: 'colloquy_ack_durability_info',
      help: 'Always 1; the mode label says what an ack promises (docs/operations.md).',
      labelNames: ['mode'],
      registers,
    }).set({ mode: sources.ackDurability }, 1)
  }

  // The per-update counters are plain numbers, read into prom-client at scrape time: four labelled
  // inc() calls per update were ~1 µs of a ~45 µs update.
  const hot = { updatesIn: 0, updateBytesIn: 0, framesOut: 0, bytesOut: 0 }
  /** A counter whose value is read from `read` at scrape time rather than counted with inc(). */
  const scrapedCounter = (name: string, help: string, read: () => number): Counter =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset()
        this.inc(read())
      },
    })
  const seconds = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
  const metrics = {
    registry,
    connectionsOpened: new Counter({
      name: 'colloquy_connections_opened_total',
      help: 'WebSocket connections opened.',
      registers,
    }),
    connectionsClosed: new Counter({
      name: 'colloquy_connections_closed_total',
      help: 'WebSocket connections closed, by close code.',
      labelNames: ['code'] as const,
      registers,
    }),
    upgradesRefused: new Counter({
      name: 'colloquy_upgrades_refused_total',
      help: 'Upgrade requests refused before a session was touched, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    updatesIn: scrapedCounter(
      'colloquy_updates_in_total',
      'Updates that changed a document and were queued for storage.',
      () => hot.updatesIn,
    ),
    updateBytesIn: scrapedCounter(
      'colloquy_update_bytes_in_total',
      'Bytes of those updates.',
      () => hot.updateBytesIn,
    ),
    framesOut: scrapedCounter(
      'colloquy_relayed_frames_total',
      'Update frames relayed to other connections (one per recipient).',
      () => hot.framesOut,
    ),
    bytesOut: scrapedCounter(
      'colloquy_relayed_bytes_total',
      'Bytes of relayed update frames (per recipient).',
      () => hot.bytesOut,
    ),
    rejects: new Counter({
      name: 'colloquy_rejects_total',
      help: 'Connections closed or writes refused by the server, by error code.',
      labelNames: ['reason'] as const,
      registers,
    }),
    awarenessForged: new Counter({
      name: 'colloquy_awareness_forged_total',
      help: 'Awareness entries dropped: they changed a client id another connection owns.',
      registers,
    }),
    unknownMessages: new Counter({
      name: 'colloquy_unknown_messages_total',
      help: 'Frames of a message type the server does not know, ignored.',
      registers,
    }),
    commitBatchEntries: new Histogram({
      name: 'colloquy_commit_batch_entries',
      help: 'Updates per group commit.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
      registers,
    }),
    commitSeconds: new Histogram({
      name: 'colloquy_commit_seconds',
      help: 'Duration of a group commit (fsync included).',
      buckets: seconds,
      registers,
    }),
    commitFailures: new Counter({
      name: 'colloquy_commit_failures_total',
      help: 'Group commits that failed (and are retried).',
      registers,
    }),
    ackSeconds: new Histogram({
      name: 'colloquy_ack_seconds',
      help: 'From a sync-status arriving to its echo (its updates durable), when it had to wait.',
      buckets: seconds,
      registers,
    }),
    compactionRuns: new Counter({
      name: 'colloquy_compaction_runs_total',
      help: 'Compactions run, by result.',
      labelNames: ['result'] as const,
      registers,
    }),
    compactionSeconds: new Histogram({
      name: 'colloquy_compaction_seconds',
      help: 'Duration of a compaction.',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    }),
  }

  const sessionObserver: SessionObserver = {
    updateStored(bytes) {
      hot.updatesIn++
      hot.updateBytesIn += bytes
    },
    updateRelayed(bytes, recipients) {
      if (recipients <= 0) return
      hot.framesOut += recipients
      hot.bytesOut += bytes * recipients
    },
    ackReleased(ms) {
      metrics.ackSeconds.observe(ms / 1000)
    },
    rejected(code) {
      metrics.rejects.inc({ reason: code })
    },
    awarenessForged(entries) {
      metrics.awarenessForged.inc(entries)
    },
    unknownMessage() {
      metrics.unknownMessages.inc()
    },
  }

  return {
    ...metrics,
    sessionObserver,
    instrumentStore(store) {
      const append: Store['append'] = async (entries) => {
        const stop = metrics.commitSeconds.startTimer()
        try {
          const seqs = await store.append(entries)
          metrics.commitBatchEntries.observe(entries.length)
          return seqs
        } catch (error) {
          metrics.commitFailures.inc()
          throw error
        } finally {
          stop()
        }
      }
      // Every other method passes through, bound to the wrapped store.
      return new Proxy(store, {
        get(target, property, receiver) {
          if (property === 'append') return append
          const value: unknown = Reflect.get(target, property, receiver)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
    },
  }
}
