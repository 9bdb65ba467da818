// The sync client against the real server on 127.0.0.1 port 0 (LevelDB in a temp dir, or a store
// whose commits the test holds back): durable acks, reconnects, tokens, close codes, presence.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createNodeSyncClient } from '../../client/node.js'
import type { SyncClient, SyncClientOptions } from '../../client/sync-client.js'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeQueryAwareness } from '../../shared/protocol/message.js'
import { collectStatuses, nextStatus } from '../helpers/client-events.js'
import { createSocketRecorder, type SocketRecord } from '../helpers/client-sockets.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { until, withTimeout } from '../helpers/wait.js'

const FAST_BACKOFF = { initialMs: 20, maxMs: 200, jitter: 0.5 } as const

let dataDir: string
let servers: SyncServer[] = []
let clients: SyncClient[] = []
let releases: (() => void)[] = []

function config(port = 0): ServerConfig {
  return { ...DEFAULT_CONFIG, port, dataDir, logLevel: 'silent' }
}

async function startServer(options: { port?: number; store?: Store } = {}): Promise<SyncServer> {
  const server = await startSyncServer({
    config: config(options.port),
    ...(options.store === undefined ? {} : { store: options.store }),
  })
  servers.push(server)
  return server
}

/**
 * A port the OS handed out, to start a server on explicitly. Why not port 0 for a server that will
 * be restarted on its port: uSockets sets SO_REUSEADDR only when listening on a non-zero port, so
 * the connections it closed (TIME_WAIT) would block the restart's bind for a minute.
 */
async function reservePort(): Promise<number> {
  const probe = await startSyncServer({ config: { ...config(), store: 'memory' } })
  const { port } = probe
  await probe.close()
  return port
}

function urlOf(server: SyncServer): string {
  return `ws://127.0.0.1:${server.port}`
}

function client(options: SyncClientOptions): SyncClient {
  const created = createNodeSyncClient({ backoff: FAST_BACKOFF, ...options })
  clients.push(created)
  return created
}

function synced(target: SyncClient, label = 'client synced'): Promise<void> {
  return withTimeout(target.whenSynced(), 10_000, label)
}

function flushed(target: SyncClient, label = 'client flushed'): Promise<void> {
  return withTimeout(target.whenFlushed(), 10_000, label)
}

/**
 * A round trip on the raw socket: the server answers a query-awareness in order, so once the answer
 * is in, every frame the client sent before it has been handled by the server.
 */
function roundTrip(record: SocketRecord): Promise<void> {
  const before = record.framesReceived
  record.socket.send(encodeQueryAwareness())
  return until(() => record.framesReceived > before, 5_000, 'query-awareness answered')
}

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-client-'))
})

afterEach(async () => {
  for (const release of releases.splice(0)) release()
  await Promise.all(clients.splice(0).map((c) => c.destroy()))
  await Promise.all(servers.splice(0).map((s) => s.close()))
  servers = []
  clients = []
  releases = []
  await rm(dataDir, { recursive: true, force: true })
})

describe('sync client', () => {
  it('resolves whenFlushed only after the server durably acknowledged the edit', async () => {
    const controllable = createControllableStore(createMemoryStore())
    const server = await startServer({ store: controllable.store })
    const recorder = createSocketRecorder()
    const device = client({ url: urlOf(server), sessionId: 'flush', WebSocket: recorder.WebSocket })
    let flushedEvents = 0
    device.on('flushed', () => flushedEvents++)
    await synced(device)
    expect(device.hasLocalChanges).toBe(false)

    const release = controllable.hold()
    releases.push(release)
    device.doc.getText('t').insert(0, 'is this on disk?')
    expect(device.hasLocalChanges).toBe(true)
    let isFlushed = false
    const whenFlushed = device.whenFlushed().then(() => {
      isFlushed = true
    })
    // The commit holding the edit has started, and the server has handled the sync-status that
    // followed it: an ack now would be premature.
    await withTimeout(controllable.whenAppendCalls(1), 5_000, 'commit started')
    await roundTrip(recorder.last())
    expect(isFlushed).toBe(false)
    expect(device.hasLocalChanges).toBe(true)
    expect(controllable.appendSuccesses).toBe(0)

    release()
    await withTimeout(whenFlushed, 5_000, 'flushed after release')
    expect(controllable.appendSuccesses).toBeGreaterThanOrEqual(1)
    expect(device.hasLocalChanges).toBe(false)
    expect(flushedEvents).toBe(1)
    expect(server.registry.get('flush')?.document.getText('t').toString()).toBe('is this on disk?')
  })

  it('reconnects with backoff after a server restart, uploads offline edits and moves only the diff', async () => {
    const port = await reservePort()
    const first = await startServer({ port })
    const recorder = createSocketRecorder()
    const device = client({ url: urlOf(first), sessionId: 'restart', WebSocket: recorder.WebSocket })
    await synced(device)
    // A document of some size, so "only the diff" is measurable.
    const text = device.doc.getText('t')
    for (let i = 0; i < 200; i++) text.insert(text.length, `line ${i}: ${'x'.repeat(500)}\n`)
    await flushed(device)
    const documentBytes = Y.encodeStateAsUpdate(device.doc).byteLength
    expect(documentBytes).toBeGreaterThan(100_000)

    const statuses = collectStatuses(device)
    const wentOffline = nextStatus(device, (e) => e.status === 'offline', 5_000, 'offline')
    await first.close()
    await wentOffline
    expect(device.isSynced).toBe(false)

    text.insert(0, 'written offline. ')
    expect(device.hasLocalChanges).toBe(true)
    const whenFlushed = device.whenFlushed()
    // At least one retry fails while the server is down: the backoff is visible.
    await until(
      () => statuses.filter((e) => e.status === 'offline').length >= 2,
      5_000,
      'a failed retry while the server is down',
    )

    const socketsBefore = recorder.sockets.length
    const second = await startServer({ port })
    expect(second.port).toBe(port)
    await synced(device, 'synced with the restarted server')
    await withTimeout(whenFlushed, 10_000, 'offline edit flushed after reconnect')
    expect(device.hasLocalChanges).toBe(false)
    expect(second.registry.get('restart')?.document.getText('t').toString()).toBe(text.toString())

    // Status events in order: offline (server going away), then connecting/offline pairs while it
    // is down, then connecting → connected.
    const kinds = statuses.map((e) => e.status)
    expect(kinds[0]).toBe('offline')
    expect(statuses[0]).toMatchObject({
      closeCode: CloseCode.GoingAway,
      errorCode: 'shutting-down',
      attempt: 1,
    })
    expect(kinds).not.toContain('error')
    expect(kinds.slice(-2)).toEqual(['connecting', 'connected'])
    for (let i = 1; i < kinds.length - 1; i++) {
      expect(kinds[i], `event ${i} of ${kinds.join(',')}`).toBe(i % 2 === 1 ? 'connecting' : 'offline')
    }
    const retries = statuses.filter((e) => e.status === 'offline')
    retries.forEach((event, index) => {
      expect(event.attempt).toBe(index + 1)
      const capped = Math.min(FAST_BACKOFF.maxMs, FAST_BACKOFF.initialMs * 2 ** index)
      expect(event.retryInMs).toBeGreaterThanOrEqual(Math.floor(capped * (1 - FAST_BACKOFF.jitter)))
      expect(event.retryInMs).toBeLessThanOrEqual(capped)
    })

    // Only the diff moved: far less than the document, in both directions, on the new connection.
    const reconnected = recorder.sockets.slice(socketsBefore).at(-1)!
    expect(reconnected.bytesSent + reconnected.bytesReceived).toBeLessThan(2_000)
    expect(documentBytes / (reconnected.bytesSent + reconnected.bytesReceived)).toBeGreaterThan(50)
  })

  it('calls the token provider before every connection and sends the fresh token', async () => {
    const server = await startServer()
    const recorder = createSocketRecorder()
    let calls = 0
    const device = client({
      url: urlOf(server),
      sessionId: 'tokens',
      WebSocket: recorder.WebSocket,
      params: { device: 'laptop' },
      token: async () => {
        calls++
        return `token-${calls}`
      },
    })
    await synced(device)
    for (let kick = 0; kick < 2; kick++) {
      const resynced = new Promise<void>((resolve) => {
        const off = device.on('synced', () => {
          off()
          resolve()
        })
      })
      // The server drops the connection (as it would on shutdown): the client must come back.
      server.registry.get('tokens')!.closeAll(CloseCode.GoingAway, 'kicked by the test')
      await withTimeout(resynced, 10_000, `resynced after kick ${kick + 1}`)
    }
    expect(calls).toBe(3)
    const tokens = recorder.sockets.map((s) => new URL(s.url).searchParams.get('token'))
    expect(tokens).toEqual(['token-1', 'token-2', 'token-3'])
    for (const record of recorder.sockets) {
      const url = new URL(record.url)
      expect(url.pathname).toBe('/tokens')
      expect(url.searchParams.get('device')).toBe('laptop')
    }
  })

  it('reports a non-retryable (44xx) close as an error and stops reconnecting until connect()', async () => {
    const server = await startServer()
    const recorder = createSocketRecorder()
    const backoff = { initialMs: 10, maxMs: 300, jitter: 0.2 }
    const device = client({ url: urlOf(server), sessionId: 'broken', WebSocket: recorder.WebSocket, backoff })
    await synced(device)
    const statuses = collectStatuses(device)
    const error = nextStatus(device, (e) => e.status === 'error', 5_000, 'error status')
    // A frame that does not decode (a sync message cut short): the server closes with 4400.
    recorder.last().socket.send(new Uint8Array([0]))
    const event = await error
    expect(event).toEqual({
      status: 'error',
      closeCode: CloseCode.MalformedMessage,
      errorCode: 'malformed-message',
      reason: 'malformed message',
    })
    // No retry is scheduled (the event has no retryInMs; the unit test checks the timers).
    expect(device.status).toBe('error')
    expect(recorder.sockets.length).toBe(1)
    // The application decides: connect() comes back.
    device.connect()
    await synced(device, 'synced again after connect()')
    expect(statuses.map((e) => e.status)).toEqual(['error', 'connecting', 'connected'])
  })

  it('treats a storage failure as retryable and loses nothing once storage heals', async () => {
    const controllable = createControllableStore(createMemoryStore())
    const server = await startServer({ store: controllable.store })
    const device = client({ url: urlOf(server), sessionId: 'storage' })
    await synced(device)
    controllable.failNext(Number.POSITIVE_INFINITY)
    const lines = device.doc.getArray<string>('lines')
    lines.push(['first'])
    await withTimeout(controllable.whenAppendCalls(1), 5_000, 'failing commit')
    await until(() => server.writeQueue.isFailing, 5_000, 'write queue failing')
    const refused = nextStatus(device, (e) => e.errorCode === 'storage-unavailable', 5_000, 'refused')
    lines.push(['second'])
    const event = await refused
    expect(event.status).toBe('offline')
    expect(event.closeCode).toBe(CloseCode.StorageUnavailable)
    expect(device.hasLocalChanges).toBe(true)
    controllable.heal()
    await flushed(device, 'flushed after storage healed')
    expect(server.registry.get('storage')?.document.getArray('lines').toArray()).toEqual(['first', 'second'])
  })

  it('relays edits between clients and keeps presence, clearing it on disconnect and destroy', async () => {
    const server = await startServer()
    const url = urlOf(server)
    const alice = client({ url, sessionId: 'presence' })
    const bob = client({ url, sessionId: 'presence' })
    await Promise.all([synced(alice), synced(bob)])
    alice.awareness.setLocalState({ name: 'alice' })
    const aliceId = alice.doc.clientID
    await until(() => bob.awareness.getStates().get(aliceId)?.name === 'alice', 5_000, 'bob sees alice')

    alice.doc.getText('t').insert(0, 'hello bob')
    await until(() => bob.doc.getText('t').toString() === 'hello bob', 5_000, 'bob sees the edit')
    expect(bob.hasLocalChanges).toBe(false)

    alice.disconnect()
    expect(alice.status).toBe('offline')
    await until(() => !bob.awareness.getStates().has(aliceId), 5_000, 'alice gone for bob')
    alice.connect()
    await synced(alice, 'alice back')
    await until(() => bob.awareness.getStates().get(aliceId)?.name === 'alice', 5_000, 'alice back for bob')

    await alice.destroy()
    await until(() => !bob.awareness.getStates().has(aliceId), 5_000, 'alice gone after destroy')
    await expect(alice.whenSynced()).rejects.toThrow('destroyed')
  })
})
