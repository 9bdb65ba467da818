// The partition proxies themselves: an isolated nats-server loses its routes (a stream on the
// majority keeps acking, the minority never does) and rejoins once healed.

import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hasNatsServer, type NatsCluster, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { type PartitionProxies, startPartitionedNatsCluster } from '../helpers/partition-proxy.js'

warnIfNoNatsServer(import.meta.url)

interface Routez {
  routes?: { remote_id: string; port: number; did_solicit: boolean }[]
}

async function routeCount(monitorPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${monitorPort}/routez`, {
    signal: AbortSignal.timeout(2_000),
  })
  return ((await response.json()) as Routez).routes?.length ?? 0
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe.skipIf(!hasNatsServer)('the partition proxies', () => {
  let proxies: PartitionProxies
  let cluster: NatsCluster
  beforeAll(async () => {
    ;({ cluster, proxies } = await startPartitionedNatsCluster())
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
    await proxies?.close()
  })

  it('carry every route, cut one node off from the others and let it rejoin when healed', async () => {
    const [n1, , n3] = cluster.nodes
    // One route per pair, each through a proxy (none dialled directly from gossip).
    expect(proxies.counts()).toEqual({ open: 3, held: 0 })
    const nc = await connect({ servers: [n1!.url], timeout: 5_000 })
    const minority = await connect({ servers: [n3!.url], timeout: 5_000, maxReconnectAttempts: -1 })
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 })
      await jsm.streams.add({ name: 'PART', subjects: ['part.>'], num_replicas: 3 })
      const js = jsm.jetstream()
      await js.publish('part.a', 'before')

      proxies.isolate(2)
      expect(proxies.counts().held).toBeGreaterThan(0)
      const cut = jetstream(minority, { timeout: 2_000 })
      await expect(cut.publish('part.a', 'minority', { timeout: 2_000 })).rejects.toThrow()
      // The majority elects or keeps a leader and acks (a leader on n3 takes a few seconds to move).
      await waitFor(
        async () => (await js.publish('part.a', 'majority', { timeout: 1_000 })).seq > 0,
        20_000,
        'a majority ack',
      )

      proxies.heal()
      await waitFor(async () => (await routeCount(n3!.monitorPort)) === 2, 20_000, 'n3 to rejoin')
      await waitFor(
        async () => (await cut.publish('part.a', 'healed', { timeout: 1_000 })).seq > 0,
        20_000,
        'n3 to ack again',
      )
    } finally {
      await minority.close()
      await nc.close()
    }
  }, 90_000)
})
