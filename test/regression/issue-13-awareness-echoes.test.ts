// Regression, issues #13.1 and #18.5: stock y-websocket providers (3.1.0 and 1.5.4) re-broadcast
// every awareness state they receive, so a client joining a busy session was closed with the
// awareness limit; and any peer, even read-only, could rename or remove another peer's presence.
// Real stock providers against the real server on 127.0.0.1 port 0, default limits.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as encoding from 'lib0/encoding'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type * as awarenessProtocol from 'y-protocols/awareness'
import { WebsocketProvider } from 'y-websocket'
import { WebsocketProvider as ClassicWebsocketProvider } from 'y-websocket-classic'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeAwareness } from '../../shared/protocol/message.js'
import { until } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

/** What the tests use of either provider generation. */
interface StockProvider {
  readonly doc: Y.Doc
  readonly awareness: awarenessProtocol.Awareness
  readonly wsconnected: boolean
  on(name: 'connection-close', listener: (event: { code: number } | null) => void): void
  destroy(): void
}

const secret = 'a-test-secret-that-is-long-enough'
let server: SyncServer | undefined
let dataDir: string | undefined
const providers: StockProvider[] = []
const peers: WsPeer[] = []
/** Close codes the server sent to any provider. */
let closes: number[] = []

async function start(overrides: Partial<ServerConfig> = {}): Promise<string> {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-awareness-'))
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', ...overrides },
  })
  return `ws://127.0.0.1:${server.port}`
}

// Every stock provider adds a process 'exit' listener: 51 of them are expected here.
process.setMaxListeners(100)

afterEach(async () => {
  for (const provider of providers.splice(0)) provider.destroy()
  for (const peer of peers.splice(0)) peer.socket.terminate()
  closes = []
  await server?.close()
  server = undefined
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
})

function connect(
  url: string,
  sessionId: string,
  generation: 'v3' | 'classic',
  params: Record<string, string> = {},
): StockProvider {
  const options = {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    // Same-process providers would otherwise share awareness through BroadcastChannel.
    disableBc: true,
    params,
  }
  const provider = (generation === 'v3'
    ? new WebsocketProvider(url, sessionId, new Y.Doc(), options)
    : new ClassicWebsocketProvider(url, sessionId, new Y.Doc(), options)) as unknown as StockProvider
  provider.on('connection-close', (event) => {
    if (event !== null) closes.push(event.code)
  })
  providers.push(provider)
  return provider
}

function nameOf(provider: StockProvider, clientId: number): unknown {
  const state = provider.awareness.getStates().get(clientId) as { user?: { name?: unknown } } | undefined
  return state?.user?.name
}

function awarenessUpdate(
  entries: readonly { clientId: number; clock: number; state: unknown }[],
): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(e, entry.clientId)
    encoding.writeVarUint(e, entry.clock)
    encoding.writeVarString(e, JSON.stringify(entry.state))
  }
  return encodeAwareness(encoding.toUint8Array(e))
}

async function forgedCount(): Promise<number> {
  return (await server!.metrics.awarenessForged.get()).values[0]?.value ?? 0
}

describe('regression #13.1 / #18.5: awareness echoes and ownership', () => {
  it(
    'keeps a stock client connected when it joins a session with 50 people present, through cursor moves',
    async () => {
      const url = await start()
      const present = Array.from({ length: 50 }, (_, i) =>
        connect(url, 'busy', i % 2 === 0 ? 'v3' : 'classic'),
      )
      for (const [i, provider] of present.entries())
        provider.awareness.setLocalStateField('user', { name: `p${i}` })
      await until(
        () => present.every((provider) => provider.awareness.getStates().size === 50),
        30_000,
        'everyone sees the 50 present',
      )

      const joiner = connect(url, 'busy', 'v3')
      joiner.awareness.setLocalStateField('user', { name: 'joiner' })
      const everyone = [...present, joiner]
      await until(
        () => everyone.every((provider) => provider.awareness.getStates().size === 51),
        30_000,
        'everyone sees the joiner, and the joiner everyone',
      )

      // Typing and cursor moves: each move is echoed by the 50 other providers, far past the awareness
      // burst. SOAK_MS=60000 keeps it up for a minute at one round per 250 ms (the bar).
      const soakMs = Number(process.env.SOAK_MS ?? 0)
      const soakEnd = Date.now() + soakMs
      let round = 0
      while (round < 6 || Date.now() < soakEnd) {
        round++
        for (const [i, provider] of everyone.entries()) {
          const text = provider.doc.getText('t')
          text.insert(Math.min(i, text.length), String.fromCharCode(97 + (i % 26)))
          provider.awareness.setLocalStateField('cursor', round)
        }
        await new Promise<void>((resolve) => (soakMs > 0 ? setTimeout(resolve, 250) : setImmediate(resolve)))
      }
      const lastRound = round
      if (soakMs > 0)
        console.log(`soak: ${lastRound} rounds of 51 keystrokes and cursor moves in ${soakMs} ms`)
      await until(
        () =>
          everyone.every((provider) =>
            [...provider.awareness.getStates().values()].every((state) => state.cursor === lastRound),
          ),
        30_000,
        'every provider sees every last cursor',
      )
      await until(
        () => everyone.every((provider) => provider.doc.getText('t').length === lastRound * everyone.length),
        30_000,
        'every provider has every keystroke',
      )
      const text = joiner.doc.getText('t').toString()
      expect(everyone.every((provider) => provider.doc.getText('t').toString() === text)).toBe(true)
      expect(closes).toEqual([])
      expect(everyone.every((provider) => provider.wsconnected)).toBe(true)
      expect(nameOf(present[7]!, joiner.doc.clientID)).toBe('joiner')
      expect(nameOf(joiner, present[7]!.doc.clientID)).toBe('p7')
      expect(await forgedCount()).toBe(0)
    },
    120_000 + Number(process.env.SOAK_MS ?? 0),
  )

  it('drops a read-only peer’s changes to a client id it does not own, and keeps it connected', async () => {
    const url = await start({ secret })
    const mint = (role: 'read' | 'write', peerId: string) =>
      mintToken({ secret, peerId, role, sessionId: 'room', ttlSeconds: 600 })
    const victim = connect(url, 'room', 'v3', { token: await mint('write', 'victim') })
    const observer = connect(url, 'room', 'classic', { token: await mint('read', 'observer') })
    victim.awareness.setLocalStateField('user', { name: 'victim' })
    const victimId = victim.doc.clientID
    await until(() => nameOf(observer, victimId) === 'victim', 10_000, 'observer sees the victim')

    const forger = await connectWsPeer(url, `room?token=${await mint('read', 'forger')}`)
    peers.push(forger)
    await forger.whenSynced()
    const forgerId = 424_242
    const clock = victim.awareness.meta.get(victimId)!.clock
    // A rename and the forger's own presence in one message: only the forger's own entry passes.
    forger.peer.sendRaw(
      awarenessUpdate([
        { clientId: victimId, clock: clock + 5, state: { user: { name: 'mallory' } } },
        { clientId: forgerId, clock: 1, state: { user: { name: 'forger' } } },
      ]),
    )
    await until(() => nameOf(observer, forgerId) === 'forger', 10_000, 'observer sees the forger')
    expect(nameOf(observer, victimId)).toBe('victim')
    expect(nameOf(victim, victimId)).toBe('victim')

    // Removals, at the same clock and at a newer one, then a marker from the forger's own id.
    forger.peer.sendRaw(awarenessUpdate([{ clientId: victimId, clock, state: null }]))
    forger.peer.sendRaw(awarenessUpdate([{ clientId: victimId, clock: clock + 9, state: null }]))
    forger.peer.sendRaw(
      awarenessUpdate([{ clientId: forgerId, clock: 2, state: { user: { name: 'forger 2' } } }]),
    )
    await until(() => nameOf(observer, forgerId) === 'forger 2', 10_000, 'observer sees the marker')
    expect(nameOf(observer, victimId)).toBe('victim')
    expect(forger.socket.readyState).toBe(WebSocket.OPEN)
    expect(await forgedCount()).toBe(3)

    // When the forger leaves, only its own presence is removed for everyone.
    forger.close()
    await until(() => !observer.awareness.getStates().has(forgerId), 10_000, 'forger removed')
    expect(nameOf(observer, victimId)).toBe('victim')
    expect(nameOf(victim, victimId)).toBe('victim')
    expect(closes).toEqual([])
  })

  it('drops an anonymous peer’s rename of another anonymous peer, and closes a forger that floods with 4530', async () => {
    const url = await start({ awarenessPerSecond: 10, awarenessBurst: 10 })
    const victim = connect(url, 'anon', 'v3')
    const observer = connect(url, 'anon', 'v3')
    victim.awareness.setLocalStateField('user', { name: 'victim' })
    const victimId = victim.doc.clientID
    await until(() => nameOf(observer, victimId) === 'victim', 10_000, 'observer sees the victim')
    const forger = await connectWsPeer(url, 'anon')
    peers.push(forger)
    await forger.whenSynced()
    const clock = victim.awareness.meta.get(victimId)!.clock
    forger.peer.sendRaw(
      awarenessUpdate([
        { clientId: victimId, clock: clock + 1, state: { user: { name: 'mallory' } } },
        { clientId: 7, clock: 1, state: { user: { name: 'forger' } } },
      ]),
    )
    await until(() => nameOf(observer, 7) === 'forger', 10_000, 'observer sees the forger')
    expect(nameOf(observer, victimId)).toBe('victim')
    // Forgeries cost the forger its awareness rate: a flood of them closes it.
    for (let i = 0; i < 100; i++) {
      forger.peer.sendRaw(awarenessUpdate([{ clientId: victimId, clock: clock + 2 + i, state: { n: i } }]))
    }
    expect(await forger.closed).toBe(CloseCode.AwarenessLimit)
    await until(() => !observer.awareness.getStates().has(7), 10_000, 'forger removed')
    expect(nameOf(observer, victimId)).toBe('victim')
    expect(closes).toEqual([])
  })

  it('lets a reconnect of the same authenticated peer take its id over, and the old socket’s close removes nothing', async () => {
    const url = await start({ secret })
    const mint = (peerId: string) =>
      mintToken({ secret, peerId, role: 'write', sessionId: 'room', ttlSeconds: 600 })
    const observer = connect(url, 'room', 'v3', { token: await mint('observer') })
    const alice = 9_001
    const old = await connectWsPeer(url, `room?token=${await mint('alice')}`)
    const fresh = await connectWsPeer(url, `room?token=${await mint('alice')}`)
    const bob = await connectWsPeer(url, `room?token=${await mint('bob')}`)
    peers.push(old, fresh, bob)
    await Promise.all([old.whenSynced(), fresh.whenSynced(), bob.whenSynced()])
    old.peer.sendRaw(awarenessUpdate([{ clientId: alice, clock: 1, state: { user: { name: 'alice' } } }]))
    await until(() => nameOf(observer, alice) === 'alice', 10_000, 'observer sees alice')
    // Another peer cannot; the same peer on its new connection can.
    bob.peer.sendRaw(awarenessUpdate([{ clientId: alice, clock: 2, state: { user: { name: 'bob' } } }]))
    fresh.peer.sendRaw(
      awarenessUpdate([{ clientId: alice, clock: 3, state: { user: { name: 'alice again' } } }]),
    )
    await until(() => nameOf(observer, alice) === 'alice again', 10_000, 'observer sees the takeover')
    expect(await forgedCount()).toBe(1)
    // The old socket closes late: alice's presence, now owned by the fresh connection, stays.
    old.close()
    await old.closed
    await until(() => server!.registry.get('room')!.connections.size === 3, 10_000, 'old socket detached')
    // A marker through the fresh connection: anything the old close sent arrived before it.
    fresh.peer.sendRaw(awarenessUpdate([{ clientId: alice, clock: 4, state: { user: { name: 'alice 4' } } }]))
    await until(() => nameOf(observer, alice) === 'alice 4', 10_000, 'observer sees the marker')
    expect(observer.awareness.getStates().has(alice)).toBe(true)
    fresh.close()
    await until(() => !observer.awareness.getStates().has(alice), 10_000, 'removed when its owner leaves')
  })

  it('charges no awareness rate for echoes: a peer echoing 200 states under a burst of 5 stays', async () => {
    const url = await start({ awarenessPerSecond: 5, awarenessBurst: 5 })
    const victim = connect(url, 'echoes', 'classic')
    victim.awareness.setLocalStateField('user', { name: 'victim' })
    const victimId = victim.doc.clientID
    const echoer = await connectWsPeer(url, 'echoes')
    peers.push(echoer)
    await echoer.whenSynced()
    await until(() => server!.registry.get('echoes')!.connections.size === 2, 10_000, 'both attached')
    const observer = connect(url, 'echoes', 'v3')
    await until(() => nameOf(observer, victimId) === 'victim', 10_000, 'observer sees the victim')
    const clock = victim.awareness.meta.get(victimId)!.clock
    for (let i = 0; i < 200; i++) {
      echoer.peer.sendRaw(
        awarenessUpdate([{ clientId: victimId, clock, state: { user: { name: 'victim' } } }]),
      )
    }
    echoer.peer.sendRaw(awarenessUpdate([{ clientId: 77, clock: 1, state: { user: { name: 'echoer' } } }]))
    await until(() => nameOf(observer, 77) === 'echoer', 10_000, 'observer sees the echoer')
    expect(echoer.socket.readyState).toBe(WebSocket.OPEN)
    expect(await forgedCount()).toBe(0)
  })
})
