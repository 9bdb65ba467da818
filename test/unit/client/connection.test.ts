// The multiplexed connection over an in-memory fake socket: the test plays a Hocuspocus-protocol
// server frame by frame, for several sessions on the one socket.

import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { type Connection, type ConnectionOptions, createConnection } from '../../../client/connection.js'
import {
  encodeHocuspocus,
  HocuspocusSyncStatus,
  hocuspocusCodec,
} from '../../../shared/protocol/hocuspocus-codec.js'
import { AuthMessageType, type Message, type MessageBody } from '../../../shared/protocol/message.js'
import { collectStatuses } from '../../helpers/client-events.js'
import { createFakeSockets, type FakeSocket } from '../../helpers/client-fake-socket.js'

const connections: Connection[] = []

afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => c.destroy()))
  vi.useRealTimers()
})

/** Lets pending promise callbacks run (tokens and the offline cache are awaited). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve()
}

function setup(options: Partial<ConnectionOptions> = {}) {
  const fakes = createFakeSockets()
  const connection = createConnection({
    url: 'ws://server.test',
    WebSocket: fakes.WebSocket,
    backoff: { initialMs: 100, maxMs: 1_000, jitter: 0, resetAfterMs: 1_000 },
    ...options,
  })
  connections.push(connection)
  return { connection, fakes }
}

/** Lets the connection dial, then plays the server accepting the socket: the socket, open. */
async function serverOpens(fakes: ReturnType<typeof createFakeSockets>): Promise<FakeSocket> {
  await settle()
  const socket = fakes.last()
  socket.serverOpen()
  await settle()
  return socket
}

/** What the client sent on `socket`, decoded, with the document each frame named. */
function sent(socket: FakeSocket): Message[] {
  return socket.sent.map((frame) => hocuspocusCodec.decode(frame))
}

function sentFor(socket: FakeSocket, sessionId: string): Message[] {
  return sent(socket).filter((m) => m.sessionId === sessionId)
}

/** The types of the last `count` messages the client sent for `sessionId`. */
function lastTypes(socket: FakeSocket, sessionId: string, count: number): string[] {
  return sentFor(socket, sessionId)
    .slice(-count)
    .map((m) => m.type)
}

/** What a session sends when it (re)joins the socket: its token, step 1 and presence, pipelined. */
const JOIN = ['auth-token', 'sync-step1', 'awareness']

function serve(socket: FakeSocket, sessionId: string, message: MessageBody): void {
  socket.serverSend(encodeHocuspocus(message, sessionId))
}

/** Plays the server: accepts `sessionId`'s token and syncs it with `serverDoc`. */
function admit(socket: FakeSocket, sessionId: string, serverDoc = new Y.Doc()): void {
  serve(socket, sessionId, { type: 'authenticated', scope: 'read-write' })
  serve(socket, sessionId, { type: 'sync-step1', stateVector: Y.encodeStateVector(serverDoc) })
  serve(socket, sessionId, { type: 'sync-step2', update: Y.encodeStateAsUpdate(serverDoc) })
}

/** The server's answer to an update: applied and durable. */
function saved(socket: FakeSocket, sessionId: string): void {
  serve(socket, sessionId, { type: 'sync-status', payload: HocuspocusSyncStatus.Saved })
}

describe('multiplexed connection (fake socket)', () => {
  it('carries several sessions on one socket, each authenticating with its own token', async () => {
    const tokenFor = vi.fn((id: string) => `token-of-${id}`)
    const { connection, fakes } = setup({ tokenFor })
    const a = connection.open('a')
    const b = connection.open('b')
    await settle()
    expect(fakes.sockets).toHaveLength(1)
    const socket = fakes.last()
    expect(socket.url).toBe('ws://server.test/hocuspocus')
    socket.serverOpen()
    await settle()
    expect(sent(socket).filter((m) => m.type === 'auth-token')).toEqual([
      { type: 'auth-token', token: 'token-of-a', sessionId: 'a' },
      { type: 'auth-token', token: 'token-of-b', sessionId: 'b' },
    ])
    // The handshake goes out with the token; the server holds it until the token is checked.
    expect(sentFor(socket, 'a').map((m) => m.type)).toEqual(JOIN)
    expect(a.status).toBe('connecting')
    admit(socket, 'a', docWith('hello from a'))
    expect(a.isSynced).toBe(true)
    expect(a.status).toBe('connected')
    expect(b.isSynced).toBe(false)
    expect(sentFor(socket, 'a').map((m) => m.type)).toEqual([...JOIN, 'sync-step2'])
    expect(sentFor(socket, 'b').map((m) => m.type)).toEqual(JOIN)
    admit(socket, 'b', docWith('hello from b'))
    expect(a.doc.getText('t').toString()).toBe('hello from a')
    expect(b.doc.getText('t').toString()).toBe('hello from b')
    expect(connection.sessionIds).toEqual(['a', 'b'])
  })

  it('flushes each session on its own sync-status answers', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    admit(socket, 'b')
    // The empty step 2 of each handshake is answered first.
    saved(socket, 'a')
    saved(socket, 'b')
    a.doc.getText('t').insert(0, 'one')
    a.doc.getText('t').insert(3, ' two')
    b.doc.getText('t').insert(0, 'other')
    const aFlushed = vi.fn()
    const bFlushed = vi.fn()
    void a.whenFlushed().then(aFlushed)
    void b.whenFlushed().then(bFlushed)
    expect(sentFor(socket, 'a').filter((m) => m.type === 'sync-update')).toHaveLength(2)
    saved(socket, 'a')
    await settle()
    expect(a.hasLocalChanges).toBe(true) // one of its two updates is durable
    saved(socket, 'a')
    await settle()
    expect(aFlushed).toHaveBeenCalledOnce()
    expect(a.hasLocalChanges).toBe(false)
    expect(bFlushed).not.toHaveBeenCalled()
    expect(b.hasLocalChanges).toBe(true)
    saved(socket, 'b')
    await settle()
    expect(bFlushed).toHaveBeenCalledOnce()
  })

  it('keeps a change refused by a read-only scope unflushed', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const socket = await serverOpens(fakes)
    serve(socket, 'a', { type: 'authenticated', scope: 'readonly' })
    serve(socket, 'a', { type: 'sync-step2', update: Y.encodeStateAsUpdate(new Y.Doc()) })
    expect(a.scope).toBe('readonly')
    const denied = vi.fn()
    a.on('permission-denied', denied)
    a.doc.getText('t').insert(0, 'not allowed')
    serve(socket, 'a', { type: 'sync-status', payload: HocuspocusSyncStatus.Refused })
    await settle()
    expect(a.hasLocalChanges).toBe(true)
    expect(denied).toHaveBeenCalledWith('the server refused a write (read-only access)')
  })

  it('refuses one session on permission denied and leaves the others working', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const bStatuses = collectStatuses(b)
    const denied = vi.fn()
    b.on('permission-denied', denied)
    const socket = await serverOpens(fakes)
    serve(socket, 'b', { type: 'auth', authType: AuthMessageType.PermissionDenied, reason: 'not yours' })
    admit(socket, 'a')
    expect(b.status).toBe('error')
    expect(bStatuses.at(-1)).toMatchObject({ status: 'error', errorCode: 'forbidden', reason: 'not yours' })
    expect(denied).toHaveBeenCalledWith('not yours')
    expect(a.isSynced).toBe(true)
    expect(socket.readyState).toBe(1)
    // The refused session sends nothing more, even when it edits its document.
    b.doc.getText('t').insert(0, 'kept locally')
    a.doc.getText('t').insert(0, 'still flows')
    expect(sentFor(socket, 'b').map((m) => m.type)).toEqual(JOIN)
    expect(sentFor(socket, 'a').at(-1)?.type).toBe('sync-update')
    // Its connect() tries again.
    b.connect()
    await settle()
    expect(sentFor(socket, 'b').map((m) => m.type)).toEqual([...JOIN, ...JOIN])
  })

  it('resumes every session by state vector after the socket comes back, with fresh tokens', async () => {
    vi.useFakeTimers()
    let issued = 0
    const { connection, fakes } = setup({ tokenFor: (id) => `${id}-${++issued}` })
    const a = connection.open('a')
    const b = connection.open('b')
    await settle()
    const first = fakes.last()
    first.serverOpen()
    await settle()
    const serverA = docWith('server a')
    admit(first, 'a', serverA)
    admit(first, 'b')
    const aStatuses = collectStatuses(a)
    first.serverClose(1006)
    expect(a.status).toBe('offline')
    expect(b.status).toBe('offline')
    expect(aStatuses.at(-1)).toMatchObject({ status: 'offline', retryInMs: 100, attempt: 1 })
    // Offline edits wait for the next socket.
    a.doc.getText('t').insert(0, 'offline ')
    await vi.advanceTimersByTimeAsync(100)
    expect(fakes.sockets).toHaveLength(2)
    const second = fakes.last()
    second.serverOpen()
    await settle()
    expect(sent(second).filter((m) => m.type === 'auth-token')).toEqual([
      { type: 'auth-token', token: 'a-3', sessionId: 'a' },
      { type: 'auth-token', token: 'b-4', sessionId: 'b' },
    ])
    serve(second, 'a', { type: 'authenticated', scope: 'read-write' })
    const step1 = sentFor(second, 'a').find((m) => m.type === 'sync-step1')
    // a already holds the server's content: its state vector says so, and nothing is downloaded twice.
    expect(step1?.type === 'sync-step1' && Y.decodeStateVector(step1.stateVector).get(serverA.clientID)).toBe(
      8,
    )
    const flushed = vi.fn()
    void a.whenFlushed().then(flushed)
    serve(second, 'a', { type: 'sync-step1', stateVector: Y.encodeStateVector(serverA) })
    const step2 = sentFor(second, 'a').find((m) => m.type === 'sync-step2')
    Y.applyUpdate(serverA, step2?.type === 'sync-step2' ? step2.update : new Uint8Array())
    expect(serverA.getText('t').toString()).toBe('offline server a')
    serve(second, 'a', { type: 'sync-step2', update: new Uint8Array([0, 0]) })
    saved(second, 'a')
    await settle()
    expect(flushed).toHaveBeenCalledOnce()
    expect(a.status).toBe('connected')
  })

  it('retries one session the server closed, with backoff, and leaves the others alone', async () => {
    vi.useFakeTimers()
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    admit(socket, 'b')
    const bStatuses = collectStatuses(b)
    serve(socket, 'b', { type: 'close', reason: 'too many updates' })
    expect(bStatuses.at(-1)).toMatchObject({ status: 'offline', reason: 'too many updates', retryInMs: 100 })
    expect(a.isSynced).toBe(true)
    expect(b.isSynced).toBe(false)
    // Frames of b that were in flight are dropped until it is back.
    serve(socket, 'b', { type: 'sync-update', update: Y.encodeStateAsUpdate(docWith('late')) })
    expect(b.doc.getText('t').toString()).toBe('')
    await vi.advanceTimersByTimeAsync(100)
    expect(sentFor(socket, 'b').filter((m) => m.type === 'auth-token')).toHaveLength(2)
    admit(socket, 'b')
    expect(b.isSynced).toBe(true)
    expect(fakes.sockets).toHaveLength(1)
  })

  it('closes one session on a malformed body for it, and drops the socket on a frame naming no document', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    admit(socket, 'b')
    // "a", then a sync message whose payload length runs past the end.
    socket.serverSend(Uint8Array.of(1, 97, 0, 2, 50, 1))
    expect(sentFor(socket, 'a').at(-1)).toMatchObject({ type: 'close' })
    expect(a.status).toBe('offline')
    expect(b.isSynced).toBe(true)
    // A name length past the end of the frame: no document to blame.
    socket.serverSend(Uint8Array.of(9, 97))
    await settle()
    expect(socket.closedByClient?.code).toBe(4400)
    // As for a sync client, a server that sends garbage is not retried until connect().
    expect(b.status).toBe('error')
  })

  it('reads the close code before a refusal: a policy refusal waits the longest backoff, a 44xx close stops', async () => {
    vi.useFakeTimers()
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const socket = await serverOpens(fakes)
    const aStatuses = collectStatuses(a)
    serve(socket, 'a', {
      type: 'auth',
      authType: AuthMessageType.PermissionDenied,
      reason: '4529 too many document opens on this socket',
    })
    expect(aStatuses.at(-1)).toMatchObject({
      status: 'offline',
      closeCode: 4529,
      errorCode: 'rate-limited',
      reason: 'too many document opens on this socket',
      retryInMs: 1_000,
    })
    await vi.advanceTimersByTimeAsync(1_000)
    expect(sentFor(socket, 'a').filter((m) => m.type === 'auth-token')).toHaveLength(2)
    admit(socket, 'b')
    serve(socket, 'b', { type: 'close', reason: '4422 the update does not decode' })
    expect(b.status).toBe('error')
    await vi.advanceTimersByTimeAsync(5_000)
    expect(sentFor(socket, 'b').filter((m) => m.type === 'auth-token')).toHaveLength(1)
  })

  it('asks for a fresh token when the server closes a session whose token expired', async () => {
    vi.useFakeTimers()
    let issued = 0
    const { connection, fakes } = setup({ tokenFor: (id) => `${id}-${++issued}` })
    const a = connection.open('a')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    serve(socket, 'a', { type: 'close', reason: '4301 token expired' })
    expect(a.status).toBe('offline')
    await vi.advanceTimersByTimeAsync(100)
    expect(sent(socket).filter((m) => m.type === 'auth-token')).toEqual([
      { type: 'auth-token', token: 'a-1', sessionId: 'a' },
      { type: 'auth-token', token: 'a-2', sessionId: 'a' },
    ])
  })

  it('closes one session without closing the socket', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const b = connection.open('b')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    admit(socket, 'b')
    a.awareness.setLocalState({ name: 'a' })
    await a.close()
    expect(lastTypes(socket, 'a', 2)).toEqual(['awareness', 'close'])
    expect(socket.readyState).toBe(1)
    expect(connection.sessionIds).toEqual(['b'])
    expect(b.isSynced).toBe(true)
    // The id is free again.
    const again = connection.open('a')
    await settle()
    expect(lastTypes(socket, 'a', 3)).toEqual(JOIN)
    expect(again.status).toBe('connecting')
  })

  it('disconnects and reconnects one session on the shared socket', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    a.disconnect()
    expect(a.status).toBe('offline')
    expect(sentFor(socket, 'a').at(-1)).toMatchObject({ type: 'close', reason: 'disconnected' })
    a.connect()
    await settle()
    expect(lastTypes(socket, 'a', 3)).toEqual(JOIN)
    admit(socket, 'a')
    expect(a.isSynced).toBe(true)
  })

  it('closes and retries a session that does not sync in time', async () => {
    vi.useFakeTimers()
    const { connection, fakes } = setup({ connectTimeoutMs: 1_000 })
    const a = connection.open('a')
    const socket = await serverOpens(fakes)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(sentFor(socket, 'a').at(-1)).toMatchObject({ type: 'close' })
    expect(a.status).toBe('offline')
    await vi.advanceTimersByTimeAsync(100)
    expect(lastTypes(socket, 'a', 3)).toEqual(JOIN)
  })

  it('relays stateless messages of a session both ways', async () => {
    const { connection, fakes } = setup()
    const a = connection.open('a')
    const socket = await serverOpens(fakes)
    admit(socket, 'a')
    const got = vi.fn()
    a.on('stateless', got)
    serve(socket, 'a', { type: 'stateless', payload: '{"typing":true}' })
    expect(got).toHaveBeenCalledWith('{"typing":true}')
    a.sendStateless('ping')
    expect(sentFor(socket, 'a').at(-1)).toEqual({ type: 'stateless', payload: 'ping', sessionId: 'a' })
  })

  it('refuses an invalid session id and a second handle on one session', () => {
    const { connection } = setup({ WebSocket: createFakeSockets().WebSocket })
    expect(() => connection.open('a/b')).toThrow(/invalid session id/)
    connection.open('a')
    expect(() => connection.open('a')).toThrow(/already open/)
  })

  it('leaves no timer behind when destroyed', async () => {
    vi.useFakeTimers()
    const { connection, fakes } = setup()
    connection.open('a')
    await settle()
    fakes.last().serverClose(1006)
    await connection.destroy()
    expect(vi.getTimerCount()).toBe(0)
  })
})

function docWith(text: string): Y.Doc {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, text)
  return doc
}
