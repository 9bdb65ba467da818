// DELETE /sessions/:id on a real server (uWS, LevelDB in a temp dir, port 0): an idle stored
// session, a loaded one with a connected client (closed with 1001, its data gone, a reconnect
// starts empty), queued writes landing before the delete, connections refused while a delete
// runs, 404 for an unknown session, and the admin role on a server with a secret.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHistoryClient, HistoryError } from '../../client/index.js'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { appendMessage, readMessages, setSessionTitle } from '../../shared/conversation/index.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

const alice = { id: 'alice', kind: 'device' as const, name: 'Alice' }

/** Connects, writes a title and one message, and waits until both are durable. */
async function writeSome(port: number, sessionId: string, text: string): Promise<WsPeer> {
  const client = await connectWsPeer(`ws://127.0.0.1:${port}`, sessionId)
  setSessionTitle(client.peer.doc, `About ${text}`)
  appendMessage(client.peer.doc, {
    id: `m-${text}`,
    role: 'user',
    author: alice,
    content: text,
    createdAt: 1,
  })
  await client.peer.whenAcked(client.peer.requestAck())
  return client
}

function isStoredEmpty(stored: Awaited<ReturnType<SyncServer['store']['load']>>): boolean {
  return stored.meta === undefined && stored.checkpoint === undefined && stored.log.length === 0
}

describe('DELETE /sessions/:id (anonymous loopback server)', () => {
  let dataDir: string
  let server: SyncServer
  let base: string

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-session-delete-'))
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', idleUnloadMs: 20 },
    })
    base = `http://127.0.0.1:${server.port}`
  })

  afterAll(async () => {
    await server?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  it('deletes an idle stored session: gone from the listing and from disk', async () => {
    const history = createHistoryClient({ baseUrl: base })
    const client = await writeSome(server.port, 'idle-one', 'hello')
    await writeSome(server.port, 'idle-keep', 'stay').then((other) => other.close())
    client.close()
    await client.closed
    // Unloaded once idle (idleUnloadMs 20): the delete finds it only on disk.
    await until(() => server.registry.get('idle-one') === undefined, 5_000, 'session unloaded')
    expect((await history.listSessions()).map((s) => s.sessionId)).toContain('idle-one')

    const response = await fetch(`${base}/sessions/idle-one`, { method: 'DELETE' })
    expect(response.status).toBe(204)
    expect(await response.text()).toBe('')

    const listed = (await history.listSessions()).map((s) => s.sessionId)
    expect(listed).not.toContain('idle-one')
    expect(listed).toContain('idle-keep')
    expect(isStoredEmpty(await server.store.load('idle-one'))).toBe(true)
    expect(await server.store.getMeta('idle-one')).toBeUndefined()
    await expect(history.session('idle-one')).rejects.toMatchObject({ status: 404 })
    // The other session is untouched.
    expect((await server.store.load('idle-keep')).meta?.lastSeq).toBeGreaterThan(0)
  })

  it('deletes a loaded session: its client is closed with 1001, its data is gone, a reconnect starts empty', async () => {
    const history = createHistoryClient({ baseUrl: base })
    const client = await writeSome(server.port, 'live-one', 'first')
    // One more update, not waited for: the delete must let it land before deleting, not after.
    appendMessage(client.peer.doc, {
      id: 'm-late',
      role: 'user',
      author: alice,
      content: 'late',
      createdAt: 2,
    })
    expect(server.registry.get('live-one')).toBeDefined()

    await history.deleteSession('live-one')
    expect(await withTimeout(client.closed, 5_000, 'client closed')).toBe(1001)
    expect(server.registry.get('live-one')).toBeUndefined()
    expect(isStoredEmpty(await server.store.load('live-one'))).toBe(true)
    expect((await history.listSessions()).map((s) => s.sessionId)).not.toContain('live-one')

    // A new client (a fresh document) finds an empty session, whose seqs start again at 1.
    const again = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'live-one')
    try {
      await again.whenSynced(5_000)
      expect(readMessages(again.peer.doc)).toEqual([])
      appendMessage(again.peer.doc, {
        id: 'm-new',
        role: 'user',
        author: alice,
        content: 'new',
        createdAt: 3,
      })
      await again.peer.whenAcked(again.peer.requestAck())
      const stored = await server.store.load('live-one')
      expect(stored.meta?.lastSeq).toBe(1)
      const conversation = await history.conversation('live-one')
      expect(conversation.messages.map((m) => m.content)).toEqual(['new'])
    } finally {
      again.close()
      await again.closed
    }
  })

  it('refuses new connections to a session while it is blocked for a delete', async () => {
    const unblock = server.registry.block('blocked-one')
    try {
      expect(server.registry.admission('blocked-one')).toBeDefined()
      await expect(connectWsPeer(`ws://127.0.0.1:${server.port}`, 'blocked-one')).rejects.toThrow()
      expect(server.registry.get('blocked-one')).toBeUndefined()
    } finally {
      unblock()
    }
    expect(server.registry.admission('blocked-one')).toBeUndefined()
    const client = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'blocked-one')
    client.close()
    await client.closed
  })

  it('answers 404 for a session that does not exist, and 400 for an invalid id', async () => {
    const history = createHistoryClient({ baseUrl: base })
    const missing = await history.deleteSession('no-such-session').catch((error: unknown) => error)
    expect(missing).toBeInstanceOf(HistoryError)
    expect(missing).toMatchObject({ status: 404, code: 'session-not-found' })
    const invalid = await fetch(`${base}/sessions/${encodeURIComponent('bad id!')}`, { method: 'DELETE' })
    expect(invalid.status).toBe(400)
    // The refused delete left nothing blocked.
    expect(server.registry.admission('no-such-session')).toBeUndefined()
  })
})

describe('DELETE /sessions/:id with writes still queued', () => {
  it('lets the queued writes land first, so none reappears after the delete', async () => {
    const inner = createMemoryStore()
    let release: () => void = () => undefined
    let gate: Promise<void> | undefined
    // Appends wait at the gate while it is closed: the session's last update stays queued.
    const store: Store = {
      ...inner,
      append: async (entries) => {
        await gate
        return inner.append(entries)
      },
      load: (sessionId) => inner.load(sessionId),
      getMeta: (sessionId) => inner.getMeta(sessionId),
      deleteSession: (sessionId) => inner.deleteSession(sessionId),
    }
    const server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent', compaction: false },
      store,
    })
    try {
      const client = await writeSome(server.port, 'queued-one', 'first')
      gate = new Promise<void>((resolve) => {
        release = resolve
      })
      appendMessage(client.peer.doc, {
        id: 'm-q',
        role: 'user',
        author: alice,
        content: 'queued',
        createdAt: 2,
      })
      const session = server.registry.get('queued-one')
      const before = session?.updatesQueued ?? 0
      await until(() => (session?.updatesQueued ?? 0) > before, 5_000, 'update received')
      expect(server.writeQueue.pendingFor('queued-one')).toBeGreaterThan(0)

      const deleting = fetch(`http://127.0.0.1:${server.port}/sessions/queued-one`, { method: 'DELETE' })
      // The delete must be waiting for the queued write, not done already.
      await new Promise((resolve) => setTimeout(resolve, 50))
      release()
      expect((await deleting).status).toBe(204)
      expect(await withTimeout(client.closed, 5_000, 'client closed')).toBe(1001)
      expect(server.writeQueue.pendingFor('queued-one')).toBe(0)
      expect(isStoredEmpty(await server.store.load('queued-one'))).toBe(true)
    } finally {
      release()
      await server.close()
    }
  })
})

describe('DELETE /sessions/:id on a server with a secret', () => {
  const secret = 'session-delete-test-secret-0123456789'
  let dataDir: string
  let server: SyncServer
  let base: string

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-session-delete-auth-'))
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', secret },
    })
    base = `http://127.0.0.1:${server.port}`
  })

  afterAll(async () => {
    await server?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  it('answers 403 to a read token and deletes with an admin token', async () => {
    const admin = await mintToken({ secret, peerId: 'ops', role: 'admin', sessionPrefix: '' })
    const read = await mintToken({ secret, peerId: 'reader', role: 'read', sessionId: 'guarded' })
    const adminHistory = createHistoryClient({
      baseUrl: base,
      headers: { authorization: `Bearer ${admin}` },
    })
    await adminHistory.importSession('guarded', {
      format: 'colloquy.conversation',
      version: 1,
      sessionId: 'guarded',
      seq: 1,
      time: 1,
      exportedAt: 1,
      session: { participants: {} },
      messages: [],
      summaries: [],
    })

    const refused = await fetch(`${base}/sessions/guarded`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${read}` },
    })
    expect(refused.status).toBe(403)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('forbidden')
    const anonymous = await fetch(`${base}/sessions/guarded`, { method: 'DELETE' })
    expect(anonymous.status).toBe(401)
    expect(await server.store.getMeta('guarded')).toBeDefined()

    await adminHistory.deleteSession('guarded')
    expect(await server.store.getMeta('guarded')).toBeUndefined()
  })
})
