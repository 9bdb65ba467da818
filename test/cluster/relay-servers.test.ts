// Three sync servers in one process, each with its own JetStream store and NATS relay on one
// 3-node nats-server cluster: a client's update reaches clients of the other servers at once and
// is acked once stored, presence crosses servers, and a server that loads the session later
// catches up from the log. (The process-level tests with kill -9 are in the other files here.)

import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore } from '../../server/cluster/jetstream-store.js'
import { connectNatsDistribution, type NatsDistribution } from '../../server/cluster/nats-distribution.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createSilentLogger } from '../../server/observability/log.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { until } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

warnIfNoNatsServer(import.meta.url)

describe.skipIf(!hasNatsServer)('sync servers relaying through NATS', () => {
  let cluster: NatsCluster
  const servers: SyncServer[] = []
  const relays: NatsDistribution[] = []
  const connections: NatsConnection[] = []
  const peers: WsPeer[] = []

  beforeAll(async () => {
    cluster = await startNatsCluster()
    for (let i = 0; i < 3; i++) {
      const nc = await connect({ servers: [cluster.urls[i]!], timeout: 5_000 })
      connections.push(nc)
      const resources = await openJetStreamResources({ nc, namespace: 'relay' })
      const store = createJetStreamStore({ resources })
      const relay = await connectNatsDistribution({
        servers: [cluster.urls[i]!],
        nodeId: `s${i + 1}`,
        log: store,
        logger: createSilentLogger(),
        heartbeatMs: 250,
      })
      relays.push(relay)
      servers.push(
        await startSyncServer({
          config: { ...DEFAULT_CONFIG, port: 0, logLevel: 'silent', compaction: false, store: 'memory' },
          store,
          distribution: relay,
        }),
      )
    }
  }, 90_000)
  afterAll(async () => {
    for (const peer of peers) peer.close()
    for (const server of servers) await server.close()
    for (const nc of connections) await nc.close()
    await cluster?.stop()
  })

  const join = async (server: number, session: string): Promise<WsPeer> => {
    const peer = await connectWsPeer(`ws://127.0.0.1:${servers[server]!.port}`, session)
    peers.push(peer)
    await peer.whenSynced(15_000)
    return peer
  }

  it("relays a client's update to the clients of the other servers and acks it once stored", async () => {
    const [a, b, c] = [await join(0, 'relayed'), await join(1, 'relayed'), await join(2, 'relayed')]
    const sentAt = performance.now()
    a.peer.doc.getText('t').insert(0, 'hello')
    const counter = a.peer.requestAck()
    await until(() => b.peer.doc.getText('t').toString() === 'hello', 5_000, 'b has the update')
    await until(() => c.peer.doc.getText('t').toString() === 'hello', 5_000, 'c has the update')
    expect(performance.now() - sentAt).toBeLessThan(1_000)
    await a.peer.whenAcked(counter, 10_000)
    // Both ways, and concurrent edits converge.
    b.peer.doc.getText('t').insert(5, ' from b')
    c.peer.doc.getText('t').insert(0, '> ')
    const converged = () =>
      [a, b, c].every((p) => p.peer.doc.getText('t').toString() === a.peer.doc.getText('t').toString()) &&
      a.peer.doc.getText('t').length === '> hello from b'.length
    await until(converged, 5_000, 'all three converge')
  }, 30_000)

  it('catches a server that loads the session later up from the log', async () => {
    const a = await join(0, 'late')
    a.peer.doc.getMap('m').set('k', 1)
    await a.peer.whenAcked(a.peer.requestAck(), 10_000)
    const late = await join(2, 'late')
    expect(late.peer.doc.getMap('m').get('k')).toBe(1)
  }, 30_000)
})
