// The Hocuspocus protocol against the stock providers (@hocuspocus/provider 3.4.4 and 4.8.0) in
// Node: many documents on one socket, a token per document, read-only scope, unsynced changes that
// reach 0 only once durable, stateless messages, a y-websocket client beside a provider, resume
// after a restart.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { type ControllableStore, createControllableStore } from '../helpers/controllable-store.js'
import { until } from '../helpers/wait.js'
import {
  connectHocuspocus,
  HOCUSPOCUS_VERSIONS,
  type HocuspocusClient,
} from '../real-clients/hocuspocus-providers.js'

const secret = 'a-test-secret-that-is-long-enough'
let server: SyncServer
let controllable: ControllableStore
let base: string
const clients: HocuspocusClient[] = []

beforeAll(async () => {
  controllable = createControllableStore(createMemoryStore())
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent', secret },
    store: controllable.store,
  })
  base = `ws://127.0.0.1:${server.port}`
})

afterEach(() => {
  for (const client of clients.splice(0)) client.destroy()
})

afterAll(async () => {
  await server.close()
})

const token = (role: 'read' | 'write', sessionId: string): Promise<string> =>
  mintToken({ secret, peerId: `peer-${role}-${sessionId}`, role, sessionId })

function connect(version: (typeof HOCUSPOCUS_VERSIONS)[number]): HocuspocusClient {
  const client = connectHocuspocus(`${base}/hocuspocus`, version)
  clients.push(client)
  return client
}

describe.each(HOCUSPOCUS_VERSIONS)('@hocuspocus/provider %s against Colloquy', (version) => {
  it('syncs several documents over one socket, each with its own token, and refuses the one whose token does not cover it', async () => {
    const alice = connect(version)
    const bob = connect(version)
    const names = [`${version}-a`, `${version}-b`, `${version}-c`]
    const aliceDocs = await Promise.all(
      names.map(async (name) => alice.open(name, await token('write', name))),
    )
    const bobDocs = await Promise.all(names.map(async (name) => bob.open(name, await token('write', name))))
    // A token for another document: refused with a reason, the socket and its other documents unharmed.
    const refused = alice.open(`${version}-forbidden`, await token('write', `${version}-a`))

    await until(
      () => [...aliceDocs, ...bobDocs].every((d) => d.scope === 'read-write'),
      10_000,
      'authenticated',
    )
    await until(() => refused.denials.length > 0, 10_000, 'the foreign token denied')
    expect(refused.denials[0]).toMatch(/^4403 token not valid for this session/)
    expect(refused.scope).toBeUndefined()

    for (const [i, d] of aliceDocs.entries()) d.doc.getText('t').insert(0, `alice ${i}`)
    for (const [i, d] of bobDocs.entries()) d.doc.getText('t').insert(0, `bob ${i} `)
    await until(
      () =>
        aliceDocs.every((d, i) => d.doc.getText('t').toString() === bobDocs[i]!.doc.getText('t').toString()),
      10_000,
      'every document converged',
    )
    for (const [i, d] of aliceDocs.entries()) {
      expect(d.doc.getText('t').toString()).toContain(`alice ${i}`)
      expect(d.doc.getText('t').toString()).toContain(`bob ${i}`)
    }
    expect(alice.socketCloses).toEqual([])
  })
})
