// Stock y-websocket providers (with `ws` as their WebSocket) against the real server on 127.0.0.1
// port 0 with a real LevelDB in a temp dir.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as prng from 'lib0/prng'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { until, withTimeout } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer | undefined
const providers: WebsocketProvider[] = []

function config(): ServerConfig {
  return { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' }
}

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-int-'))
  server = await startSyncServer({ config: config() })
})

afterEach(async () => {
  for (const provider of providers.splice(0)) provider.destroy()
  await server?.close()
  server = undefined
  await rm(dataDir, { recursive: true, force: true })
})

interface Counter {
  bytesIn: number
}

/** A `ws` WebSocket class that counts the bytes it receives into `counter`. */
function countingWebSocket(
  counter: Counter,
): new (
  address: string,
  protocols?: string | string[],
) => WebSocket {
  return class CountingWebSocket extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols)
      this.on('message', (data: ArrayBuffer | Buffer) => {
        counter.bytesIn += data.byteLength
      })
    }
  }
}

function connect(sessionId: string, doc = new Y.Doc(), counter: Counter = { bytesIn: 0 }): WebsocketProvider {
  const provider = new WebsocketProvider(`ws://127.0.0.1:${server!.port}`, sessionId, doc, {
    WebSocketPolyfill: countingWebSocket(counter) as unknown as typeof globalThis.WebSocket,
    // Same-process providers would otherwise sync through BroadcastChannel, not the server.
    disableBc: true,
  })
  providers.push(provider)
  return provider
}

function whenSynced(provider: WebsocketProvider): Promise<void> {
  if (provider.synced) return Promise.resolve()
  return withTimeout(
    new Promise<void>((resolve) => {
      const onSync = (isSynced: boolean): void => {
        if (!isSynced) return
        provider.off('sync', onSync)
        resolve()
      }
      provider.on('sync', onSync)
    }),
    10_000,
    'provider synced',
  )
}

function stateOf(doc: Y.Doc): { text: string; map: unknown; sv: string } {
  return {
    text: doc.getText('t').toString(),
    // Sorted: a map's key order follows local insertion order, which legitimately differs.
    map: Object.fromEntries(Object.entries(doc.getMap('m').toJSON()).sort(([a], [b]) => (a < b ? -1 : 1))),
    sv: Buffer.from(Y.encodeStateVector(doc)).toString('hex'),
  }
}

function randomEdit(gen: prng.PRNG, doc: Y.Doc): void {
  const text = doc.getText('t')
  const roll = prng.int32(gen, 0, 9)
  if (roll < 6 || text.length === 0) {
    text.insert(prng.int32(gen, 0, text.length), prng.word(gen, 1, 6))
  } else if (roll < 8) {
    const at = prng.int32(gen, 0, text.length - 1)
    text.delete(at, Math.min(text.length - at, prng.int32(gen, 1, 4)))
  } else {
    doc.getMap('m').set(prng.word(gen, 1, 2), prng.int32(gen, 0, 1000))
  }
}

describe('stock y-websocket clients', () => {
  it('converge to identical content and state vectors after random concurrent edits', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`convergence seed: ${seed}`)
    const gen = prng.create(seed)
    const clients = [connect('conv'), connect('conv'), connect('conv')]
    await Promise.all(clients.map(whenSynced))
    for (let round = 0; round < 60; round++) {
      for (const client of clients) {
        for (let i = prng.int32(gen, 0, 3); i > 0; i--) randomEdit(gen, client.doc)
      }
      // Let some rounds interleave with delivery, others pile up.
      if (prng.bool(gen)) await new Promise<void>((resolve) => setImmediate(resolve))
    }
    const serverDoc = () => server!.registry.get('conv')!.document
    await until(
      () => {
        const states = [...clients.map((c) => stateOf(c.doc)), stateOf(serverDoc())]
        return states.every((s) => JSON.stringify(s) === JSON.stringify(states[0]))
      },
      15_000,
      `clients converge (seed ${seed})`,
    ).catch((error: unknown) => {
      const states = [...clients.map((c) => stateOf(c.doc)), stateOf(serverDoc())]
      console.log(JSON.stringify(states.map((s) => ({ ...s, text: s.text.length }))))
      throw error
    })
    const first = stateOf(clients[0]!.doc)
    expect(first.text.length).toBeGreaterThan(0)
    for (const client of clients) expect(stateOf(client.doc)).toEqual(first)
    expect(stateOf(serverDoc())).toEqual(first)
  })

  it('gives a late joiner everything', async () => {
    const writer = connect('late')
    await whenSynced(writer)
    writer.doc.getText('t').insert(0, 'written before you came')
    writer.doc.getMap('m').set('k', 1)
    await until(() => server!.registry.get('late')?.lastSeq === 2, 5_000, 'server has both updates')
    const late = connect('late')
    await whenSynced(late)
    expect(stateOf(late.doc)).toEqual(stateOf(writer.doc))
  })

  it('sends a reconnecting client only the diff', async () => {
    const counter: Counter = { bytesIn: 0 }
    const reader = connect('diff', new Y.Doc(), counter)
    const writer = connect('diff')
    await Promise.all([whenSynced(reader), whenSynced(writer)])
    writer.doc.getText('t').insert(0, 'x'.repeat(200_000))
    await until(() => reader.doc.getText('t').length === 200_000, 10_000, 'reader has the big text')
    expect(counter.bytesIn).toBeGreaterThan(200_000)

    reader.disconnect()
    writer.doc.getText('t').insert(0, 'small change')
    await until(() => server!.registry.get('diff')?.document.getText('t').length === 200_012, 5_000, 'server')
    counter.bytesIn = 0
    reader.connect()
    await until(() => reader.doc.getText('t').length === 200_012, 10_000, 'reader caught up')
    await whenSynced(reader)
    expect(stateOf(reader.doc)).toEqual(stateOf(writer.doc))
    // The reconnect moved the small change and the handshake, not the 200 KB document.
    expect(counter.bytesIn).toBeGreaterThan(0)
    expect(counter.bytesIn).toBeLessThan(2_000)
  })

  it('serves the stored state in the first sync after a restart', async () => {
    const writer = connect('restart')
    await whenSynced(writer)
    writer.doc.getText('t').insert(0, 'survives a restart')
    await until(
      () =>
        server!.registry.get('restart')?.isFlushed === true && server!.registry.get('restart')!.lastSeq > 0,
      5_000,
      'flushed',
    )
    writer.destroy()
    await server!.close()
    server = await startSyncServer({ config: config() })

    const fresh = connect('restart')
    const textAtFirstSync = await withTimeout(
      new Promise<string>((resolve) => {
        fresh.on('sync', (isSynced: boolean) => {
          if (isSynced) resolve(fresh.doc.getText('t').toString())
        })
      }),
      10_000,
      'first sync after restart',
    )
    expect(textAtFirstSync).toBe('survives a restart')
  })

  it('answers /healthz and refuses an invalid session id before the upgrade', async () => {
    const health = await fetch(`http://127.0.0.1:${server!.port}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })
    const status = await withTimeout(
      new Promise<number>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${server!.port}/bad%2Fid`)
        socket.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0)
          socket.terminate()
        })
        socket.on('open', () => reject(new Error('upgraded')))
        socket.on('error', () => {})
      }),
      5_000,
      'upgrade refused',
    )
    expect(status).toBe(400)
    expect(server!.registry.size).toBe(0)
  })
})
