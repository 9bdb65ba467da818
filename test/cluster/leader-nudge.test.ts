// The leader nudge on a real 3-node cluster: a node whose publishes to the log keep finding no
// subscriber while the log stream names a leader asks that leader to step down; while the stream
// has no leader (2 of 3 servers down) it asks nothing.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type JetStreamResources, openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore, type JetStreamStore } from '../../server/cluster/jetstream-store.js'
import { createLeaderNudge, type LeaderNudge, withLeaderNudge } from '../../server/cluster/leader-nudge.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { capturingLogger } from '../helpers/test-server.js'

warnIfNoNatsServer(import.meta.url)

/** Appends to `store` until `done()` or `ms` passed, one at a time, failures ignored (bounded). */
async function appendUntil(store: JetStreamStore, done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  for (let i = 0; i < 1_000 && !done() && Date.now() < deadline; i++) {
    await store.append([{ sessionId: 'nudged', time: i, update: new Uint8Array([i % 256]) }]).catch(() => [])
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

describe.skipIf(!hasNatsServer)('the log leader nudge', () => {
  let cluster: NatsCluster
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  async function open(namespace: string): Promise<{ nc: NatsConnection; resources: JetStreamResources }> {
    const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
    return { nc, resources: await openJetStreamResources({ nc, namespace }) }
  }

  // Regression (issue 15, the store test's late node): a log stream leader that never subscribed to
  // the stream's subjects left every publish without a responder for over 60 s. Provoked here by a
  // log stream moved off the store's subjects (its leader then has no subscription for them, as
  // that leader had none): the publishes get "no responders" while the stream names a leader.
  it('asks a leader that leaves publishes without a subscriber to step down, and a new leader is elected', async () => {
    const { nc, resources } = await open('nudge')
    const { stream } = resources.names
    const { logger, lines } = capturingLogger('warn')
    const nudge: LeaderNudge = createLeaderNudge({ resources, logger, afterMs: 1_000, everyMs: 60_000 })
    const store = withLeaderNudge(createJetStreamStore({ resources }), nudge)
    try {
      const info = await resources.jsm.streams.info(stream)
      await resources.jsm.streams.update(stream, { ...info.config, subjects: ['elsewhere.>'] })
      const before = await cluster.waitForStreamLeader(stream, 15_000)
      await appendUntil(store, () => nudge.stepDowns > 0, 20_000)
      // The old leader steps down: another is elected (bounded).
      const deadline = Date.now() + 20_000
      let after = before
      while (after === before && Date.now() < deadline) {
        after = await cluster.waitForStreamLeader(stream, 15_000)
        if (after === before) await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(after, 'the stream leader after the nudge').not.toBe(before)
      expect(nudge.stepDowns, 'step-downs asked').toBe(1)
      expect(lines.join('')).toContain(`"leader":"${before}"`)
    } finally {
      await store.close()
      await nc.close()
    }
  }, 60_000)

  // Regression (issue 15, the store test's late node, once): the servers' meta states disagreed on
  // which streams existed, and the meta leader knew no log stream while the node published to it.
  // Provoked here by deleting the log stream under the store.
  it('creates the log stream again when JetStream knows none while publishes find no subscriber', async () => {
    const { nc, resources } = await open('recreate')
    const { stream } = resources.names
    const { logger, lines } = capturingLogger('warn')
    const nudge = createLeaderNudge({ resources, logger, afterMs: 1_000, everyMs: 60_000 })
    const store = withLeaderNudge(createJetStreamStore({ resources }), nudge)
    try {
      await store.append([{ sessionId: 'nudged', time: 0, update: new Uint8Array([1]) }])
      await resources.jsm.streams.delete(stream)
      let acked = 0
      const deadline = Date.now() + 30_000
      for (let i = 0; i < 300 && acked === 0 && Date.now() < deadline; i++) {
        const update = new Uint8Array([2])
        acked += (await store.append([{ sessionId: 'nudged', time: 1, update }]).catch(() => [])).length
        if (acked === 0) await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(acked, 'appends acked after the create').toBe(1)
      expect(nudge.recreates, 'creates of the log stream').toBe(1)
      expect(lines.join('')).toContain('creating it again')
      expect((await resources.jsm.streams.info(stream)).config.subjects).toEqual([
        `${resources.names.subjectPrefix}.>`,
      ])
    } finally {
      await store.close()
      await nc.close()
    }
  }, 60_000)

  it('asks nothing while the stream has no leader (2 of 3 servers down), however long publishes fail', async () => {
    const { nc, resources } = await open('leaderless')
    const { stream } = resources.names
    const { logger } = capturingLogger('warn')
    const nudge = createLeaderNudge({
      resources,
      logger,
      afterMs: 500,
      everyMs: 1_000,
      requestTimeoutMs: 1_000,
    })
    const store = withLeaderNudge(createJetStreamStore({ resources, publishTimeoutMs: 1_000 }), nudge)
    const leader = await cluster.waitForStreamLeader(stream, 15_000)
    // Keep the server this client is on; kill the leader and one more.
    const mine = nc.info?.server_name
    const victims = cluster.nodes.filter((node) => node.name === leader || node.name !== mine).slice(0, 2)
    try {
      await Promise.all(victims.map((node) => node.kill('SIGKILL')))
      // 5 s of failing publishes: with 500 ms to act and 1 s between asks, several chances to ask.
      await appendUntil(store, () => false, 5_000)
      expect(nudge.stepDowns, 'step-downs asked without a leader').toBe(0)
    } finally {
      await store.close()
      await nc.close()
      for (const node of victims) if (!node.isRunning()) await node.restart()
    }
    await cluster.waitForMetaLeader(30_000)
  }, 60_000)
})
