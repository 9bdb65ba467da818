// The Hocuspocus protocol against the stock providers (@hocuspocus/provider 3.4.4 and 4.8.0) in
// Node: many documents on one socket, a token per document, read-only scope, unsynced changes that
// reach 0 only once durable, stateless messages, a y-websocket client beside a provider, resume
// after a restart.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { type ControllableStore, createControllableStore } from '../helpers/controllable-store.js'
import { startTcpForwarder } from '../helpers/tcp-forwarder.js'
import { startTestServer } from '../helpers/test-server.js'
import { until } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'
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
  server = await startTestServer({ secret }, { store: controllable.store })
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

  it('grants a read-only token the readonly scope: it reads everything, its edits are refused with sync-status 0', async () => {
    const name = `${version}-readonly`
    const writer = connect(version).open(name, await token('write', name))
    const reader = connect(version).open(name, await token('read', name))
    await until(() => writer.scope === 'read-write' && reader.scope === 'readonly', 10_000, 'scopes granted')
    writer.doc.getText('t').insert(0, 'from the writer')
    await until(() => reader.doc.getText('t').toString() === 'from the writer', 10_000, 'reader fed')
    await until(() => reader.unsyncedChanges === 0, 10_000, "the reader's initial sync acknowledged")

    reader.doc.getText('t').insert(0, 'vandalism ')
    // The refusal arrives as sync-status 0: the count stays, the provider is not told it lost its auth.
    await until(() => reader.unsyncedChanges === 1, 10_000, 'the refused edit still counted')
    writer.doc.getText('t').insert(0, 'more ')
    await until(() => reader.doc.getText('t').toString().includes('more '), 10_000, 'reader still fed')
    expect(writer.doc.getText('t').toString()).toBe('more from the writer')
    expect(server.registry.get(name)?.document.getText('t').toString()).toBe('more from the writer')
    expect(reader.denials).toEqual([])
    expect(reader.unsyncedChanges).toBe(1)
  })

  it('counts an edit as unsynced until its update is on disk, not merely received', async () => {
    const name = `${version}-durable`
    const editor = connect(version).open(name, await token('write', name))
    await until(
      () => editor.scope === 'read-write' && editor.unsyncedChanges === 0,
      10_000,
      'initial sync acked',
    )
    const calls = controllable.appendCalls
    const release = controllable.hold()
    try {
      editor.doc.getText('t').insert(0, 'held')
      await controllable.whenAppendCalls(calls + 1)
      // The server has the update (it is being written) but the commit has not returned.
      await until(
        () => server.registry.get(name)?.document.getText('t').toString() === 'held',
        10_000,
        'applied',
      )
      expect(editor.unsyncedChanges).toBe(1)
    } finally {
      release()
    }
    await until(() => editor.unsyncedChanges === 0, 10_000, 'acknowledged once durable')
    expect(await server.store.load(name)).toMatchObject({ log: [expect.anything()] })
  })

  it('settles the count a periodic forced sync resets (forceSyncInterval) once everything is durable', async () => {
    const name = `${version}-force-sync`
    const editor = connect(version).open(name, await token('write', name), undefined, {
      forceSyncInterval: 100,
    })
    await until(
      () => editor.scope === 'read-write' && editor.unsyncedChanges === 0,
      10_000,
      'initial sync acked',
    )
    editor.doc.getText('t').insert(0, 'edit')
    const counts: number[] = []
    editor.provider.on('unsyncedChanges', ({ number }: { number: number }) => counts.push(number))
    // Several forced syncs: each resets the count to 1, and each must come back to 0.
    await until(() => counts.filter((n) => n === 1).length >= 3, 10_000, 'forced syncs')
    await until(() => editor.unsyncedChanges === 0, 10_000, 'settled after a forced sync')
    expect(counts.at(-1)).toBe(0)
  })

  it('keeps a lone provider connected: its own awareness comes back, so its silence timeout never fires', async () => {
    // The provider closes a socket that received nothing for messageReconnectTimeout (30 s), counting
    // on its awareness renewal (every 15 s) to come back. Here: a 1.5 s timeout, a renewal every 300 ms.
    const client = connectHocuspocus(`${base}/hocuspocus`, version, { messageReconnectTimeout: 1_500 })
    clients.push(client)
    const name = `${version}-alone`
    const alone = client.open(name, await token('write', name))
    await until(() => alone.synced && client.isConnected, 10_000, 'open')
    const started = Date.now()
    // Paces the renewals (the provider's own 15 s timer, faster); bounded to 4 s.
    for (let i = 0; Date.now() - started < 4_000; i++) {
      alone.provider.setAwarenessField('tick', i)
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
    expect(client.socketCloses).toEqual([])
    expect(client.isConnected).toBe(true)
  })

  it("shows the provider a document the server closes (token expired) with its reason; the socket's other document goes on", async () => {
    const client = connect(version)
    const name = `${version}-expiring`
    const expiring = client.open(
      name,
      await mintToken({ secret, peerId: 'brief', role: 'write', sessionId: name, ttlSeconds: 1 }),
    )
    const other = client.open(`${name}-other`, await token('write', `${name}-other`))
    await until(() => expiring.scope === 'read-write' && other.scope === 'read-write', 10_000, 'open')
    await until(() => expiring.closes.length > 0, 10_000, 'the expired document closed')
    expect(expiring.closes).toEqual(['4301 token expired'])
    other.doc.getText('t').insert(0, 'still open')
    await until(() => other.unsyncedChanges === 0, 10_000, 'the other document acknowledged')
    expect(client.socketCloses).toEqual([])
  })

  it('relays stateless messages to the same document on other sockets only, and stores none of them', async () => {
    const name = `${version}-stateless`
    const sender = connect(version).open(name, await token('write', name))
    const receiver = connect(version).open(name, await token('write', name))
    const elsewhere = connect(version).open(`${name}-other`, await token('write', `${name}-other`))
    await until(() => [sender, receiver, elsewhere].every((d) => d.scope === 'read-write'), 10_000, 'open')
    const counted = async (): Promise<number> =>
      (await server.metrics.statelessMessages.get()).values[0]?.value ?? 0
    const before = await counted()
    sender.provider.sendStateless('{"signal":"typing"}')
    await until(() => receiver.stateless.length === 1, 10_000, 'stateless relayed')
    expect(receiver.stateless).toEqual(['{"signal":"typing"}'])
    expect(sender.stateless).toEqual([])
    expect(elsewhere.stateless).toEqual([])
    expect(server.registry.get(name)?.lastSeq).toBe(0)
    expect(await counted()).toBe(before + 1)
  })

  it('closes one document when the provider detaches: its presence leaves, the socket and its other documents stay', async () => {
    const name = `${version}-detach`
    const watcher = connect(version).open(name, await token('write', name))
    const client = connect(version)
    const leaving = client.open(name, await token('write', name))
    const staying = client.open(`${name}-2`, await token('write', `${name}-2`))
    leaving.provider.setAwarenessField('user', { name: 'leaving' })
    await until(() => watcher.provider.awareness!.getStates().size === 2, 10_000, 'presence seen')
    leaving.provider.detach()
    await until(() => watcher.provider.awareness!.getStates().size === 1, 10_000, 'presence removed')
    await until(() => server.registry.get(name)?.connections.size === 1, 10_000, 'one connection left')
    staying.doc.getText('t').insert(0, 'still here')
    await until(() => staying.unsyncedChanges === 0 && staying.synced, 10_000, 'other document still syncing')
    expect(client.socketCloses).toEqual([])
  })
})

describe('a y-websocket client and a Hocuspocus provider on one session', () => {
  it('see each other’s edits and presence', async () => {
    const name = 'mixed-protocols'
    const hocus = connect('3.4.4').open(name, await token('write', name))
    const classic = new WebsocketProvider(base, name, new Y.Doc(), {
      WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
      disableBc: true,
      params: { token: await token('write', name) },
    })
    try {
      hocus.provider.setAwarenessField('user', { name: 'hocus' })
      classic.awareness.setLocalStateField('user', { name: 'classic' })
      hocus.doc.getText('t').insert(0, 'from hocuspocus ')
      classic.doc.getText('t').insert(0, 'from y-websocket ')
      await until(
        () =>
          hocus.doc.getText('t').toString() === classic.doc.getText('t').toString() &&
          hocus.doc.getText('t').length > 20,
        10_000,
        'documents converged',
      )
      const names = (states: Map<number, Record<string, unknown>>): string[] =>
        [...states.values()].map((state) => (state.user as { name: string } | undefined)?.name ?? '').sort()
      await until(
        () => names(hocus.provider.awareness!.getStates()).join() === 'classic,hocus',
        10_000,
        'hocus sees both',
      )
      await until(
        () => names(classic.awareness.getStates()).join() === 'classic,hocus',
        10_000,
        'classic sees both',
      )
    } finally {
      classic.destroy()
    }
  })
})

describe('the path', () => {
  it('serves Hocuspocus under /hocuspocus/<anything> and leaves session ids that merely start with "hocuspocus" classic', async () => {
    const hocus = connectHocuspocus(`${base}/hocuspocus/my-app`, '4.8.0')
    clients.push(hocus)
    const viaAppPath = hocus.open('path-app', await token('write', 'path-app'))
    await until(
      () => viaAppPath.scope === 'read-write' && viaAppPath.synced,
      10_000,
      'open under /hocuspocus/my-app',
    )
    const classic = await connectWsPeer(
      base,
      `hocuspocus-notes?token=${await token('write', 'hocuspocus-notes')}`,
    )
    try {
      await classic.whenSynced()
      classic.peer.doc.getText('t').insert(0, 'classic')
      await classic.peer.whenAcked(classic.peer.requestAck())
      expect(server.registry.get('hocuspocus-notes')?.document.getText('t').toString()).toBe('classic')
    } finally {
      classic.close()
    }
  })
})

describe('a document cap per socket', () => {
  it('refuses the document past --max-documents-per-socket with 4531, keeping the others', async () => {
    const capped = await startTestServer({ secret, maxDocumentsPerSocket: 2 })
    const client = connectHocuspocus(`ws://127.0.0.1:${capped.port}/hocuspocus`, '4.8.0')
    try {
      const open = [
        client.open('cap-1', await token('write', 'cap-1')),
        client.open('cap-2', await token('write', 'cap-2')),
      ]
      await until(() => open.every((d) => d.scope === 'read-write'), 10_000, 'two open')
      const third = client.open('cap-3', await token('write', 'cap-3'))
      await until(() => third.denials.length > 0, 10_000, 'third refused')
      expect(third.denials[0]).toBe('4531 too many documents on this socket')
      open[0]!.doc.getText('t').insert(0, 'x')
      await until(() => open[0]!.unsyncedChanges === 0, 10_000, 'first still syncs')
    } finally {
      client.destroy()
      await capped.close()
    }
  })
})

describe('a server restart', () => {
  it.each(HOCUSPOCUS_VERSIONS)(
    'is survived by provider %s: it reconnects, re-authenticates each document and resumes by state vector',
    async (version) => {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-hocus-restart-'))
      const config = { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', secret }
      let first: SyncServer | undefined = await startSyncServer({ config })
      // The provider keeps one address while the server behind it restarts on a new port.
      const forwarder = await startTcpForwarder(first.port)
      const client = connectHocuspocus(`ws://127.0.0.1:${forwarder.port}/hocuspocus`, version)
      let second: SyncServer | undefined
      try {
        const [a, b] = [`restart-a-${version}`, `restart-b-${version}`]
        const docs = [client.open(a, () => token('write', a)), client.open(b, () => token('write', b))]
        docs[0]!.doc.getText('t').insert(0, 'before')
        await until(
          () => docs.every((d) => d.scope === 'read-write') && docs[0]!.unsyncedChanges === 0,
          10_000,
          'durable',
        )
        await first.close()
        first = undefined
        await until(() => !client.isConnected, 10_000, 'socket lost')
        // Edits made while the server is down reach it on reconnect.
        docs[1]!.doc.getText('t').insert(0, 'offline')
        second = await startSyncServer({ config })
        forwarder.setTarget(second.port)
        await until(() => client.isConnected, 15_000, 'reconnected')
        await until(() => docs[1]!.unsyncedChanges === 0, 15_000, 'offline edit acknowledged')
        expect(second.registry.get(a)?.document.getText('t').toString()).toBe('before')
        expect(second.registry.get(b)?.document.getText('t').toString()).toBe('offline')
        expect(client.socketCloses.length).toBeGreaterThan(0)
      } finally {
        client.destroy()
        await first?.close()
        await second?.close()
        await forwarder.close()
        await rm(dataDir, { recursive: true, force: true })
      }
    },
  )
})
