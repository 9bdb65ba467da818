// The test cluster helper itself: three JetStream nodes elect a meta leader, a killed node comes
// back with its store, and an R3 stream keeps what was acked across a leader kill.

import { createServer } from 'node:net'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  freePort,
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { startPartitionedNatsCluster } from '../helpers/partition-proxy.js'

warnIfNoNatsServer(import.meta.url)

describe.skipIf(!hasNatsServer)('the 3-node nats-server test cluster', () => {
  let cluster: NatsCluster
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('elects a meta leader and serves an R3 stream from every node', async () => {
    expect(cluster.urls).toHaveLength(3)
    const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 })
      await jsm.streams.add({ name: 'HELPER', subjects: ['helper.>'], num_replicas: 3 })
      const js = jsm.jetstream()
      const ack = await js.publish('helper.a', 'one')
      expect(ack.seq).toBe(1)
      const info = await jsm.streams.info('HELPER')
      expect(info.cluster?.replicas ?? []).toHaveLength(2)
    } finally {
      await nc.close()
    }
  })

  // Regression (issue 15): in a clean-clone CI run, and 3 runs in 8 here, `streams.info` through
  // the restarted node timed out after both leaders were back: the node was a current peer of the
  // meta leader but had no route to the stream leader yet. waitForMetaLeader now waits for a full
  // route mesh too.
  // Regression (issue 15, a clean-clone CI run of session 7, and 3 runs in 5 here under load):
  // the stream info request after the restart timed out (10 s) though the full-route-mesh wait was
  // in. The killed node had led HELPER: once restarted it named itself leader (with no replica
  // current), the two others still named it too, and waitForStreamLeader took that for a leader
  // while the stream was electing a new one. It now waits for a leader that counts every other
  // running node as a current replica. Since: 10 runs in a row under load (8-10 on 2 cores).
  it('restarts a killed node with its ports and store, and still has a meta and a stream leader', async () => {
    const node = cluster.nodes[0]
    if (!node) throw new Error('no node')
    await node.kill('SIGKILL')
    expect(node.isRunning()).toBe(false)
    await node.restart()
    expect(node.isRunning()).toBe(true)
    const leader = await cluster.waitForMetaLeader(30_000)
    expect(['n1', 'n2', 'n3']).toContain(leader)
    // Regression (issue 15): one streams.info right after the restart timed out under load while
    // the stream was still electing its leader; wait for it, bounded.
    expect(['n1', 'n2', 'n3']).toContain(await cluster.waitForStreamLeader('HELPER', 30_000))
    const nc = await connect({ servers: node.url, timeout: 5_000 })
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 })
      const info = await jsm.streams.info('HELPER')
      expect(info.state.messages).toBe(1)
    } finally {
      await nc.close()
    }
  }, 60_000)

  // Regression: a cluster start failed when another test file took a port between its pick and
  // nats-server binding it ("address already in use"); it now starts again on new ports.
  // Regression (issue 15): in a clean-clone CI run no retry happened. nats-server does exit when its
  // route port is taken, but only after it listens for clients and answers /varz ("Server is
  // ready", then the route listener fails): the helper saw it listening, the two others elected a
  // meta leader, and the start passed with n1 dead. A node that exited fails the start now.
  it('starts again on new ports when a picked port was taken meanwhile', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const takenPort = (taken.address() as { port: number }).port
    let picks = 0
    let other: NatsCluster | undefined
    try {
      // The route port of n1 (the second pick) is taken on the first attempt.
      other = await startNatsCluster({ pickPort: async () => (++picks === 2 ? takenPort : freePort()) })
      expect(picks).toBeGreaterThan(9)
      expect(other.nodes.every((node) => node.isRunning() && node.routePort !== takenPort)).toBe(true)
    } finally {
      await other?.stop()
      taken.close()
    }
  }, 90_000)

  // Regression (issue 15, the partition regression test, 1 run in 8 here beside other helpers'
  // cluster tests): a partitioned cluster did not start again when a picked port was taken
  // (startNatsCluster leaves that to the owner of the route proxies), and the test failed.
  it('starts a partitioned cluster again on new ports when a picked port was taken meanwhile', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const takenPort = (taken.address() as { port: number }).port
    let picks = 0
    let started: Awaited<ReturnType<typeof startPartitionedNatsCluster>> | undefined
    try {
      started = await startPartitionedNatsCluster({
        pickPort: async () => (++picks === 2 ? takenPort : freePort()),
      })
      expect(picks).toBeGreaterThan(9)
      expect(started.cluster.nodes.every((node) => node.isRunning() && node.routePort !== takenPort)).toBe(
        true,
      )
    } finally {
      await started?.cluster.stop()
      await started?.proxies.close()
      taken.close()
    }
  }, 90_000)
})
