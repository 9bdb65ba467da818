// The sync client over an in-memory fake socket: the test plays the server frame by frame.

import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import {
  connectionUrl,
  createSyncClient,
  type SyncClient,
  type SyncClientOptions,
} from '../../../client/sync-client.js'
import {
  decodeSyncStatusCounter,
  encodeAwareness,
  encodeSyncStatus,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  type Message,
} from '../../../shared/protocol/message.js'
import { collectStatuses } from '../../helpers/client-events.js'
import { createFakeSockets, type FakeSocket } from '../../helpers/client-fake-socket.js'

const clients: SyncClient[] = []

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()))
  vi.useRealTimers()
})

/** Lets pending promise callbacks run (the client opens its socket after an await). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

function setup(options: Partial<SyncClientOptions> = {}) {
  const fakes = createFakeSockets()
  const client = createSyncClient({
    url: 'ws://server.test',
    sessionId: 'unit',
    WebSocket: fakes.WebSocket,
    backoff: { initialMs: 100, maxMs: 1_000, jitter: 0, resetAfterMs: 1_000 },
    ...options,
  })
  clients.push(client)
  return { client, fakes }
}

/** Plays the server's side of a handshake on `socket` with `serverDoc`. */
function handshake(socket: FakeSocket, serverDoc = new Y.Doc()): void {
  socket.serverOpen()
  socket.serverSend(encodeSyncStep1(Y.encodeStateVector(serverDoc)))
  socket.serverSend(encodeSyncStep2(Y.encodeStateAsUpdate(serverDoc)))
}

function statusCounters(messages: Message[]): number[] {
  return messages.flatMap((m) => (m.type === 'sync-status' ? [decodeSyncStatusCounter(m.payload)!] : []))
}

describe('sync client (fake socket)', () => {
  it('opens with step 1 and presence, answers the server step 1 with step 2, syncs on its step 2', async () => {
    const { client, fakes } = setup({ params: { a: 'b' } })
    expect(client.status).toBe('connecting')
    await settle()
    const socket = fakes.last()
    expect(socket.url).toBe('ws://server.test/unit?a=b')
    expect(socket.binaryType).toBe('arraybuffer')
    let syncedEvents = 0
    client.on('synced', () => syncedEvents++)

    socket.serverOpen()
    expect(client.status).toBe('connected')
    expect(socket.types()).toEqual(['sync-step1', 'awareness'])

    const serverDoc = new Y.Doc()
    serverDoc.getText('t').insert(0, 'from the server')
    socket.serverSend(encodeSyncStep1(Y.encodeStateVector(serverDoc)))
    // Nothing local to upload, so no sync-status follows the step 2.
    expect(socket.types()).toEqual(['sync-step1', 'awareness', 'sync-step2'])
    expect(client.isSynced).toBe(false)

    socket.serverSend(encodeSyncStep2(Y.encodeStateAsUpdate(serverDoc)))
    expect(client.isSynced).toBe(true)
    expect(syncedEvents).toBe(1)
    expect(client.doc.getText('t').toString()).toBe('from the server')
    expect(client.hasLocalChanges).toBe(false)
    await client.whenSynced()
  })

  it('follows a batch of local updates with one sync-status, and flushes on its echo', async () => {
    const { client, fakes } = setup()
    await settle()
    const socket = fakes.last()
    handshake(socket)
    socket.sent.length = 0

    const text = client.doc.getText('t')
    text.insert(0, 'a')
    text.insert(1, 'b')
    text.insert(2, 'c')
    expect(client.hasLocalChanges).toBe(true)
    const flushed = client.whenFlushed()
    await settle()
    expect(socket.types()).toEqual(['sync-update', 'sync-update', 'sync-update', 'sync-status'])
    expect(statusCounters(socket.messages())).toEqual([1])

    socket.serverSend(encodeSyncStatus(1))
    await flushed
    expect(client.hasLocalChanges).toBe(false)
  })

  it('does not apply remote updates as local changes', async () => {
    const { client, fakes } = setup()
    await settle()
    const socket = fakes.last()
    handshake(socket)
    socket.sent.length = 0
    const other = new Y.Doc()
    other.getText('t').insert(0, 'remote')
    socket.serverSend(encodeSyncUpdate(Y.encodeStateAsUpdate(other)))
    await settle()
    expect(client.doc.getText('t').toString()).toBe('remote')
    expect(client.hasLocalChanges).toBe(false)
    expect(socket.sent).toEqual([])
  })

  it('uploads offline edits in step 2, asks for an ack after it, and asks again after a lost connection', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup({ connect: false })
    client.doc.getArray<string>('lines').push(['offline edit'])
    expect(client.hasLocalChanges).toBe(true)
    const flushed = client.whenFlushed()
    client.connect()
    await settle()

    const first = fakes.last()
    handshake(first)
    const step2 = first.messages().find((m) => m.type === 'sync-step2')
    const uploaded = new Y.Doc()
    if (step2?.type === 'sync-step2') Y.applyUpdate(uploaded, step2.update)
    expect(uploaded.getArray('lines').toArray()).toEqual(['offline edit'])
    // The sync-status comes right after the step 2 that carries the edit.
    const types = first.types()
    expect(types.slice(types.indexOf('sync-step2'), types.indexOf('sync-step2') + 2)).toEqual([
      'sync-step2',
      'sync-status',
    ])
    expect(statusCounters(first.messages())).toEqual([1])

    // The connection dies before the ack: the next one must ask again with a new counter.
    first.serverClose(1006)
    expect(client.status).toBe('offline')
    await vi.advanceTimersByTimeAsync(100)
    await settle()
    const second = fakes.last()
    expect(second).not.toBe(first)
    handshake(second)
    expect(statusCounters(second.messages())).toEqual([2])
    // A late echo of counter 1 cannot arrive (its socket is gone); counter 2 flushes.
    second.serverSend(encodeSyncStatus(2))
    await flushed
    expect(client.hasLocalChanges).toBe(false)
  })

  it('schedules retries with growing delays and resets them after a connection stayed synced', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup()
    const statuses = collectStatuses(client)
    await settle()
    for (let i = 0; i < 4; i++) {
      fakes.last().serverClose(1006)
      await vi.advanceTimersByTimeAsync(2_000)
      await settle()
    }
    const offline = statuses.filter((e) => e.status === 'offline')
    expect(offline.map((e) => [e.attempt, e.retryInMs])).toEqual([
      [1, 100],
      [2, 200],
      [3, 400],
      [4, 800],
    ])
    // Synced long enough: the next drop starts again from the first delay.
    handshake(fakes.last())
    await vi.advanceTimersByTimeAsync(1_000)
    fakes.last().serverClose(1001)
    expect(statuses.at(-1)).toMatchObject({ status: 'offline', attempt: 1, retryInMs: 100 })
  })

  it('waits the maximum delay after a policy close (45xx) and stays offline, not in error', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup()
    await settle()
    handshake(fakes.last())
    const statuses = collectStatuses(client)
    fakes.last().serverClose(4529, 'rate limit exceeded')
    expect(statuses.at(-1)).toMatchObject({
      status: 'offline',
      closeCode: 4529,
      errorCode: 'rate-limited',
      retryInMs: 1_000,
    })
    await vi.advanceTimersByTimeAsync(999)
    expect(statuses.map((e) => e.status)).toEqual(['offline'])
    await vi.advanceTimersByTimeAsync(1)
    await settle()
    expect(statuses.map((e) => e.status)).toEqual(['offline', 'connecting'])
  })

  it('backs off normally on a 45xx code it does not know', async () => {
    const { client, fakes } = setup()
    await settle()
    handshake(fakes.last())
    const statuses = collectStatuses(client)
    fakes.last().serverClose(4599, 'later')
    expect(statuses.at(-1)).toMatchObject({ status: 'offline', closeCode: 4599, retryInMs: 100 })
  })

  it('stops reconnecting after a 44xx close until connect() is called', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup()
    await settle()
    handshake(fakes.last())
    const statuses = collectStatuses(client)
    fakes.last().serverClose(4422, 'invalid Yjs update')
    expect(client.status).toBe('error')
    expect(statuses).toEqual([
      { status: 'error', reason: 'invalid Yjs update', closeCode: 4422, errorCode: 'invalid-update' },
    ])
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fakes.sockets.length).toBe(1)
    client.connect()
    await settle()
    expect(fakes.sockets.length).toBe(2)
    expect(client.status).toBe('connecting')
  })

  it('drops a connection whose server sends a frame that does not decode', async () => {
    const { client, fakes } = setup()
    const statuses = collectStatuses(client)
    await settle()
    const socket = fakes.last()
    socket.serverOpen()
    socket.serverSend(new Uint8Array([0, 9]))
    expect(statuses.at(-1)).toMatchObject({
      status: 'error',
      errorCode: 'malformed-message',
      closeCode: 4400,
    })
    expect(socket.closedByClient?.code).toBe(4400)
  })

  it('drops a connection that does not sync in time', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup({ connectTimeoutMs: 500 })
    await settle()
    const socket = fakes.last()
    socket.serverOpen()
    await vi.advanceTimersByTimeAsync(500)
    expect(client.status).toBe('offline')
    expect(socket.closedByClient).toBeDefined()
    expect(fakes.sockets).toHaveLength(1)
  })

  it('calls the token provider before every attempt and retries when it fails', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    let calls = 0
    const { client, fakes } = setup({
      token: () => {
        calls++
        if (calls === 1) throw new Error('no network for the token')
        return `t${calls}`
      },
    })
    await settle()
    expect(fakes.sockets).toHaveLength(0)
    expect(client.status).toBe('offline')
    await vi.advanceTimersByTimeAsync(100)
    await settle()
    expect(fakes.last().url).toBe('ws://server.test/unit?token=t2')
  })

  it('with acks off sends no sync-status and refuses whenFlushed', async () => {
    const { client, fakes } = setup({ acks: false })
    await settle()
    handshake(fakes.last())
    client.doc.getText('t').insert(0, 'x')
    await settle()
    expect(fakes.last().types()).not.toContain('sync-status')
    expect(client.hasLocalChanges).toBe(false)
    await expect(client.whenFlushed()).rejects.toThrow('acks')
  })

  it('forgets other peers on a lost connection and re-announces its own presence on the next', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const { client, fakes } = setup()
    await settle()
    handshake(fakes.last())
    const peer = new Y.Doc()
    const { Awareness, encodeAwarenessUpdate } = await import('y-protocols/awareness')
    const peerAwareness = new Awareness(peer)
    peerAwareness.setLocalState({ name: 'peer' })
    const announcement = encodeAwareness(encodeAwarenessUpdate(peerAwareness, [peer.clientID]))
    fakes.last().serverSend(announcement)
    expect(client.awareness.getStates().get(peer.clientID)).toEqual({ name: 'peer' })

    fakes.last().serverClose(1006)
    expect(client.awareness.getStates().has(peer.clientID)).toBe(false)
    await vi.advanceTimersByTimeAsync(100)
    await settle()
    const next = fakes.last()
    handshake(next)
    // The same announcement (same clock) is taken again after the reconnect.
    next.serverSend(announcement)
    expect(client.awareness.getStates().get(peer.clientID)).toEqual({ name: 'peer' })
    expect(next.types().filter((t) => t === 'awareness')).toHaveLength(1)
    peerAwareness.destroy()
  })

  it('clears presence on disconnect and restores it on connect', async () => {
    const { client, fakes } = setup()
    await settle()
    handshake(fakes.last())
    client.awareness.setLocalState({ name: 'me' })
    const socket = fakes.last()
    socket.sent.length = 0
    client.disconnect()
    expect(client.status).toBe('offline')
    expect(client.awareness.getLocalState()).toBeNull()
    expect(socket.types()).toEqual(['awareness'])
    expect(socket.closedByClient?.code).toBe(1000)
    client.connect()
    expect(client.awareness.getLocalState()).toEqual({ name: 'me' })
    await settle()
    expect(fakes.sockets).toHaveLength(2)
  })

  it('retries at once when the browser says the network is back', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const network = new EventTarget()
    const global = globalThis as { addEventListener?: unknown; removeEventListener?: unknown }
    global.addEventListener = network.addEventListener.bind(network)
    global.removeEventListener = network.removeEventListener.bind(network)
    try {
      const { client, fakes } = setup({ backoff: { initialMs: 10_000, maxMs: 10_000 } })
      await settle()
      fakes.last().serverClose(1006)
      expect(client.status).toBe('offline')
      network.dispatchEvent(new Event('online'))
      await settle()
      expect(fakes.sockets).toHaveLength(2)
      expect(client.status).toBe('connecting')
      await client.destroy()
      network.dispatchEvent(new Event('online'))
      await settle()
      expect(fakes.sockets).toHaveLength(2)
    } finally {
      delete global.addEventListener
      delete global.removeEventListener
    }
  })

  it('leaves no timer behind when destroyed, connected or waiting to retry', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    const connected = setup()
    const retrying = setup()
    await settle()
    handshake(connected.fakes.last())
    retrying.fakes.last().serverClose(1006)
    const pending = connected.client.whenFlushed()
    connected.client.doc.getText('t').insert(0, 'unflushed')
    const unflushed = connected.client.whenFlushed()
    expect(vi.getTimerCount()).toBeGreaterThan(0)
    await connected.client.destroy()
    await retrying.client.destroy()
    await pending
    await expect(unflushed).rejects.toThrow('destroyed')
    expect(connected.client.status).toBe('offline')
    expect(vi.getTimerCount()).toBe(0)
  })

  it('refuses an invalid session id and builds connection URLs with the id as the path', () => {
    expect(() => setup({ sessionId: 'a/b' })).toThrow('invalid session id')
    expect(connectionUrl('ws://h:1', 'abc', undefined, undefined)).toBe('ws://h:1/abc')
    expect(connectionUrl('wss://h/sync/', 's:1', { x: 'y z' }, 'tok&en')).toBe(
      'wss://h/sync/s:1?x=y+z&token=tok%26en',
    )
  })
})
