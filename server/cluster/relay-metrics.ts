// The NATS relay's Prometheus metrics, registered on the server's own registry: updates received
// from other nodes, messages and updates sent (updates per message shows the batching), updates
// read back from the log to fill a gap (by reason), nodes lost, and the nodes heard from now.

import { Counter, Gauge, type Registry } from 'prom-client'
import type { NatsDistributionObserver } from './nats-distribution.js'

/** Registers the relay's metrics on `registry`; returns the observer to give the relay. */
export function createRelayMetrics(registry: Registry, liveNodes: () => number): NatsDistributionObserver {
  const relayed = new Counter({
    name: 'colloquy_relay_updates_received_total',
    help: 'Updates received from other cluster nodes over core NATS',
    registers: [registry],
  })
  const messagesSent = new Counter({
    name: 'colloquy_relay_messages_sent_total',
    help: 'Messages the relay published over core NATS, by kind (update, stored, heartbeat, awareness, control)',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  const updatesSent = new Counter({
    name: 'colloquy_relay_updates_sent_total',
    help: 'Updates the relay published to other nodes (one message per session per event-loop turn holds them)',
    registers: [registry],
  })
  const repaired = new Counter({
    name: 'colloquy_relay_repaired_updates_total',
    help: 'Log entries read back to fill a relay gap, by what revealed the gap',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const lost = new Counter({
    name: 'colloquy_cluster_nodes_lost_total',
    help: 'Cluster nodes that stopped sending heartbeats (or restarted); their clients left presence',
    registers: [registry],
  })
  new Gauge({
    name: 'colloquy_cluster_live_nodes',
    help: 'Other cluster nodes heard from within the dead-node timeout',
    registers: [registry],
    collect() {
      this.set(liveNodes())
    },
  })
  return {
    relayed: (count) => relayed.inc(count),
    sent: (kind, updates) => {
      messagesSent.inc({ kind })
      if (updates > 0) updatesSent.inc(updates)
    },
    repaired: (entries, reason) => repaired.inc({ reason }, entries),
    nodeLost: () => lost.inc(),
  }
}
