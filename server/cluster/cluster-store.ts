// Opens what a cluster node persists through: a NATS connection, the JetStream resources, the
// JetStream store behind this node's outbox (re-published at start) and the compaction leases.
// sync-server.ts calls it for `colloquy serve --nats …`; it owns the connection and the outbox.

import path from 'node:path'
import { connect } from '@nats-io/transport-node'
import type { CompactionLeases } from '../compaction/lease.js'
import type { Logger } from '../observability/log.js'
import type { Store } from '../persistence/store.js'
import { createKvLeases } from './compaction-lease.js'
import { type JetStreamResources, openJetStreamResources } from './jetstream-log.js'
import { createJetStreamStore, type JetStreamStore } from './jetstream-store.js'
import { createLeaderNudge, withLeaderNudge } from './leader-nudge.js'
import { openOutbox, republishOutbox, withOutbox } from './outbox.js'

/** Options of {@link openClusterStore}. */
export interface ClusterStoreOptions {
  /** nats:// URLs of the JetStream cluster (any subset; the client learns the rest). */
  readonly urls: readonly string[]
  /** This node's id: the NATS connection name and the holder of its leases. */
  readonly nodeId: string
  /** This node's data directory: the outbox lives in `<dataDir>/outbox`. */
  readonly dataDir: string
  /** Replicas of the stream, buckets and object stores (default 3). */
  readonly replicas?: number
  /** See OutboxOptions.retainMs. */
  readonly outboxRetainMs?: number
  /**
   * How long opening keeps retrying while JetStream cannot serve (no meta or stream leader, no
   * quorum, no server reachable) before it gives up (default: no limit). Each attempt is logged.
   */
  readonly openRetryForMs?: number
  readonly logger: Logger
}

/** What a cluster node persists through. */
export interface ClusterStore {
  /** The JetStream store behind the outbox: an append is acked once both hold it. */
  readonly store: Store
  /** The same store without the outbox, for reads (e.g. a relay's gap repair: `lastLogSeq`). */
  readonly log: JetStreamStore
  readonly leases: CompactionLeases
  readonly resources: JetStreamResources
}

/**
 * Connects to NATS, opens (creating if needed) the JetStream resources, re-publishes what this
 * node's outbox still holds from before a restart, and returns the store. Closing the store closes
 * the outbox and drains the connection.
 */
export async function openClusterStore(options: ClusterStoreOptions): Promise<ClusterStore> {
  const { logger } = options
  const nc = await connect({
    servers: [...options.urls],
    name: options.nodeId,
    timeout: 5_000,
    // A node started before any nats-server is up waits for one instead of failing.
    waitOnFirstConnect: true,
    // Keep trying: a JetStream node restarting must not end this Colloquy node.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  })
  void (async () => {
    for await (const status of nc.status()) {
      logger.warn({ nats: status.type, node: options.nodeId }, 'nats connection status')
    }
  })()
  const retry = { logger, retryForMs: options.openRetryForMs ?? Number.POSITIVE_INFINITY }
  try {
    const resources = await openWhenReady(
      'open JetStream resources',
      () => openJetStreamResources({ nc, ...(options.replicas ? { replicas: options.replicas } : {}) }),
      retry,
    )
    const outbox = await openOutbox({
      location: path.join(options.dataDir, 'outbox'),
      ...(options.outboxRetainMs === undefined ? {} : { retainMs: options.outboxRetainMs }),
    })
    const jetStreamStore = createJetStreamStore({
      resources,
      logger,
      onClose: async () => {
        await outbox.close()
        await nc.drain()
      },
    })
    // Regression (issue 15): a stream leader that never subscribed to the log's subjects left every
    // publish of this node without a responder for over 60 s; the nudge asks it to step down.
    const writer = withLeaderNudge(jetStreamStore, createLeaderNudge({ resources, logger }))
    // Regression (issue 15): a node restarted while its stream had no leader exited here with
    // "no responders". Re-publishing is idempotent and removes what it stored batch by batch, so
    // a retry repeats at most one batch.
    const republished = await openWhenReady(
      're-publish the outbox',
      () => republishOutbox(writer, outbox),
      retry,
    ).catch(async (error: unknown) => {
      await jetStreamStore.close()
      throw error
    })
    if (republished > 0) logger.info({ updates: republished }, 'outbox re-published after restart')
    return {
      store: withOutbox(writer, outbox),
      log: jetStreamStore,
      leases: createKvLeases({ bucket: resources.leases, holder: options.nodeId }),
      resources,
    }
  } catch (error) {
    await nc.close()
    throw error
  }
}

/** Backoff of {@link openWhenReady}: doubling from the first delay, never longer than the last. */
const OpenBackoff = { firstMs: 100, maxMs: 5_000 } as const

/**
 * Runs `open` until it succeeds, logging each failed attempt, with a backoff bounded by
 * {@link OpenBackoff}; gives up (rethrows) after `retryForMs`. A JetStream cluster that is forming,
 * electing a stream leader or short of quorum refuses for a while ("no suitable peers for
 * placement", "no responders", timeouts): the node waits, not listening, until it can serve.
 * Exported for whatever else opens JetStream resources (tools, tests) and must ride out the same.
 */
export async function openWhenReady<T>(
  step: string,
  open: () => Promise<T>,
  options: { readonly logger: Logger; readonly retryForMs: number },
): Promise<T> {
  const deadline = Date.now() + options.retryForMs
  for (let attempt = 1, delay: number = OpenBackoff.firstMs; ; attempt++) {
    try {
      return await open()
    } catch (error) {
      if (Date.now() + delay > deadline) throw error
      options.logger.warn(
        { attempt, retryInMs: delay, err: error instanceof Error ? error.message : String(error) },
        `JetStream not ready: ${step} failed, retrying`,
      )
      await new Promise((resolve) => setTimeout(resolve, delay))
      delay = Math.min(delay * 2, OpenBackoff.maxMs)
    }
  }
}

/** What an ack means, as `/readyz` and `colloquy_ack_durability_info` say it. */
export function describeAckDurability(options: {
  readonly store: 'leveldb' | 'memory'
  readonly fsync: boolean
  readonly nats?: readonly string[] | undefined
  readonly natsReplicas: number
  readonly natsSyncAlways: boolean
}): string {
  if (options.nats !== undefined && options.nats.length > 0) {
    // nats-server fsyncs lazily (every 2 min) unless configured `sync_interval: always` (2.10+).
    const jetstream = options.natsSyncAlways ? 'fsynced' : 'lazy-fsync'
    return `jetstream-r${options.natsReplicas}-${jetstream}+local-fsync`
  }
  if (options.store === 'memory') return 'memory'
  return options.fsync ? 'local-fsync' : 'local-no-fsync'
}
