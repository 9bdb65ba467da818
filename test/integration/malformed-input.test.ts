// Malformed input over a real socket: each case closes only the offending connection with its
// documented code; the process, the attacked session's content, other sessions and the disk are fine.
// Message types the server does not know are not malformed: they are ignored and counted.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as encoding from 'lib0/encoding'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeSyncUpdate } from '../../shared/protocol/message.js'
import { withTimeout } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

let dataDir: string
let server: SyncServer
let victim: WsPeer
let bystander: WsPeer

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-bad-'))
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', maxMessageBytes: 64 * 1024 },
  })
  const url = `ws://127.0.0.1:${server.port}`
  victim = await connectWsPeer(url, 'attacked')
  bystander = await connectWsPeer(url, 'elsewhere')
  victim.peer.doc.getText('t').insert(0, 'precious')
  bystander.peer.doc.getText('t').insert(0, 'other')
  await victim.peer.whenAcked(victim.peer.requestAck())
  await bystander.peer.whenAcked(bystander.peer.requestAck())
})

afterAll(async () => {
  victim.close()
  bystander.close()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

/** Opens a raw socket on `attacked`, sends `payload` once it has synced, resolves the close code. */
async function attack(payload: string | Uint8Array): Promise<number> {
  const socket = new WebSocket(`ws://127.0.0.1:${server.port}/attacked`)
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
  // The first frame the server sends is its sync step 1: the session is loaded by then.
  await withTimeout(new Promise((resolve) => socket.once('message', resolve)), 5_000, 'server step 1')
  socket.send(payload, { binary: typeof payload !== 'string' })
  return withTimeout(closed, 5_000, 'closed by server')
}

function bytes(write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}

const cases: [string, string | Uint8Array, number][] = [
  ['a text frame', 'hello', CloseCode.TextFrame],
  ['random garbage', new Uint8Array([0, 1, 0xde, 0xad, 0xbe, 0xef]), CloseCode.MalformedMessage],
  ['a truncated frame', encodeSyncUpdate(new Uint8Array(40)).subarray(0, 10), CloseCode.MalformedMessage],
  ['an invalid Yjs update', encodeSyncUpdate(new Uint8Array([1, 2, 3, 4, 5, 6])), CloseCode.InvalidUpdate],
  ['a zero-length update', encodeSyncUpdate(new Uint8Array(0)), CloseCode.InvalidUpdate],
  [
    'a giant varint length',
    bytes((e) => {
      encoding.writeVarUint(e, 0)
      encoding.writeVarUint(e, 2)
      encoding.writeVarUint(e, 2 ** 50)
    }),
    CloseCode.MalformedMessage,
  ],
  [
    'an over-long varint',
    new Uint8Array([0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    CloseCode.MalformedMessage,
  ],
  // uWS drops such a socket without reading the frame and without a close frame: the peer sees 1006.
  ['a message over the size limit', encodeSyncUpdate(new Uint8Array(100 * 1024)), 1006],
]

describe('malformed input', () => {
  it.each(cases)(
    'closes the connection on %s with its code, and nothing else',
    async (_name, payload, code) => {
      const logBefore = (await server.store.load('attacked')).log.length
      expect(await attack(payload)).toBe(code)

      // The attacked session still serves well-behaved clients, with its content intact.
      const fresh = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'attacked')
      await fresh.whenSynced(5_000)
      expect(fresh.peer.doc.getText('t').toString()).toContain('precious')
      fresh.close()
      // The other session's connection never noticed.
      expect(bystander.socket.readyState).toBe(WebSocket.OPEN)
      bystander.peer.doc.getMap('m').set('alive', Date.now())
      await bystander.peer.whenAcked(bystander.peer.requestAck())
      expect(victim.socket.readyState).toBe(WebSocket.OPEN)
      // Nothing reached the disk, and what is there still decodes.
      const stored = await server.store.load('attacked')
      expect(stored.log.length).toBe(logBefore)
      const rebuilt = new Y.Doc()
      for (const entry of stored.log) Y.applyUpdate(rebuilt, entry.update)
      expect(rebuilt.getText('t').toString()).toContain('precious')
    },
  )
})

describe('unknown message types', () => {
  it('ignores message and sync types it does not know, counts them and keeps the connection open', async () => {
    const unknownBefore = (await server.metrics.unknownMessages.get()).values[0]?.value ?? 0
    const peer = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'attacked')
    await peer.whenSynced(5_000)
    peer.peer.sendRaw(new Uint8Array([55, 1, 2]))
    // A Hocuspocus-style stateless message and a sync type from a future protocol version.
    peer.peer.sendRaw(
      bytes((e) => {
        encoding.writeVarUint(e, 5)
        encoding.writeVarString(e, '{"hello":1}')
      }),
    )
    peer.peer.sendRaw(
      bytes((e) => {
        encoding.writeVarUint(e, 0)
        encoding.writeVarUint(e, 7)
        encoding.writeVarUint8Array(e, new Uint8Array([1, 2, 3]))
      }),
    )
    // Frames after them are still served: a write is stored and acknowledged.
    peer.peer.doc.getMap('m').set('after-unknown', true)
    await peer.peer.whenAcked(peer.peer.requestAck())
    expect(peer.socket.readyState).toBe(WebSocket.OPEN)
    expect((await server.metrics.unknownMessages.get()).values[0]?.value).toBe(unknownBefore + 3)
    peer.close()
  })
})
