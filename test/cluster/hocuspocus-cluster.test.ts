// Stock Hocuspocus providers (@hocuspocus/provider 3.4.4 and 4.8.0) against a 3-node Colloquy
// cluster with a secret: one client per node, each with two documents on its one socket and a
// token per document. Edits made on every node converge on every node, unsynced changes reach 0
// (an ack in cluster mode: R3 JetStream and the node's fsync'd outbox), presence crosses nodes, a
// token for another document is refused on any node, and the clients of a node killed with SIGKILL
// leave everyone's presence within seconds.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mintToken } from '../../server/auth/tokens.js'
import { type ColloquyCluster, startColloquyCluster } from '../helpers/colloquy-cluster.js'
import { hasNatsServer, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { until } from '../helpers/wait.js'
import {
  connectHocuspocus,
  type HocuspocusClient,
  type HocuspocusDocument,
  type HocuspocusVersion,
} from '../real-clients/hocuspocus-providers.js'

warnIfNoNatsServer(import.meta.url)

const secret = 'a-cluster-test-secret-that-is-long-enough'
const DOCUMENTS = ['notes', 'todo'] as const
/** One client per node, the two provider releases mixed. */
const VERSIONS: readonly HocuspocusVersion[] = ['3.4.4', '4.8.0', '3.4.4']

describe.skipIf(!hasNatsServer)('stock Hocuspocus providers on a 3-node Colloquy cluster', () => {
  let cluster: ColloquyCluster
  let secretDir: string
  const clients: HocuspocusClient[] = []
  /** documents[node][document] */
  const documents: HocuspocusDocument[][] = []

  const token = (peer: string, sessionId: string): Promise<string> =>
    mintToken({ secret, peerId: peer, role: 'write', sessionId })

  beforeAll(async () => {
    secretDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-hp-cluster-'))
    const secretFile = path.join(secretDir, 'secret')
    await writeFile(secretFile, `${secret}\n`)
    cluster = await startColloquyCluster({ args: ['--secret-file', secretFile] })
  }, 90_000)

  afterAll(async () => {
    for (const client of clients) client.destroy()
    await cluster?.stop()
    if (secretDir !== undefined) await rm(secretDir, { recursive: true, force: true })
  })

  it('converges edits made on every node, acks them, and carries presence across nodes', async () => {
    for (const [i, node] of cluster.nodes.entries()) {
      const client = connectHocuspocus(`${node.url}/hocuspocus`, VERSIONS[i]!)
      clients.push(client)
      documents.push(
        await Promise.all(DOCUMENTS.map(async (name) => client.open(name, await token(`user-${i}`, name)))),
      )
    }
    const all = documents.flat()
    await until(() => all.every((d) => d.scope === 'read-write' && d.synced), 20_000, 'every document synced')

    // Bounded: 3 clients × 2 documents × 20 items, written while the others' are in flight.
    for (let round = 0; round < 20; round++)
      for (const [i, docs] of documents.entries())
        for (const d of docs) d.doc.getArray<string>('items').push([`${i}:${d.name}:${round}`])
    const expected = documents.length * 20
    await until(
      () => all.every((d) => d.doc.getArray('items').length === expected),
      30_000,
      'every item on every node',
    )
    for (const [k] of DOCUMENTS.entries()) {
      const first = JSON.stringify(documents[0]![k]!.doc.getArray('items').toJSON())
      for (const docs of documents)
        expect(JSON.stringify(docs[k]!.doc.getArray('items').toJSON())).toBe(first)
      expect(new Set(documents[0]![k]!.doc.getArray<string>('items').toArray()).size).toBe(expected)
    }
    // Each item only in its own document: the documents on one socket stay apart across nodes.
    for (const docs of documents)
      for (const d of docs)
        expect(
          d.doc
            .getArray<string>('items')
            .toArray()
            .every((item) => item.includes(`:${d.name}:`)),
        ).toBe(true)
    // Unsynced changes reach 0 only once each node acked (stored by JetStream R3 and fsync'd).
    await until(() => all.every((d) => d.unsyncedChanges === 0), 30_000, 'every change acked')

    // Presence: each client's user field reaches the clients on the other nodes.
    for (const [i, docs] of documents.entries())
      docs[0]!.provider.setAwarenessField('user', { name: `user-${i}` })
    const namesSeenBy = (d: HocuspocusDocument): string[] =>
      [...d.provider.awareness!.getStates().values()]
        .map((state) => (state as { user?: { name?: string } }).user?.name)
        .filter((name): name is string => name !== undefined)
        .sort()
    await until(
      () => documents.every((docs) => namesSeenBy(docs[0]!).join() === 'user-0,user-1,user-2'),
      20_000,
      'every user seen on every node',
    )
  }, 120_000)

  it('refuses, on any node, a token that does not cover its document, and keeps the socket', async () => {
    const client = connectHocuspocus(`${cluster.nodes[2]!.url}/hocuspocus`, '4.8.0')
    clients.push(client)
    const refused = client.open('secret-plans', await token('intruder', 'notes'))
    const allowed = client.open('notes', await token('intruder', 'notes'))
    await until(() => refused.denials.length > 0 && allowed.synced, 20_000, 'refused and allowed')
    expect(refused.denials[0]).toBe('4403 token not valid for this session')
    expect(allowed.doc.getArray('items').length).toBe(documents.length * 20)
    expect(client.isConnected).toBe(true)
    allowed.destroy()
    refused.destroy()
  }, 60_000)

  it("drops the presence of a killed node's clients from the other nodes within seconds", async () => {
    await cluster.nodes[0]!.kill()
    const killedAt = Date.now()
    const seesUser0 = (d: HocuspocusDocument): boolean =>
      [...d.provider.awareness!.getStates().values()].some(
        (state) => (state as { user?: { name?: string } }).user?.name === 'user-0',
      )
    await until(
      () => !seesUser0(documents[1]![0]!) && !seesUser0(documents[2]![0]!),
      20_000,
      'user-0 gone from nodes 2 and 3',
    )
    const tookMs = Date.now() - killedAt
    console.log(`hocuspocus presence of the killed node's client gone after ${tookMs} ms`)
    // The survivors still converge between themselves.
    documents[1]![1]!.doc.getArray<string>('items').push(['after-kill'])
    await until(
      () => documents[2]![1]!.doc.getArray<string>('items').toArray().includes('after-kill'),
      20_000,
      'an edit after the kill reaches the third node',
    )
  }, 60_000)
})
