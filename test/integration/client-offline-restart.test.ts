// A device edits while offline, its process restarts, it reconnects: nothing is lost and its edits
// merge with those another client made meanwhile. The device is a real child process with a real
// LevelDB offline cache; the server runs in-process on a real LevelDB and is restarted on its port.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createNodeSyncClient } from '../../client/node.js'
import type { SyncClient } from '../../client/sync-client.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { runDevice } from '../helpers/client-device-process.js'
import { nextStatus } from '../helpers/client-events.js'
import { until, withTimeout } from '../helpers/wait.js'

let tempDir: string
let servers: SyncServer[] = []
let clients: SyncClient[] = []

async function startServer(dataDir: string, port: number): Promise<SyncServer> {
  const server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port, dataDir, logLevel: 'silent' } })
  servers.push(server)
  return server
}

/**
 * A port to start the server on explicitly. Why not port 0: uSockets sets SO_REUSEADDR only for a
 * non-zero port, and the restarted server must bind the port while closed connections linger.
 */
async function reservePort(dataDir: string): Promise<number> {
  const probe = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, store: 'memory', logLevel: 'silent' },
  })
  const { port } = probe
  await probe.close()
  return port
}

beforeEach(async () => {
  tempDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-device-'))
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()))
  await Promise.all(servers.splice(0).map((s) => s.close()))
  servers = []
  clients = []
  await rm(tempDir, { recursive: true, force: true })
})

describe('offline device across a process restart', () => {
  it('keeps offline edits through a restart and merges them with concurrent edits', async () => {
    const dataDir = path.join(tempDir, 'server')
    const cachePath = path.join(tempDir, 'device-cache')
    const sessionId = 'offline-device'
    const port = await reservePort(dataDir)
    const url = `ws://127.0.0.1:${port}`
    let server = await startServer(dataDir, port)

    // Another client, in this process, online first.
    const other = createNodeSyncClient({ url, sessionId, backoff: { initialMs: 20, maxMs: 200 } })
    clients.push(other)
    await withTimeout(other.whenSynced(), 10_000, 'other synced')
    other.doc.getArray<string>('lines').push(['other: hello'])
    other.doc.getText('t').insert(0, 'shared text')
    await withTimeout(other.whenFlushed(), 10_000, 'other flushed')

    // Run 1, online: the device syncs and makes an edit; its cache now holds the session.
    const first = await runDevice({ url, sessionId, cachePath, mode: 'online', lines: ['device: online'] })
    // Pushed before the handshake, so concurrent with "hello": either order is a valid merge.
    expect([...first.lines].sort()).toEqual(['device: online', 'other: hello'])
    expect(first.hasLocalChanges).toBe(false)

    // The server goes down.
    const otherOffline = nextStatus(other, (e) => e.status === 'offline', 10_000, 'other offline')
    await server.close()
    servers = servers.filter((s) => s !== server)
    await otherOffline

    // Run 2, offline: the device starts from its cache alone, edits, and exits.
    const second = await runDevice({
      url,
      sessionId,
      cachePath,
      mode: 'offline',
      lines: ['device: offline 1', 'device: offline 2'],
      prefix: '[device] ',
    })
    expect(second.linesLoaded).toEqual(first.lines)
    expect(second.lines).toEqual([...first.lines, 'device: offline 1', 'device: offline 2'])
    expect(second.hasLocalChanges).toBe(true)
    expect(second.status).not.toBe('connected')

    // Meanwhile the other client edits too, also offline: concurrent with the device.
    other.doc.getArray<string>('lines').push(['other: offline'])
    other.doc.getText('t').insert(other.doc.getText('t').length, ' [other]')

    // The server comes back (same port, same data); the other client reconnects by itself.
    server = await startServer(dataDir, port)
    await withTimeout(other.whenSynced(), 10_000, 'other resynced')
    await withTimeout(other.whenFlushed(), 10_000, 'other offline edits flushed')

    // Run 3, online: a fresh process with the same cache uploads the offline edits.
    const third = await runDevice({ url, sessionId, cachePath, mode: 'online', lines: [] })
    expect(third.linesLoaded).toEqual(second.lines)
    expect(third.hasLocalChanges).toBe(false)
    const expectedLines = [
      'other: hello',
      'device: online',
      'device: offline 1',
      'device: offline 2',
      'other: offline',
    ]
    expect([...third.lines].sort()).toEqual([...expectedLines].sort())
    expect(third.text).toContain('[device] ')
    expect(third.text).toContain(' [other]')
    expect(third.text).toContain('shared text')

    // Everyone ends identical: the other client, the device's last state and the server.
    await until(
      () => Buffer.from(Y.encodeStateVector(other.doc)).toString('base64') === third.stateVector,
      10_000,
      'other client has the device edits',
    )
    expect(other.doc.getArray('lines').toArray()).toEqual(third.lines)
    expect(other.doc.getText('t').toString()).toBe(third.text)
    const serverDoc = server.registry.get(sessionId)!.document
    expect(serverDoc.getArray('lines').toArray()).toEqual(third.lines)
    expect(serverDoc.getText('t').toString()).toBe(third.text)
    expect(Buffer.from(Y.encodeStateVector(serverDoc)).toString('base64')).toBe(third.stateVector)
  })
})
