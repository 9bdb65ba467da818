// What a meta read (the compaction check's getMeta) asks of the nats-servers, counted by a
// subscription on $JS.API.> against a real 3-node cluster (issue 15, session 9): a session only
// this node writes is counted from this node's own acked appends, with no consumer on the log
// stream; anything written elsewhere is read from the stream; and the meta stays exact either way.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openWhenReady } from '../../server/cluster/cluster-store.js'
import { jetStreamNames, openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { createJetStreamStore, type JetStreamStore } from '../../server/cluster/jetstream-store.js'
import type { AppendEntry } from '../../server/persistence/store.js'
import { startJsApiCounter } from '../helpers/js-api-counter.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'

warnIfNoNatsServer(import.meta.url)

const quiet = pino({ level: 'silent' })
let cluster: NatsCluster | undefined
const opened: { store: JetStreamStore; nc: NatsConnection }[] = []
let namespaces = 0
/** A namespace of its own per test run (a retried test starts from empty streams too). */
const newNamespace = (name: string): string => `${name}${++namespaces}`

/** A store (a "node") of namespace `ns`, connected to the first nats-server only. */
async function openStore(namespace: string): Promise<JetStreamStore> {
  if (cluster === undefined) throw new Error('cluster not started')
  // The first server only: the counter below, on that server too, then sees each request before
  // the store gets its answer.
  const nc = await connect({ servers: cluster.urls[0]!, timeout: 5_000 })
  const resources = await openWhenReady(
    'open JetStream resources',
    () => openJetStreamResources({ nc, namespace }),
    { logger: quiet, retryForMs: 30_000 },
  )
  const store = createJetStreamStore({ resources })
  opened.push({ store, nc })
  return store
}

/** `rounds` × one entry per session, interleaved in the stream as a busy node's would be. */
function interleaved(sessions: readonly string[], rounds: number, tag: string): AppendEntry[] {
  const entries: AppendEntry[] = []
  for (let round = 0; round < rounds; round++) {
    for (const sessionId of sessions) {
      entries.push({
        sessionId,
        time: 1_000 + round,
        update: new TextEncoder().encode(`${tag}-${sessionId}-${round}`),
      })
    }
  }
  return entries
}

/** The API requests `read` makes, by kind without the namespace's stream suffix. */
async function requestsOf(namespace: string, read: () => Promise<unknown>): Promise<Record<string, number>> {
  const counter = await startJsApiCounter(cluster!.urls[0]!)
  try {
    await read()
  } finally {
    await counter.flush()
  }
  const { byKind } = await counter.stop()
  const suffix = `_${namespace}`
  return Object.fromEntries(Object.entries(byKind).map(([kind, count]) => [kind.replace(suffix, ''), count]))
}

describe.skipIf(!hasNatsServer)('the meta reads of the JetStream store', () => {
  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    for (const { store, nc } of opened) {
      await store.close()
      await nc.close()
    }
    await cluster?.stop()
  })

  it('counts the appends of a session only this node writes without a consumer on the log (regression: the check walked every session’s messages on nats-server 2.9)', async () => {
    const namespace = newNamespace('solo')
    const node = await openStore(namespace)
    const sessions = ['a', 'b', 'c', 'd']
    await node.append(interleaved(sessions, 30, 'first'))
    const names = jetStreamNames()
    // One listing of the checkpoint index, the subject's last seq, its message count: no
    // consumer create, fetch or delete (each of which made 2.9.10 walk the stream).
    const threeRequests = {
      [`STREAM.INFO.KV_${names.index} subjects_filter`]: 1,
      [`STREAM.MSG.GET.${names.stream} last_by_subj`]: 1,
      [`STREAM.INFO.${names.stream} subjects_filter`]: 1,
    }
    // This node started the sessions: even their first read counts its appends.
    expect(await requestsOf(namespace, () => node.getMeta('a'))).toEqual(threeRequests)
    await node.append(interleaved(sessions, 40, 'second'))
    expect(await requestsOf(namespace, () => node.getMeta('a'))).toEqual(threeRequests)
    // And exact: another store with no tally reads the whole log for the same figures.
    const fresh = await openStore(namespace)
    const meta = await node.getMeta('a')
    expect(meta).toEqual(await fresh.getMeta('a'))
    expect(meta).toMatchObject({ logCount: 70, sinceCheckpoint: { count: 70 } })
  })

  it('reads the log for what another node appended, and counts exactly', async () => {
    const namespace = newNamespace('pair')
    const node = await openStore(namespace)
    const other = await openStore(namespace)
    await node.append(interleaved(['a', 'b'], 20, 'mine'))
    await node.getMeta('a')
    await other.append(interleaved(['a', 'b'], 5, 'theirs'))
    await node.append(interleaved(['a', 'b'], 10, 'mine-again'))

    const requests = await requestsOf(namespace, () => node.getMeta('a'))
    expect(requests[`CONSUMER.CREATE.${jetStreamNames().stream}`]).toBe(1)
    expect(await node.getMeta('a')).toEqual(await (await openStore(namespace)).getMeta('a'))
    expect((await node.getMeta('a'))?.logCount).toBe(35)

    // Once the stream's copy is read, this node's own appends are counted without it again.
    await node.append(interleaved(['a', 'b'], 10, 'mine-later'))
    const after = await requestsOf(namespace, () => node.getMeta('a'))
    expect(after[`CONSUMER.CREATE.${jetStreamNames().stream}`]).toBeUndefined()
    expect((await node.getMeta('a'))?.logCount).toBe(45)
  })

  it('counts the entries above a new checkpoint exactly, and those written after it without a consumer', async () => {
    const namespace = newNamespace('checkpoint')
    const node = await openStore(namespace)
    const seqs = await node.append(interleaved(['a', 'b'], 20, 'before'))
    await node.getMeta('a')
    const aSeqs = seqs.filter((_, i) => i % 2 === 0)
    // A checkpoint at a's 15th entry: 5 of its 20 entries lie above it.
    await node.putCheckpoint('a', { seq: aSeqs[14]!, time: 2_000, state: new Uint8Array([0, 0]) })
    expect((await node.getMeta('a'))?.sinceCheckpoint).toEqual({ count: 5, bytes: 5 * 'before-a-15'.length })

    await node.append(interleaved(['a', 'b'], 4, 'after'))
    const requests = await requestsOf(namespace, () => node.getMeta('a'))
    expect(requests[`CONSUMER.CREATE.${jetStreamNames().stream}`]).toBeUndefined()
    const meta = await node.getMeta('a')
    expect(meta?.sinceCheckpoint).toEqual({
      count: 9,
      bytes: 5 * 'before-a-15'.length + 4 * 'after-a-0'.length,
    })
    expect(meta).toEqual(await (await openStore(namespace)).getMeta('a'))
  })

  it('counts without a consumer after a checkpoint at the last entry, as a compaction of a quiet session leaves it', async () => {
    const namespace = newNamespace('quiet')
    const node = await openStore(namespace)
    const seqs = await node.append(interleaved(['a', 'b'], 10, 'before'))
    await node.getMeta('a')
    await node.append(interleaved(['b'], 5, 'other'))
    await node.putCheckpoint('a', { seq: seqs[18]!, time: 2_000, state: new Uint8Array([0, 0]) })
    expect((await node.getMeta('a'))?.sinceCheckpoint).toEqual({ count: 0, bytes: 0 })

    await node.append(interleaved(['a', 'b'], 3, 'after'))
    const requests = await requestsOf(namespace, () => node.getMeta('a'))
    expect(requests[`CONSUMER.CREATE.${jetStreamNames().stream}`]).toBeUndefined()
    expect((await node.getMeta('a'))?.sinceCheckpoint).toEqual({ count: 3, bytes: 3 * 'after-a-0'.length })
  })
})
