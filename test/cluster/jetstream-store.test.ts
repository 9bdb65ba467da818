// The Store contract against the JetStream store on a real 3-node nats-server cluster (R3), each
// test in its own namespace (stream, buckets) of one cluster per file; plus what only a cluster
// store has: two nodes appending to one session, sparse seqs, large updates beyond max_payload.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore, type JetStreamStore } from '../../server/cluster/jetstream-store.js'
import { runStoreContract } from '../contract/store-contract.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'

warnIfNoNatsServer(import.meta.url)

let cluster: NatsCluster | undefined
let namespaces = 0

async function openStore(namespace: string): Promise<{ store: JetStreamStore; nc: NatsConnection }> {
  if (cluster === undefined) throw new Error('cluster not started')
  const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
  const resources = await openJetStreamResources({ nc, namespace })
  const store = createJetStreamStore({ resources, onClose: () => nc.close() })
  return { store, nc }
}

describe.skipIf(!hasNatsServer)('JetStream store on a 3-node cluster', () => {
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  runStoreContract('jetstream (R3)', async () => {
    const namespace = `t${++namespaces}`
    let current = await openStore(namespace)
    return {
      store: current.store,
      async reopen() {
        current = await openStore(namespace)
        return current.store
      },
      async cleanup() {
        await current.store.close()
      },
    }
  })

  it('numbers the appends of two nodes to one session in one increasing, sparse order', async () => {
    const a = await openStore('two')
    const b = await openStore('two')
    try {
      const update = (tag: string) => new TextEncoder().encode(tag)
      const rounds = 20
      const seqs = await Promise.all(
        Array.from({ length: rounds }, (_, i) =>
          Promise.all([
            a.store.append([
              { sessionId: 'shared', time: i, update: update(`a${i}`) },
              { sessionId: `own-${i % 3}`, time: i, update: update(`x${i}`) },
            ]),
            b.store.append([{ sessionId: 'shared', time: i, update: update(`b${i}`) }]),
          ]),
        ),
      )
      const sharedSeqs = seqs.flatMap(([fromA, fromB]) => [fromA[0]!, fromB[0]!]).sort((x, y) => x - y)
      expect(new Set(sharedSeqs).size).toBe(2 * rounds)
      const log = await b.store.readLog('shared')
      expect(log.map((entry) => entry.seq)).toEqual(sharedSeqs)
      // Sparse: the other sessions' entries took stream seqs in between.
      expect(sharedSeqs[sharedSeqs.length - 1]! - sharedSeqs[0]!).toBeGreaterThan(2 * rounds - 1)
      expect(await a.store.getMeta('shared')).toMatchObject({
        logCount: 2 * rounds,
        lastSeq: sharedSeqs.at(-1),
      })
      // What a relay's gap repair asks: the last seq in the log, then the entries after its own.
      expect(await a.store.lastLogSeq('shared')).toBe(sharedSeqs.at(-1))
      expect(await b.store.lastLogSeq('never-written')).toBe(0)
      const missed = await a.store.readLog('shared', { fromSeq: sharedSeqs[rounds]! + 1 })
      expect(missed.map((entry) => entry.seq)).toEqual(sharedSeqs.slice(rounds + 1))
    } finally {
      await a.store.close()
      await b.store.close()
    }
  })
})
