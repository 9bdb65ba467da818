// The multiplexed connection (client/connection.ts) and the agent host against the real server's
// Hocuspocus endpoint: many sessions over one socket converge, whenFlushed waits for the disk per
// session, a refused session leaves the others working, every session resumes after a restart, and
// one agent process serves several sessions over one socket.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { type AgentHost, createAgentHost, createDemoModel } from '../../client/agent/node.js'
import {
  type Connection,
  type ConnectionOptions,
  createNodeConnection,
  createNodeSyncClient,
  type SyncClient,
} from '../../client/node.js'
import type { WebSocketLike } from '../../client/websocket.js'
import { mintToken } from '../../server/auth/tokens.js'
import type { ServerConfig } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import type { SyncServer } from '../../server/sync-server.js'
import { type Author, appendMessage, readMessages } from '../../shared/conversation/index.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { startTcpForwarder } from '../helpers/tcp-forwarder.js'
import { startTestServer } from '../helpers/test-server.js'
import { until, withTimeout } from '../helpers/wait.js'

const secret = 'a-test-secret-that-is-long-enough'
const WAIT = 15_000
const cleanups: (() => Promise<void> | void)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function startServer(
  options: { store?: Store; config?: Partial<ServerConfig> } = {},
): Promise<SyncServer> {
  const server = await startTestServer(
    { secret, ...options.config },
    options.store === undefined ? {} : { store: options.store },
  )
  return server
}

const writeToken = (sessionId: string): Promise<string> =>
  mintToken({ secret, peerId: `peer-${sessionId}`, role: 'write', sessionId })

/** A `ws` class that counts the sockets it opened. */
function countingWebSocket(): { readonly WebSocket: new (url: string) => WebSocketLike; opened(): number } {
  let count = 0
  class Counted extends WebSocket {
    constructor(url: string) {
      super(url)
      count++
    }
  }
  return { WebSocket: Counted as unknown as new (url: string) => WebSocketLike, opened: () => count }
}

function connect(port: number, options: Partial<ConnectionOptions> = {}): Connection {
  const connection = createNodeConnection({
    url: `ws://127.0.0.1:${port}`,
    tokenFor: writeToken,
    backoff: { initialMs: 50, maxMs: 500, jitter: 0.5 },
    ...options,
  })
  cleanups.push(() => connection.destroy())
  return connection
}

function classic(port: number, sessionId: string): SyncClient {
  const client = createNodeSyncClient({
    url: `ws://127.0.0.1:${port}`,
    sessionId,
    token: () => writeToken(sessionId),
  })
  cleanups.push(() => client.destroy())
  return client
}

const ids = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `${prefix}-${i}`)

describe('multiplexed connection against the server', () => {
  it('syncs 20 sessions over one socket with another connection and a classic client', async () => {
    const server = await startServer()
    cleanups.push(() => server.close())
    const counted = countingWebSocket()
    const writer = connect(server.port, { WebSocket: counted.WebSocket })
    const reader = connect(server.port)
    const names = ids('many', 20)
    const written = names.map((id) => writer.open(id))
    const read = names.map((id) => reader.open(id))
    const watcher = classic(server.port, 'many-7')
    await withTimeout(Promise.all([...written, ...read].map((h) => h.whenSynced())), WAIT, 'all synced')
    for (const [i, handle] of written.entries()) handle.doc.getText('t').insert(0, `text of ${i}`)
    await until(
      () => read.every((handle, i) => handle.doc.getText('t').toString() === `text of ${i}`),
      WAIT,
      'every session converged on the other connection',
    )
    await until(() => watcher.doc.getText('t').toString() === 'text of 7', WAIT, 'the classic client sees it')
    // And back: the classic client's edit reaches the multiplexed handle.
    watcher.doc.getText('t').insert(0, 'classic: ')
    await until(
      () => written[7]?.doc.getText('t').toString() === 'classic: text of 7',
      WAIT,
      'classic to mux',
    )
    await withTimeout(Promise.all(written.map((h) => h.whenFlushed())), WAIT, 'all flushed')
    expect(counted.opened()).toBe(1)
    expect(written.every((h) => h.scope === 'read-write')).toBe(true)
  })

  it('resolves whenFlushed of a session only once its update is on disk', async () => {
    const controllable = createControllableStore(createMemoryStore())
    const server = await startServer({ store: controllable.store })
    cleanups.push(() => server.close())
    const connection = connect(server.port)
    const [a, b] = [connection.open('flush-a'), connection.open('flush-b')]
    await withTimeout(Promise.all([a.whenSynced(), b.whenSynced()]), WAIT, 'synced')
    await withTimeout(Promise.all([a.whenFlushed(), b.whenFlushed()]), WAIT, 'handshakes flushed')
    const release = controllable.hold()
    const calls = controllable.appendCalls
    a.doc.getText('t').insert(0, 'held')
    let isFlushed = false
    const flushed = a.whenFlushed().then(() => {
      isFlushed = true
    })
    await withTimeout(controllable.whenAppendCalls(calls + 1), WAIT, 'the write reached the store')
    // b has nothing pending: its own whenFlushed does not wait for a's write.
    await withTimeout(b.whenFlushed(), WAIT, 'b flushed while a is held')
    expect(isFlushed).toBe(false)
    expect(a.hasLocalChanges).toBe(true)
    release()
    await withTimeout(flushed, WAIT, 'a flushed after the release')
    expect(a.hasLocalChanges).toBe(false)
  })

  it('refuses the session whose token does not cover it and keeps the others working', async () => {
    const server = await startServer()
    cleanups.push(() => server.close())
    const connection = connect(server.port, {
      // The token of another session for "refused-x": the server denies it.
      tokenFor: (id) => writeToken(id === 'refused-x' ? 'refused-other' : id),
    })
    const good = connection.open('refused-ok')
    const bad = connection.open('refused-x')
    const denied = new Promise<string>((resolve) => bad.on('permission-denied', resolve))
    await withTimeout(good.whenSynced(), WAIT, 'good synced')
    expect(await withTimeout(denied, WAIT, 'denied')).toMatch(/token not valid for this session/)
    expect(bad.status).toBe('error')
    good.doc.getText('t').insert(0, 'still fine')
    await withTimeout(good.whenFlushed(), WAIT, 'the other session still writes')
    const check = classic(server.port, 'refused-ok')
    await until(() => check.doc.getText('t').toString() === 'still fine', WAIT, 'stored')
  })

  it('opens a session read-only with a read token: its writes are refused, stay unflushed and say so', async () => {
    const server = await startServer()
    cleanups.push(() => server.close())
    const connection = connect(server.port, {
      tokenFor: (sessionId) => mintToken({ secret, peerId: 'reader', role: 'read', sessionId }),
    })
    const handle = connection.open('readonly-a')
    await withTimeout(handle.whenSynced(), WAIT, 'synced')
    expect(handle.scope).toBe('readonly')
    const denied = new Promise<string>((resolve) => handle.on('permission-denied', resolve))
    handle.doc.getText('t').insert(0, 'not mine to write')
    await withTimeout(denied, WAIT, 'the write refused')
    expect(handle.hasLocalChanges).toBe(true)
    const check = classic(server.port, 'readonly-a')
    await withTimeout(check.whenSynced(), WAIT, 'check synced')
    expect(check.doc.getText('t').toString()).toBe('')
  })

  it('resumes every session after a server restart, uploading the edits made while it was down', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-mux-'))
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }))
    const config = { store: 'leveldb' as const, dataDir }
    let server = await startServer({ config })
    const forwarder = await startTcpForwarder(server.port)
    cleanups.push(() => forwarder.close())
    const counted = countingWebSocket()
    const connection = connect(forwarder.port, { WebSocket: counted.WebSocket })
    const names = ids('resume', 5)
    const handles = names.map((id) => connection.open(id))
    await withTimeout(Promise.all(handles.map((h) => h.whenSynced())), WAIT, 'synced')
    for (const handle of handles) handle.doc.getText('t').insert(0, 'before ')
    await withTimeout(Promise.all(handles.map((h) => h.whenFlushed())), WAIT, 'flushed before')
    forwarder.setTarget(undefined)
    await server.close()
    await until(() => handles.every((h) => h.status === 'offline'), WAIT, 'every session offline')
    for (const handle of handles) handle.doc.getText('t').insert(7, 'offline')
    server = await startServer({ config })
    cleanups.push(() => server.close())
    forwarder.setTarget(server.port)
    await withTimeout(Promise.all(handles.map((h) => h.whenFlushed())), WAIT, 'offline edits flushed')
    expect(handles.every((h) => h.isSynced)).toBe(true)
    expect(counted.opened()).toBeGreaterThanOrEqual(2)
    const check = classic(server.port, 'resume-3')
    await until(
      () => check.doc.getText('t').toString() === 'before offline',
      WAIT,
      'stored after the restart',
    )
  })
})

describe('agent host', () => {
  it('serves several sessions from one process over one socket', async () => {
    const server = await startServer()
    cleanups.push(() => server.close())
    const counted = countingWebSocket()
    const host: AgentHost = createAgentHost({
      url: `ws://127.0.0.1:${server.port}`,
      WebSocket: counted.WebSocket,
      tokenFor: writeToken,
      name: 'helper',
      model: createDemoModel({ tokens: 5, delayMs: 1 }),
      claimSettleMs: 20,
    })
    cleanups.push(() => host.close())
    const names = ids('agents', 4)
    await withTimeout(Promise.all(names.map((id) => host.join(id))), WAIT, 'joined')
    await expect(host.join('agents-0')).rejects.toThrow(/already serves/)
    const user: Author = { id: 'device:user', kind: 'device', name: 'User' }
    const devices = names.map((id) => classic(server.port, id))
    await withTimeout(Promise.all(devices.map((d) => d.whenSynced())), WAIT, 'devices synced')
    for (const [i, device] of devices.entries()) {
      appendMessage(device.doc, { role: 'user', author: user, content: `question ${i}` })
    }
    await until(
      () =>
        devices.every((device) =>
          readMessages(device.doc).some((m) => m.author.id === 'agent:helper' && m.status === 'complete'),
        ),
      WAIT,
      'every session answered',
    )
    expect(counted.opened()).toBe(1)
    expect([...host.agents.keys()].sort()).toEqual(names)
    await host.leave('agents-1')
    expect(host.agents.has('agents-1')).toBe(false)
    expect(host.connection.sessionIds).not.toContain('agents-1')
  })

  it('rejects the join of a refused session only', async () => {
    const server = await startServer()
    cleanups.push(() => server.close())
    const host = createAgentHost({
      url: `ws://127.0.0.1:${server.port}`,
      tokenFor: (id) => writeToken(id === 'host-no' ? 'host-other' : id),
      name: 'helper',
      model: createDemoModel({ tokens: 3, delayMs: 1 }),
    })
    cleanups.push(() => host.close())
    const [yes, no] = await Promise.allSettled([host.join('host-yes'), host.join('host-no')])
    expect(yes.status).toBe('fulfilled')
    expect(no.status).toBe('rejected')
    expect(String((no as PromiseRejectedResult).reason)).toMatch(/cannot join host-no/)
    expect(host.connection.sessionIds).toEqual(['host-yes'])
  })
})
