// Compaction on the JetStream store, against a shadow log the test keeps: two compactors at once
// (two nodes, no lease) and a compactor killed at each of its writes must leave state-at-seq,
// state-at-time, fork and export equal to a replay of the shadow log; and the KV lease.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { openWhenReady } from '../../server/cluster/cluster-store.js'
import { createKvLeases } from '../../server/cluster/compaction-lease.js'
import { type JetStreamResources, openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore } from '../../server/cluster/jetstream-store.js'
import { compactSession } from '../../server/compaction/compactor.js'
import { createInlineMerger } from '../../server/compaction/merge.js'
import type { Store } from '../../server/persistence/store.js'
import type { ColloquyError } from '../../shared/errors.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { expectHistoryMatches, SHADOW_SESSION, type ShadowEntry, write } from '../helpers/shadow-history.js'

warnIfNoNatsServer(import.meta.url)

const SESSION = SHADOW_SESSION
// Every checkpoint is old at once: compaction trims the log through its checkpoint each time.
const retention = { keepLogMs: 0, keepCheckpointsMs: 10 * 365 * 86_400_000, checkpointSpacingMs: 0 }
const compactNow = (): number => 1_000_000_000

let cluster: NatsCluster | undefined

async function openNode(
  namespace: string,
): Promise<{ store: Store; resources: JetStreamResources; nc: NatsConnection }> {
  if (cluster === undefined) throw new Error('cluster not started')
  const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
  // Retried as a node does, bounded: the meta leader may be electing on a loaded machine.
  const resources = await openWhenReady(
    'open JetStream resources',
    () => openJetStreamResources({ nc, namespace, leaseTtlMs: 1_000 }),
    { logger: pino({ level: 'silent' }), retryForMs: 30_000 },
  ).catch(async (error: unknown) => {
    await nc.close()
    throw error
  })
  return { store: createJetStreamStore({ resources, onClose: () => nc.close() }), resources, nc }
}

/** A store whose writes fail from the `killAt`-th on, as if its process died there. */
function killedAt(resources: JetStreamResources, killAt: number): { store: Store; writes: () => number } {
  let writes = 0
  const maybeDie = (): void => {
    writes++
    if (writes >= killAt) throw new Error(`killed at write ${killAt}`)
  }
  const writing = new Set(['putBlob', 'delete', 'put', 'purge', 'create'])
  const wrap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(object, property, receiver) {
        const value: unknown = Reflect.get(object, property, receiver)
        if (typeof value !== 'function') return value
        if (typeof property === 'string' && writing.has(property)) {
          return (...args: unknown[]) => {
            maybeDie()
            return (value as (...a: unknown[]) => unknown).apply(object, args)
          }
        }
        return (value as (...a: unknown[]) => unknown).bind(object)
      },
    })
  const jsm = new Proxy(resources.jsm, {
    get(object, property, receiver) {
      if (property === 'streams') return wrap(object.streams)
      const value: unknown = Reflect.get(object, property, receiver)
      return typeof value === 'function' ? (value as () => unknown).bind(object) : value
    },
  })
  const dying: JetStreamResources = {
    ...resources,
    jsm,
    states: wrap(resources.states),
    updates: wrap(resources.updates),
    index: wrap(resources.index),
  }
  return { store: createJetStreamStore({ resources: dying }), writes: () => writes }
}

describe.skipIf(!hasNatsServer)('compaction on the JetStream store (3-node cluster)', () => {
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('leaves history equal to the shadow log when two compactors run at once', async () => {
    const a = await openNode('twice')
    const b = await openNode('twice')
    try {
      const shadow: ShadowEntry[] = []
      const docs = [new Y.Doc(), new Y.Doc()]
      const merger = createInlineMerger()
      // Bounded: 4 rounds of 12 appends, two compactors each round.
      for (let round = 0; round < 4; round++) {
        await write([a.store, b.store], shadow, docs, 12)
        const runs = await Promise.allSettled([
          compactSession(SESSION, { store: a.store, merger, retention, now: compactNow }),
          compactSession(SESSION, { store: b.store, merger, retention, now: compactNow, pageSize: 5 }),
        ])
        for (const run of runs) {
          // Wasted work is allowed (a refusal after the other one trimmed); anything else is not.
          if (run.status === 'rejected') expect((run.reason as ColloquyError).code).toBe('internal')
        }
        expect(runs.some((run) => run.status === 'fulfilled')).toBe(true)
        await expectHistoryMatches(a.store, shadow)
        await expectHistoryMatches(b.store, shadow)
      }
      expect((await a.store.getMeta(SESSION))?.trimmedThrough).toBeGreaterThan(0)
    } finally {
      await a.store.close()
      await b.store.close()
    }
  }, 120_000)

  it('leaves history equal to the shadow log when a compactor is killed at any of its writes', async () => {
    const node = await openNode('killed')
    try {
      const shadow: ShadowEntry[] = []
      const docs = [new Y.Doc()]
      const merger = createInlineMerger()
      let killAt = 1
      // Bounded: at most 8 kill points; each round kills one write further in than the last.
      for (; killAt <= 8; killAt++) {
        await write([node.store], shadow, docs, 6)
        const dying = killedAt(node.resources, killAt)
        const outcome = await compactSession(SESSION, {
          store: dying.store,
          merger,
          retention,
          now: compactNow,
        }).then(
          () => 'finished',
          () => 'killed',
        )
        await expectHistoryMatches(node.store, shadow)
        if (outcome === 'finished') break
      }
      expect(killAt, 'the compaction got past every write it makes').toBeGreaterThan(3)
      // A healthy compactor afterwards completes the work.
      await write([node.store], shadow, docs, 3)
      await compactSession(SESSION, { store: node.store, merger, retention, now: compactNow })
      await expectHistoryMatches(node.store, shadow)
    } finally {
      await node.store.close()
    }
  }, 120_000)

  it('gives a session’s compaction lease to one node at a time, and again once released or expired', async () => {
    const a = await openNode('lease')
    const b = await openNode('lease')
    try {
      const leasesA = createKvLeases({ bucket: a.resources.leases, holder: 'node-a' })
      const leasesB = createKvLeases({ bucket: b.resources.leases, holder: 'node-b' })
      const [first, second] = await Promise.all([leasesA.acquire(SESSION), leasesB.acquire(SESSION)])
      expect([first, second].filter((lease) => lease !== undefined)).toHaveLength(1)
      expect(await leasesA.acquire('other')).toBeDefined()
      await (first ?? second)!.release()
      const again = await leasesB.acquire(SESSION)
      expect(again).toBeDefined()
      // Not released (a compactor killed mid-run): the lease expires with the bucket's ttl (1 s).
      const deadline = Date.now() + 10_000
      let taken = await leasesA.acquire(SESSION)
      while (taken === undefined && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200))
        taken = await leasesA.acquire(SESSION)
      }
      expect(taken).toBeDefined()
    } finally {
      await a.store.close()
      await b.store.close()
    }
  }, 60_000)
})
