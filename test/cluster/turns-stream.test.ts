// The JetStream parts of turns in a cluster, on a real 3-node nats-server cluster: what 2.9.10
// allows on a work-queue stream (why the turn stream is a limits stream), the turn store on the
// stream (one record per turn, latest wins, purge on delete, one pool's turns rebuilt), and the
// pool lease (one scheduler at a time; a scheduler cut off stops before another one starts).

import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream'
import { type KV, Kvm } from '@nats-io/kv'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPoolLeadership } from '../../server/cluster/turn-leader.js'
import { createStreamTurnStore, openTurnStream, turnStreamNames } from '../../server/cluster/turn-stream.js'
import { createSilentLogger } from '../../server/observability/log.js'
import type { StoredTurn } from '../../server/turns/turn-store.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { until } from '../helpers/wait.js'

warnIfNoNatsServer(import.meta.url)

let cluster: NatsCluster | undefined
const connections: NatsConnection[] = []
const logger = createSilentLogger()

async function connection(): Promise<NatsConnection> {
  const nc = await connect({ servers: [...cluster!.urls], maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  connections.push(nc)
  return nc
}

function turn(id: string, pool: string, state: StoredTurn['state'], seq: number): StoredTurn {
  const [, sessionId, messageId] = id.split('~') as [string, string, string]
  return {
    id,
    sessionId,
    messageId,
    pool,
    priority: 1,
    tenant: 'default',
    state,
    attempts: 0,
    createdAt: 1,
    updatedAt: seq,
    seq,
  }
}

describe.skipIf(!hasNatsServer)('turns on JetStream (3-node nats-server)', () => {
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    for (const nc of connections.splice(0)) await nc.close().catch(() => undefined)
    await cluster?.stop()
  })

  it('refuses ordered consumers and overlapping filters on a work-queue stream, so the turn stream is a limits stream', async () => {
    const jsm = await jetstreamManager(await connection(), { timeout: 10_000 })
    await jsm.streams.add({
      name: 'WQ_PROBE',
      subjects: ['wqprobe.>'],
      num_replicas: 3,
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      max_msgs_per_subject: 1,
    })
    const js = jsm.jetstream()
    await js.publish('wqprobe.main.a', 'first')
    await js.publish('wqprobe.main.a', 'second')
    // One message per subject holds on a work queue too …
    expect((await jsm.streams.info('WQ_PROBE')).state.messages).toBe(1)
    // … but the queue could not be read back by a new scheduler with an ordered consumer, …
    await expect(
      js.consumers.get('WQ_PROBE', { filter_subjects: 'wqprobe.main.>', deliver_policy: DeliverPolicy.All }),
    ).rejects.toThrow(/ack policy/)
    // … nor by two nodes at once (an old and a new scheduler) with durable ones.
    await jsm.consumers.add('WQ_PROBE', {
      durable_name: 'one',
      ack_policy: AckPolicy.Explicit,
      filter_subject: 'wqprobe.main.>',
    })
    await expect(
      jsm.consumers.add('WQ_PROBE', {
        durable_name: 'two',
        ack_policy: AckPolicy.Explicit,
        filter_subject: 'wqprobe.main.>',
      }),
    ).rejects.toThrow(/not unique/)
  }, 30_000)

  it('keeps one record per turn, the latest, purges a deleted one, and rebuilds one pool', async () => {
    const nc = await connection()
    const jsm = await jetstreamManager(nc, { timeout: 10_000 })
    const js = jsm.jetstream()
    const names = turnStreamNames('store')
    await openTurnStream({ jsm, names, replicas: 3 })
    await openTurnStream({ jsm, names, replicas: 3 })
    const main = createStreamTurnStore({ js, jsm, names, pool: 'main', logger })
    const other = createStreamTurnStore({ js, jsm, names, pool: 'other', logger })
    await Promise.all([
      main.save(turn('main~s.1~m1', 'main', 'queued', 1)),
      main.save(turn('main~s.1~m2', 'main', 'queued', 2)),
      other.save(turn('other~s.1~m1', 'other', 'queued', 1)),
    ])
    // Saved in the same moment: the later record replaces the earlier one before or after the write.
    const claimed = main.save(turn('main~s.1~m1', 'main', 'claimed', 3))
    const done = main.save(turn('main~s.1~m1', 'main', 'done', 4))
    await Promise.all([claimed, done])
    expect((await jsm.streams.info(names.stream)).state.messages).toBe(3)
    const rebuilt = await createStreamTurnStore({ js, jsm, names, pool: 'main', logger }).loadAll()
    expect(rebuilt.map((t) => [t.id, t.state])).toEqual([
      ['main~s.1~m1', 'done'],
      ['main~s.1~m2', 'queued'],
    ])
    await main.delete('main~s.1~m1')
    expect((await main.loadAll()).map((t) => t.id)).toEqual(['main~s.1~m2'])
    expect((await other.loadAll()).map((t) => t.id)).toEqual(['other~s.1~m1'])
    expect((await jsm.streams.info(names.stream)).state.messages).toBe(2)
    await main.close()
    // Retryable (503): the next scheduler answers it.
    await expect(main.save(turn('main~s.1~m3', 'main', 'queued', 5))).rejects.toMatchObject({
      code: 'storage-unavailable',
    })
  }, 30_000)

  it('rebuilds a queue of 2,000 turns from the stream within seconds', async () => {
    const nc = await connection()
    const jsm = await jetstreamManager(nc, { timeout: 10_000 })
    const js = jsm.jetstream()
    const names = turnStreamNames('rebuild')
    await openTurnStream({ jsm, names, replicas: 3 })
    const store = createStreamTurnStore({ js, jsm, names, pool: 'main', logger })
    const count = 2_000
    const savedAt = Date.now()
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        store.save(turn(`main~session-${i}~m1`, 'main', 'queued', i + 1)),
      ),
    )
    const saveMs = Date.now() - savedAt
    const info = await jsm.streams.info(names.stream)
    const loadedAt = Date.now()
    const loaded = await createStreamTurnStore({ js, jsm, names, pool: 'main', logger }).loadAll()
    const loadMs = Date.now() - loadedAt
    expect(loaded).toHaveLength(count)
    expect(new Set(loaded.map((t) => t.seq)).size).toBe(count)
    expect(loadMs).toBeLessThan(10_000)
    console.info(
      `turn stream: ${count} turns saved in ${saveMs} ms, read back in ${loadMs} ms, ` +
        `${Math.round(info.state.bytes / info.state.messages)} bytes per stored message`,
    )
    await store.close()
  }, 40_000)

  it('lets one node schedule a pool at a time, and a cut-off scheduler stops before another starts', async () => {
    const ttlMs = 3_000
    const names = turnStreamNames('lease')
    // One after the other, each with JetStream API calls waiting 20 s: created at once, with the
    // default 5 s, the creation timed out on the loaded machine.
    const opened: { holder: string; nc: NatsConnection; bucket: KV }[] = []
    for (const holder of ['n1', 'n2']) {
      const nc = await connection()
      const bucket = await new Kvm(jetstream(nc, { timeout: 20_000 })).create(names.leaders, {
        replicas: 3,
        history: 1,
        ttl: ttlMs,
        allow_direct: false,
      })
      opened.push({ holder, nc, bucket })
    }
    const periods: { holder: string; from: number; to?: number }[] = []
    const leaderships = opened.map(({ holder, bucket }) =>
      startPoolLeadership({
        bucket,
        pool: 'main',
        holder,
        ttlMs,
        logger,
        lead: async () => {
          const period: { holder: string; from: number; to?: number } = { holder, from: Date.now() }
          periods.push(period)
          return async () => {
            period.to = Date.now()
          }
        },
      }),
    )
    await until(() => leaderships.some((l) => l.isLeader), 10_000, 'a scheduler is elected')
    // A lease and a half later still one leader. (Under a heavy load a lease may move between
    // the nodes: never two leaders at once, checked over every period below.)
    const windowEnd = Date.now() + 1.5 * ttlMs
    await until(() => Date.now() >= windowEnd, 2 * ttlMs, 'a lease and a half')
    expect(leaderships.filter((l) => l.isLeader)).toHaveLength(1)
    const first = leaderships.findIndex((l) => l.isLeader)
    const cutOffAt = Date.now()
    const periodsBefore = periods.length
    // Its renewals now fail (its connection is gone, as in a partition or a hung process).
    await opened[first]!.nc.close()
    await until(() => leaderships[1 - first]!.isLeader, 5 * ttlMs, 'the other node takes the pool over')
    const old = periods[periodsBefore - 1]!
    const next = periods[periodsBefore]!
    expect(old.holder).toBe(opened[first]!.holder)
    expect(next.holder).toBe(opened[1 - first]!.holder)
    expect(old.to).toBeDefined()
    // The cut-off scheduler stopped within its lease less the margin, before the other started.
    expect(old.to! - cutOffAt).toBeLessThanOrEqual(ttlMs)
    for (let i = 1; i < periods.length; i++) {
      expect(periods[i - 1]!.to).toBeDefined()
      expect(periods[i]!.from).toBeGreaterThanOrEqual(periods[i - 1]!.to!)
    }
    expect(leaderships[first]!.isLeader).toBe(false)
    for (const leadership of leaderships) await leadership.close()
  }, 40_000)
})
