// Limits and hostile input: each case closes or refuses only the offender, with its code; the
// process, other sessions and the attacked session's content are unaffected.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import * as encoding from 'lib0/encoding'
import * as prng from 'lib0/prng'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { DEFAULT_CONFIG, parseConfig, type ServerConfig } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeAwareness } from '../../shared/protocol/message.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { upgradeStatus } from '../helpers/http.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

let server: SyncServer | undefined
let dataDir: string | undefined
const peers: WsPeer[] = []

async function start(overrides: Partial<ServerConfig>, store?: Store): Promise<string> {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-limits-'))
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', ...overrides },
    ...(store === undefined ? {} : { store }),
  })
  return `ws://127.0.0.1:${server.port}`
}

async function join(url: string, sessionId: string): Promise<WsPeer> {
  const peer = await connectWsPeer(url, sessionId)
  peers.push(peer)
  await peer.whenSynced(5_000)
  return peer
}

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.socket.terminate()
  await server?.close()
  server = undefined
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
})

function awarenessUpdate(entries: readonly { clientId: number; json: string }[]): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(e, entry.clientId)
    encoding.writeVarUint(e, 1)
    encoding.writeVarString(e, entry.json)
  }
  return encodeAwareness(encoding.toUint8Array(e))
}

/** The bystander and the attacked session's good client still work; content is intact. */
async function expectUnharmed(bystander: WsPeer, victim: WsPeer, content: string): Promise<void> {
  expect(bystander.socket.readyState).toBe(WebSocket.OPEN)
  bystander.peer.doc.getMap('m').set('alive', Date.now())
  await bystander.peer.whenAcked(bystander.peer.requestAck())
  expect(victim.socket.readyState).toBe(WebSocket.OPEN)
  expect(server!.registry.get('attacked')!.document.getText('t').toString()).toContain(content)
}

describe('limits', () => {
  it('closes a connection over its update rate with 4429, and only it', async () => {
    const url = await start({ updatesPerSecond: 50, updatesBurst: 50 })
    const bystander = await join(url, 'elsewhere')
    const victim = await join(url, 'attacked')
    victim.peer.doc.getText('t').insert(0, 'precious')
    await victim.peer.whenAcked(victim.peer.requestAck())
    const flooder = await join(url, 'attacked')
    for (let i = 0; i < 200; i++) flooder.peer.doc.getMap('m').set(`k${i}`, i)
    expect(await withTimeout(flooder.closed, 5_000, 'flooder closed')).toBe(CloseCode.RateLimited)
    await expectUnharmed(bystander, victim, 'precious')
  })

  it('closes awareness floods, oversized awareness and too many client ids with 4430', async () => {
    const url = await start({ maxAwarenessBytes: 1024 })
    const bystander = await join(url, 'elsewhere')
    const victim = await join(url, 'attacked')
    victim.peer.doc.getText('t').insert(0, 'precious')
    await victim.peer.whenAcked(victim.peer.requestAck())

    const big = await join(url, 'attacked')
    big.peer.sendRaw(awarenessUpdate([{ clientId: 1, json: JSON.stringify({ pad: 'x'.repeat(2_000) }) }]))
    expect(await withTimeout(big.closed, 5_000, 'oversized closed')).toBe(CloseCode.AwarenessLimit)

    const many = await join(url, 'attacked')
    const ids = Array.from({ length: 1_000 }, (_, i) => ({ clientId: i + 10, json: '{}' }))
    many.peer.sendRaw(awarenessUpdate(ids))
    expect(await withTimeout(many.closed, 5_000, 'many ids closed')).toBe(CloseCode.AwarenessLimit)

    const flood = await join(url, 'attacked')
    for (let i = 0; i < 5_000; i++) flood.peer.sendRaw(awarenessUpdate([{ clientId: 7, json: `{"n":${i}}` }]))
    expect(await withTimeout(flood.closed, 5_000, 'flood closed')).toBe(CloseCode.AwarenessLimit)

    // Deeply nested JSON inside the size limit: accepted or refused, never fatal.
    const nested = await join(url, 'attacked')
    nested.peer.sendRaw(awarenessUpdate([{ clientId: 99, json: `${'['.repeat(500)}${']'.repeat(500)}` }]))
    await new Promise((resolve) => setTimeout(resolve, 50))
    await expectUnharmed(bystander, victim, 'precious')
  })

  it('closes a writer with 4506 while the write backlog is over its bound, and takes writes again after', async () => {
    const controllable = createControllableStore(createMemoryStore())
    const url = await start({ maxQueuedWriteBytes: 1_000 }, controllable.store)
    const writer = await join(url, 'backlog')
    const release = controllable.hold()
    writer.peer.doc.getText('t').insert(0, 'a'.repeat(2_000))
    await controllable.whenAppendCalls(1)
    writer.peer.doc.getText('t').insert(0, 'b')
    expect(await withTimeout(writer.closed, 5_000, 'writer refused')).toBe(CloseCode.Overloaded)
    release()
    await until(() => server!.writeQueue.queuedBytes === 0, 5_000, 'backlog drained')
    const again = await join(url, 'backlog')
    again.peer.doc.getText('t').insert(0, 'c')
    await again.peer.whenAcked(again.peer.requestAck())
    expect(server!.registry.get('backlog')!.document.getText('t').toString()).toBe(`c${'a'.repeat(2_000)}`)
  })

  it('refuses connections past the per-session limit and attempts past the per-address limit with 429', async () => {
    const url = await start({
      maxConnectionsPerSession: 2,
      maxConnectionAttemptsPerIp: 8,
      connectionAttemptWindowMs: 60_000,
    })
    await join(url, 'full')
    await join(url, 'full')
    expect(await upgradeStatus(`${url}/full`)).toBe(429)
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) statuses.push(await upgradeStatus(`${url}/other-${i}`))
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0)
    expect(statuses.at(-1)).toBe(429)
  })

  it('keeps at most the configured sessions in memory, unloading idle ones first', async () => {
    const url = await start({ maxSessionsInMemory: 3, idleUnloadMs: 600_000 })
    for (let i = 0; i < 8; i++) {
      const client = await join(url, `lru-${i}`)
      client.peer.doc.getText('t').insert(0, `session ${i}`)
      await client.peer.whenAcked(client.peer.requestAck())
      client.socket.close()
      await withTimeout(client.closed, 5_000, 'closed')
      await until(() => server!.registry.get(`lru-${i}`)?.connections.size === 0, 5_000, 'detached')
    }
    expect(server!.registry.size).toBeLessThanOrEqual(3)
    const back = await join(url, 'lru-0')
    expect(back.peer.doc.getText('t').toString()).toBe('session 0')
  })

  it('refuses writes past the session quota, and still serves reads', async () => {
    const url = await start({ sessionQuotaBytes: 4_000 })
    const writer = await join(url, 'quota')
    writer.peer.doc.getText('t').insert(0, 'a'.repeat(3_000))
    await writer.peer.whenAcked(writer.peer.requestAck())
    writer.peer.doc.getText('t').insert(0, 'b'.repeat(3_000))
    await until(() => writer.peer.messages.some((m) => m.type === 'auth'), 5_000, 'permission denied')
    const reader = await join(url, 'quota')
    expect(reader.peer.doc.getText('t').toString()).toBe('a'.repeat(3_000))
    expect(writer.socket.readyState).toBe(WebSocket.OPEN)
  })
})

describe('hostile input', () => {
  it('refuses odd session ids before the upgrade', async () => {
    const url = await start({})
    for (const id of ['x'.repeat(16 * 1024), '..%2F..%2Fetc', 'a%00b', '%ff', 'a/b', '']) {
      const status = await upgradeStatus(`${url}/${id}`)
      expect(status === 400 || status === 431 || status === -1, `${id.slice(0, 20)} → ${status}`).toBe(true)
    }
    expect(server!.registry.size).toBe(0)
    await join(url, 'fine')
  })

  it('survives 1,000 connects and disconnects across 1,000 sessions, memory back near its baseline', async () => {
    const url = await start({ idleUnloadMs: 1 })
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    const churn = async (from: number): Promise<void> => {
      for (let i = from; i < from + 100; i++) {
        const socket = new WebSocket(`${url}/churn-${i}`)
        await withTimeout(new Promise((resolve) => socket.once('message', resolve)), 5_000, 'step 1')
        socket.close()
        await new Promise((resolve) => socket.once('close', resolve))
      }
    }
    await churn(0)
    await until(() => server!.registry.size === 0, 10_000, 'sessions unloaded')
    gc()
    const baseline = process.memoryUsage().heapUsed
    for (let round = 1; round < 10; round++) await churn(round * 100)
    await until(() => server!.registry.size === 0, 10_000, 'sessions unloaded')
    gc()
    const growth = process.memoryUsage().heapUsed - baseline
    console.log(`heap growth after 1,000 sessions: ${(growth / 1024 / 1024).toFixed(2)} MiB`)
    expect(growth).toBeLessThan(16 * 1024 * 1024)
  })

  it('closes a reader that never reads once its backpressure passes the limit; writers carry on', async () => {
    const url = await start({ maxBackpressureBytes: 256 * 1024, updateBytesBurst: 64 * 1024 * 1024 })
    const writer = await join(url, 'attacked')
    const slow = await join(url, 'attacked')
    ;(slow.socket as unknown as { _socket: { pause(): void } })._socket.pause()
    // Loopback socket buffers absorb several MiB before uWS sees any backpressure: push up to 64 MiB.
    const chunk = 'z'.repeat(512 * 1024)
    for (let i = 0; i < 128 && server!.registry.get('attacked')!.connections.size > 1; i++) {
      writer.peer.doc.getText('t').insert(0, chunk)
      await writer.peer.whenAcked(writer.peer.requestAck())
    }
    await until(() => server!.registry.get('attacked')!.connections.size === 1, 10_000, 'slow reader dropped')
    expect(writer.socket.readyState).toBe(WebSocket.OPEN)
    // It reconnects and catches up by state vector: nothing lost.
    const again = await join(url, 'attacked')
    expect(again.peer.doc.getText('t').length).toBe(writer.peer.doc.getText('t').length)
  })

  it('stays up while clients send random frames (fuzz)', async () => {
    const url = await start({})
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`fuzz seed: ${seed}`)
    const gen = prng.create(seed)
    const bystander = await join(url, 'elsewhere')
    const victim = await join(url, 'attacked')
    victim.peer.doc.getText('t').insert(0, 'precious')
    await victim.peer.whenAcked(victim.peer.requestAck())
    for (let c = 0; c < 40; c++) {
      const socket = new WebSocket(`${url}/attacked`)
      const closed = new Promise((resolve) => socket.once('close', resolve))
      await withTimeout(new Promise((resolve) => socket.once('message', resolve)), 5_000, 'step 1')
      for (let f = 0; f < 50 && socket.readyState === WebSocket.OPEN; f++) {
        const frame = prng.uint8Array(gen, prng.int32(gen, 0, 64))
        // Half the frames start like a sync message, so decoding gets past the first byte.
        if (prng.bool(gen) && frame.length > 2) frame.set([0, prng.int32(gen, 0, 2)])
        socket.send(frame)
      }
      socket.close()
      await withTimeout(closed, 5_000, 'fuzz socket closed')
    }
    await expectUnharmed(bystander, victim, 'precious')
    const stored = await server!.store.load('attacked')
    const rebuilt = new Y.Doc()
    for (const entry of stored.log) Y.applyUpdate(rebuilt, entry.update)
    expect(rebuilt.getText('t').toString()).toContain('precious')
  })
})

/** What a scenario saw: the limit refused something (a close, an HTTP 429, a denied write), or not. */
type Outcome = 'refused' | 'passed'

/** Resolves 'refused' if the peer is closed before its next ack comes back, 'passed' otherwise. */
async function ackOrClose(peer: WsPeer): Promise<Outcome> {
  return withTimeout(
    Promise.race([
      peer.closed.then(() => 'refused' as const),
      peer.peer.whenAcked(peer.peer.requestAck()).then(() => 'passed' as const),
    ]),
    10_000,
    'ack or close',
  )
}

/** Awareness update entries of one client id, with increasing clocks. */
function ownAwareness(clientId: number, clock: number, state: unknown): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 1)
  encoding.writeVarUint(e, clientId)
  encoding.writeVarUint(e, clock)
  encoding.writeVarString(e, JSON.stringify(state))
  return encodeAwareness(encoding.toUint8Array(e))
}

/**
 * One row per limit flag: the flags that make it tight, the flag set to 0 (the others kept tight, so
 * the 0 alone must lift the limit), and a scenario well past the tight value.
 */
const zeroCases: {
  flag: string
  tight: string[]
  scenario: (url: string) => Promise<Outcome>
}[] = [
  {
    flag: 'updates-per-second',
    tight: ['--updates-per-second', '5', '--updates-burst', '5'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      for (let i = 0; i < 60; i++) peer.peer.doc.getMap('m').set(`k${i}`, i)
      return ackOrClose(peer)
    },
  },
  {
    flag: 'update-bytes-per-second',
    tight: ['--update-bytes-per-second', '1000', '--update-bytes-burst', '1000'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      for (let i = 0; i < 10; i++) peer.peer.doc.getText('t').insert(0, 'b'.repeat(500))
      return ackOrClose(peer)
    },
  },
  {
    flag: 'max-awareness-bytes',
    tight: ['--max-awareness-bytes', '100'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      peer.peer.sendRaw(ownAwareness(5, 1, { pad: 'p'.repeat(1_000) }))
      return ackOrClose(peer)
    },
  },
  {
    flag: 'awareness-per-second',
    tight: ['--awareness-per-second', '5', '--awareness-burst', '5'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      for (let i = 1; i <= 60; i++) peer.peer.sendRaw(ownAwareness(5, i, { n: i }))
      return ackOrClose(peer)
    },
  },
  {
    flag: 'max-awareness-clients-per-connection',
    tight: ['--max-awareness-clients-per-connection', '2'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      peer.peer.sendRaw(
        awarenessUpdate(Array.from({ length: 20 }, (_, i) => ({ clientId: i + 1, json: '{}' }))),
      )
      return ackOrClose(peer)
    },
  },
  {
    flag: 'max-connections-per-session',
    tight: ['--max-connections-per-session', '2'],
    scenario: async (url) => {
      for (let i = 0; i < 2; i++) await join(url, 'z')
      const statuses = [await upgradeStatus(`${url}/z`), await upgradeStatus(`${url}/z`)]
      return statuses.every((status) => status === 101) ? 'passed' : 'refused'
    },
  },
  {
    flag: 'max-connection-attempts-per-ip',
    tight: ['--max-connection-attempts-per-ip', '3', '--connection-attempt-window-ms', '60000'],
    scenario: async (url) => {
      const statuses: number[] = []
      for (let i = 0; i < 8; i++) statuses.push(await upgradeStatus(`${url}/a-${i}`))
      return statuses.every((status) => status === 101) ? 'passed' : 'refused'
    },
  },
  {
    flag: 'max-sessions-in-memory',
    tight: ['--max-sessions-in-memory', '2'],
    scenario: async (url) => {
      // Sessions with a connection are never idle, so none can be unloaded to make room.
      for (let i = 0; i < 2; i++) await join(url, `s-${i}`)
      const statuses = [await upgradeStatus(`${url}/s-2`), await upgradeStatus(`${url}/s-3`)]
      return statuses.every((status) => status === 101) ? 'passed' : 'refused'
    },
  },
  {
    flag: 'session-quota-bytes',
    tight: ['--session-quota-bytes', '1000'],
    scenario: async (url) => {
      const peer = await join(url, 'z')
      peer.peer.doc.getText('t').insert(0, 'q'.repeat(3_000))
      await ackOrClose(peer)
      return peer.peer.messages.some((m) => m.type === 'auth') ? 'refused' : 'passed'
    },
  },
]

/** The bursts: 0 lifts the bucket even when its rate is tight. */
const burstCases = [
  { flag: 'updates-burst', of: 'updates-per-second' },
  { flag: 'update-bytes-burst', of: 'update-bytes-per-second' },
  { flag: 'awareness-burst', of: 'awareness-per-second' },
]
for (const { flag, of } of burstCases) {
  const base = zeroCases.find((c) => c.flag === of)!
  zeroCases.push({ flag, tight: base.tight, scenario: base.scenario })
}

/** Starts a server with the limits `argv` sets, parsed as the command line would be. */
async function startWith(argv: string[]): Promise<string> {
  const parsed = parseConfig(argv, {})
  const keys = argv.filter((arg) => arg.startsWith('--')).map((arg) => flagKey(arg.slice(2)))
  return start(Object.fromEntries(keys.map((key) => [key, parsed[key]])))
}

async function stop(): Promise<void> {
  for (const peer of peers.splice(0)) peer.socket.terminate()
  await server?.close()
  server = undefined
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  dataDir = undefined
}

describe('0 disables a limit', () => {
  it.each(zeroCases.map((c) => [c.flag, c] as const))('--%s 0 lifts it', async (flag, row) => {
    expect(await row.scenario(await startWith(row.tight)), `${flag} tight`).toBe('refused')
    await stop()
    const zero = [...row.tight]
    const at = zero.indexOf(`--${flag}`)
    if (at >= 0) zero[at + 1] = '0'
    else zero.push(`--${flag}`, '0')
    expect(parseConfig(zero, {})[flagKey(flag)], `${flag} parsed`).toBe(0)
    expect(await row.scenario(await startWith(zero)), `${flag} 0`).toBe('passed')
  })
})

/** `max-awareness-bytes` → `maxAwarenessBytes`. */
function flagKey(flag: string): keyof ServerConfig {
  return flag.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase()) as keyof ServerConfig
}
