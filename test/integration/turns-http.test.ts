// The turns API on a real server with tokens and a LevelDB store: a device creates a turn and
// watches it move through its session's `turns` map while a worker claims, streams and completes
// it; hostile or misplaced calls get a clear status and code (bad ids, unknown pools, huge bodies,
// bad JSON, a device token on a worker route, a session outside the scope, full queues).

import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { appendMessage } from '../../shared/conversation/index.js'
import type {
  ClaimResponse,
  CreateTurnResponse,
  RenewResponse,
  TurnResponse,
} from '../../shared/turns/api.js'
import { readTurnEntry, turnsMap } from '../../shared/turns/document.js'
import { rawExchange, requestHead } from '../helpers/raw-http.js'
import { startTestServer } from '../helpers/test-server.js'
import { until, withTimeout } from '../helpers/wait.js'

const secret = 'turns-http-test-secret-0123456789abcdef'
let server: SyncServer
let base: string
let dataDir: string
let deviceToken: string
let otherDeviceToken: string
let workerToken: string
let scopedAgentToken: string
const clients: SyncClient[] = []

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-turns-http-'))
  server = await startSyncServer({
    config: {
      ...DEFAULT_CONFIG,
      port: 0,
      dataDir,
      compaction: false,
      logLevel: 'silent',
      secret,
      turnPools: ['gpu:2', 'tiny:1:1:1'],
      turnPositionRefreshMs: 50,
      idleUnloadMs: 100,
    },
  })
  base = `http://127.0.0.1:${server.port}`
  deviceToken = await mintToken({ secret, peerId: 'phone', role: 'write', sessionPrefix: 'chat-' })
  otherDeviceToken = await mintToken({ secret, peerId: 'intruder', role: 'write', sessionId: 'elsewhere' })
  workerToken = await mintToken({
    secret,
    peerId: 'worker-1',
    role: 'write',
    kind: 'agent',
    sessionPrefix: '',
  })
  scopedAgentToken = await mintToken({
    secret,
    peerId: 'w2',
    role: 'write',
    kind: 'agent',
    sessionPrefix: 'chat-',
  })
})

afterAll(async () => {
  for (const client of clients.splice(0)) await client.destroy()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

async function call(method: string, route: string, token: string, body?: unknown): Promise<Response> {
  return fetch(`${base}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
}

async function errorCode(response: Response): Promise<string> {
  const { error } = (await response.json()) as { error: { code: string } }
  return error.code
}

const turnPath = (id: string, action = '') => `/api/turns/${encodeURIComponent(id)}${action}`

/** A device writes question `q` in `sessionId`, waits for its ack and closes the session. */
async function askAndLeave(sessionId: string): Promise<void> {
  const writer = createNodeSyncClient({
    url: `ws://127.0.0.1:${server.port}`,
    sessionId,
    token: () => deviceToken,
  })
  await writer.whenSynced()
  appendMessage(writer.doc, { id: 'q', role: 'user', author: { id: 'phone', kind: 'device' }, content: 'hi' })
  await writer.whenFlushed()
  await writer.destroy()
}

describe('the turns API', () => {
  it('takes a turn from creation to done, and every device sees each state in the session', async () => {
    const phone = createNodeSyncClient({
      url: `ws://127.0.0.1:${server.port}`,
      sessionId: 'chat-1',
      token: () => deviceToken,
    })
    clients.push(phone)
    await phone.whenSynced()
    const seen: string[] = []
    turnsMap(phone.doc).observe(() => {
      const state = readTurnEntry(phone.doc, 'm1')?.state
      if (state !== undefined && seen.at(-1) !== state) seen.push(state)
    })

    const created = await call('POST', '/api/turns', deviceToken, {
      sessionId: 'chat-1',
      messageId: 'm1',
      pool: 'gpu',
    })
    expect(created.status).toBe(201)
    const { turn } = (await created.json()) as CreateTurnResponse
    expect(turn).toMatchObject({ id: 'gpu~chat-1~m1', state: 'queued', priority: 1, tenant: 'default' })
    const again = await call('POST', '/api/turns', deviceToken, {
      sessionId: 'chat-1',
      messageId: 'm1',
      pool: 'gpu',
    })
    expect(again.status).toBe(200)
    expect(((await again.json()) as CreateTurnResponse).isNew).toBe(false)
    await until(() => seen.includes('queued'), 5_000, 'the device sees the turn queued')

    const claim = await call('POST', '/api/pools/gpu/claim', workerToken, {
      instanceId: 'run-1',
      max: 4,
      waitMs: 1_000,
    })
    expect(claim.status).toBe(200)
    const { turns } = (await claim.json()) as ClaimResponse
    expect(turns).toHaveLength(1)
    const lease = turns[0]!.lease
    expect(turns[0]!.turn).toMatchObject({
      state: 'claimed',
      attempts: 1,
      agent: { peerId: 'worker-1', instanceId: 'run-1' },
    })
    await until(() => seen.at(-1) === 'claimed', 5_000, 'the device sees the turn claimed')

    const renewed = await call('POST', turnPath(turn.id, '/renew'), workerToken, {
      leaseId: lease.id,
      state: 'streaming',
      replyId: 'answer-1',
    })
    expect(((await renewed.json()) as RenewResponse).status).toBe('ok')
    await until(() => seen.at(-1) === 'streaming', 5_000, 'the device sees the turn streaming')
    const done = await call('POST', turnPath(turn.id, '/complete'), workerToken, { leaseId: lease.id })
    expect(done.status).toBe(200)
    expect(((await done.json()) as TurnResponse).turn.state).toBe('done')
    await until(() => seen.at(-1) === 'done', 5_000, 'the device sees the turn done')
    expect(seen).toEqual(['queued', 'claimed', 'streaming', 'done'])
    expect(readTurnEntry(phone.doc, 'm1')).toMatchObject({
      replyId: 'answer-1',
      agent: { peerId: 'worker-1' },
    })

    const read = await call('GET', turnPath(turn.id), deviceToken)
    expect(((await read.json()) as TurnResponse).turn.state).toBe('done')
    const late = await call('POST', turnPath(turn.id, '/complete'), workerToken, { leaseId: lease.id })
    expect([late.status, await errorCode(late)]).toEqual([409, 'turn-finished'])
  })

  it('writes turn states into a session nobody has open, for whoever opens it later', async () => {
    await askAndLeave('chat-unopened')
    await until(() => server.registry.get('chat-unopened') === undefined, 5_000, 'the session unloads')

    await call('POST', '/api/turns', deviceToken, {
      sessionId: 'chat-unopened',
      messageId: 'q',
      pool: 'gpu',
      priority: 2,
    })
    // The server loads the session to show the turn in it.
    await until(
      () => server.registry.get('chat-unopened') !== undefined,
      5_000,
      'the server loads the session',
    )
    const later = createNodeSyncClient({
      url: `ws://127.0.0.1:${server.port}`,
      sessionId: 'chat-unopened',
      token: () => deviceToken,
    })
    clients.push(later)
    await later.whenSynced()
    await until(
      () => readTurnEntry(later.doc, 'q')?.state === 'queued',
      5_000,
      'the turn entry is in the session',
    )
    const cancelled = await call('POST', turnPath('gpu~chat-unopened~q', '/cancel'), deviceToken)
    expect(((await cancelled.json()) as TurnResponse).turn).toMatchObject({
      state: 'cancelled',
      reason: 'cancelled-by-device',
    })
    await until(
      () => readTurnEntry(later.doc, 'q')?.state === 'cancelled',
      5_000,
      'the device sees it cancelled',
    )
  })

  it('ends the turns of a deleted session, so no worker is handed one', async () => {
    await askAndLeave('chat-doomed')
    await call('POST', '/api/turns', deviceToken, { sessionId: 'chat-doomed', messageId: 'q', pool: 'gpu' })
    const admin = await mintToken({ secret, peerId: 'ops', role: 'admin', sessionPrefix: '' })
    const deleted = await call('DELETE', '/sessions/chat-doomed', admin)
    expect(deleted.status).toBe(204)
    const read = await call('GET', turnPath('gpu~chat-doomed~q'), deviceToken)
    expect(((await read.json()) as TurnResponse).turn).toMatchObject({
      state: 'cancelled',
      reason: 'session-deleted',
    })
    const claim = await call('POST', '/api/pools/gpu/claim', workerToken, { instanceId: 'run-2', max: 64 })
    const { turns } = (await claim.json()) as ClaimResponse
    expect(turns.map((claimed) => claimed.turn.id)).not.toContain('gpu~chat-doomed~q')
  })

  it('refuses bad ids, unknown pools, bad JSON and huge bodies with clear codes', async () => {
    const cases: [Response, number, string][] = [
      [
        await call('POST', '/api/turns', deviceToken, { sessionId: 'chat-1', messageId: 'm/1', pool: 'gpu' }),
        400,
        'bad-request',
      ],
      [
        await call('POST', '/api/turns', deviceToken, { sessionId: 'chat 1', messageId: 'm1', pool: 'gpu' }),
        400,
        'bad-request',
      ],
      [
        await call('POST', '/api/turns', deviceToken, {
          sessionId: 'chat-1',
          messageId: 'm1',
          pool: 'gpu',
          priority: 7,
        }),
        400,
        'bad-request',
      ],
      [
        await call('POST', '/api/turns', deviceToken, { sessionId: 'chat-1', messageId: 'm2', pool: 'cpu' }),
        404,
        'unknown-pool',
      ],
      [await call('POST', '/api/turns', deviceToken, '{"sessionId":'), 400, 'bad-request'],
      [
        await call('POST', '/api/turns', deviceToken, {
          sessionId: 'chat-1',
          messageId: 'm1',
          pool: 'gpu',
          tenant: 'x'.repeat(20_000),
        }),
        413,
        'bad-request',
      ],
      [await call('GET', '/api/turns/not-a-turn', deviceToken), 400, 'bad-request'],
      [await call('GET', turnPath('gpu~chat-1~never'), deviceToken), 404, 'not-found'],
      [await call('POST', '/api/pools/cpu/claim', workerToken, { instanceId: 'r' }), 404, 'unknown-pool'],
      [
        await call('POST', '/api/pools/gpu/claim', workerToken, { instanceId: 'r', waitMs: 3_600_000 }),
        400,
        'bad-request',
      ],
      [
        await call('POST', turnPath('gpu~chat-1~m1', '/renew'), workerToken, { leaseId: 5 }),
        400,
        'bad-request',
      ],
    ]
    for (const [response, status, code] of cases)
      expect([response.status, await errorCode(response)]).toEqual([status, code])
  })

  it('keeps worker routes to agent tokens for every session, and devices to their own sessions', async () => {
    const asDevice = await call('POST', '/api/pools/gpu/claim', deviceToken, { instanceId: 'sneaky' })
    expect([asDevice.status, await errorCode(asDevice)]).toEqual([403, 'forbidden'])
    const scoped = await call('POST', '/api/pools/gpu/claim', scopedAgentToken, { instanceId: 'narrow' })
    expect([scoped.status, await errorCode(scoped)]).toEqual([403, 'forbidden'])
    const outside = await call('POST', '/api/turns', otherDeviceToken, {
      sessionId: 'chat-1',
      messageId: 'x',
      pool: 'gpu',
    })
    expect([outside.status, await errorCode(outside)]).toEqual([403, 'forbidden'])
    const peek = await call('GET', turnPath('gpu~chat-1~m1'), otherDeviceToken)
    expect(peek.status).toBe(403)
    const cancel = await call('POST', turnPath('gpu~chat-1~m1', '/cancel'), otherDeviceToken)
    expect(cancel.status).toBe(403)
    const anonymous = await fetch(`${base}/api/turns`, { method: 'POST', body: '{}' })
    expect(anonymous.status).toBe(401)
  })

  it('refuses a turn beyond a full queue with 429 queue-full', async () => {
    const first = await call('POST', '/api/turns', deviceToken, {
      sessionId: 'chat-2',
      messageId: 'a',
      pool: 'tiny',
    })
    expect(first.status).toBe(201)
    const second = await call('POST', '/api/turns', deviceToken, {
      sessionId: 'chat-2',
      messageId: 'b',
      pool: 'tiny',
    })
    expect([second.status, await errorCode(second)]).toEqual([429, 'queue-full'])
  })

  it('counts queued turns, waits and ends in /metrics', async () => {
    const text = await (
      await fetch(`${base}/metrics`, {
        headers: {
          authorization: `Bearer ${await mintToken({ secret, peerId: 'ops', role: 'admin', sessionPrefix: '' })}`,
        },
      })
    ).text()
    expect(text).toMatch(/colloquy_turns_queued\{pool="tiny",priority="1"\} 1/)
    expect(text).toMatch(/colloquy_turn_wait_seconds_count\{pool="gpu",priority="1"\} 1/)
    expect(text).toMatch(/colloquy_turns_ended_total\{pool="gpu",state="done"\} 1/)
    expect(text).toMatch(/colloquy_turns_refused_total\{pool="tiny",reason="pool-full"\} 1/)
  })
})

describe('the turns API beside slow uploads', () => {
  it('creates turns while every upload slot is held (regression: small turn bodies counted as uploads got 429)', async () => {
    const busy = await startTestServer({ compaction: false, turnPools: ['gpu:1'], maxConcurrentUploads: 1 })
    const slow = net.connect(busy.port, '127.0.0.1')
    try {
      await new Promise((resolve) => slow.once('connect', resolve))
      // An import that announces 1,000 bytes and sends 10: it holds the one upload slot.
      slow.write(
        requestHead('POST', '/sessions/slow/import', {
          host: `127.0.0.1:${busy.port}`,
          'content-length': 1_000,
        }),
      )
      slow.write(Buffer.alloc(10))
      const probe = () =>
        rawExchange(
          busy.port,
          requestHead('POST', '/sessions/probe/import', {
            host: `127.0.0.1:${busy.port}`,
            'content-length': 4,
          }),
          new Uint8Array(4),
        )
      let status = 0
      const deadline = Date.now() + 5_000
      while (status !== 429 && Date.now() < deadline) status = (await probe()).status
      expect(status).toBe(429)
      const body = JSON.stringify({ sessionId: 'chat-9', messageId: 'm', pool: 'gpu' })
      const created = await rawExchange(
        busy.port,
        requestHead('POST', '/api/turns', {
          host: `127.0.0.1:${busy.port}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        }),
        body,
      )
      expect(created.status).toBe(201)
    } finally {
      slow.destroy()
      await busy.close()
    }
  })
})

describe('the turns API while a session is being deleted', () => {
  it('hands no worker a turn of a session whose delete is in progress (regression: its turns were ended only after the stored session was gone)', async () => {
    const inner = createMemoryStore()
    let release: () => void = () => undefined
    let gate: Promise<void> | undefined
    let isDeleting = false
    // The stored session's removal waits at the gate while it is closed.
    const store: Store = {
      ...inner,
      load: (sessionId) => inner.load(sessionId),
      getMeta: (sessionId) => inner.getMeta(sessionId),
      deleteSession: async (sessionId) => {
        isDeleting = true
        await gate
        return inner.deleteSession(sessionId)
      },
    }
    const local = await startTestServer({ turnPools: ['gpu:2'], compaction: false }, { store })
    const post = (route: string, body: unknown) =>
      fetch(`http://127.0.0.1:${local.port}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    try {
      const writer = createNodeSyncClient({ url: `ws://127.0.0.1:${local.port}`, sessionId: 'doomed' })
      await writer.whenSynced()
      appendMessage(writer.doc, {
        id: 'q',
        role: 'user',
        author: { id: 'phone', kind: 'device' },
        content: 'hi',
      })
      await writer.whenFlushed()
      await writer.destroy()
      expect((await post('/api/turns', { sessionId: 'doomed', messageId: 'q', pool: 'gpu' })).status).toBe(
        201,
      )

      gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const deleting = fetch(`http://127.0.0.1:${local.port}/sessions/doomed`, { method: 'DELETE' })
      await until(() => isDeleting, 5_000, 'the delete reaches the store')
      const claim = await post('/api/pools/gpu/claim', { instanceId: 'run-1', max: 64 })
      const { turns } = (await claim.json()) as ClaimResponse
      release()
      expect((await withTimeout(deleting, 5_000, 'the delete answers')).status).toBe(204)
      expect(turns.map((claimed) => claimed.turn.id)).toEqual([])
      const read = await fetch(`http://127.0.0.1:${local.port}${turnPath('gpu~doomed~q')}`)
      expect(((await read.json()) as TurnResponse).turn).toMatchObject({
        state: 'cancelled',
        reason: 'session-deleted',
      })
    } finally {
      release()
      await local.close()
    }
  })
})

describe('the turns API when a worker goes away during its claim', () => {
  it('gives the turn back at once, uncounted, when the claim request is aborted before its answer (regression: leased to nobody for a whole lease, an attempt spent)', async () => {
    const inner = createMemoryStore()
    let release: () => void = () => undefined
    let gate: Promise<void> | undefined
    // Turn records wait at the gate while it is closed: the claim's record is "being written".
    const store: Store = {
      ...inner,
      load: (sessionId) => inner.load(sessionId),
      getMeta: (sessionId) => inner.getMeta(sessionId),
      records: {
        write: async (ops) => {
          await gate
          return inner.records!.write(ops)
        },
        scan: (range) => inner.records!.scan(range),
      },
    }
    const local = await startTestServer({ turnPools: ['gpu:2'], compaction: false }, { store })
    const localBase = `http://127.0.0.1:${local.port}`
    let socket: net.Socket | undefined
    try {
      const created = await fetch(`${localBase}/api/turns`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sessionId: 'chat-gone', messageId: 'q', pool: 'gpu' }),
      })
      expect(created.status).toBe(201)
      gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const body = JSON.stringify({ instanceId: 'run-gone', max: 1, waitMs: 1_000 })
      const connected = net.connect(local.port, '127.0.0.1')
      socket = connected
      await new Promise<void>((resolve, reject) => {
        connected.once('connect', resolve)
        connected.once('error', reject)
      })
      connected.on('error', () => undefined)
      let answer = ''
      connected.on('data', (chunk: Buffer) => {
        answer += chunk.toString()
      })
      connected.write(
        requestHead('POST', '/api/pools/gpu/claim', {
          host: `127.0.0.1:${local.port}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        }) + body,
      )
      const running = async () =>
        ((await (await fetch(`${localBase}/api/pools/gpu`)).json()) as { running: number }).running
      const deadline = Date.now() + 5_000
      while ((await running()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      expect(await running()).toBe(1)
      // The worker goes away while its claim is being stored; the server learns it (onAborted).
      connected.destroy()
      await new Promise((resolve) => setTimeout(resolve, 300))
      release()
      let turn: TurnResponse['turn'] | undefined
      const back = Date.now() + 5_000
      while (Date.now() < back) {
        turn = ((await (await fetch(`${localBase}${turnPath('gpu~chat-gone~q')}`)).json()) as TurnResponse)
          .turn
        if (turn.state === 'queued') break
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect(answer).toBe('')
      expect(turn).toMatchObject({ state: 'queued', attempts: 0 })
      const claim = await fetch(`${localBase}/api/pools/gpu/claim`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instanceId: 'run-next', max: 1 }),
      })
      const { turns } = (await claim.json()) as ClaimResponse
      expect(turns.map((claimed) => [claimed.turn.id, claimed.turn.attempts])).toEqual([
        ['gpu~chat-gone~q', 1],
      ])
    } finally {
      socket?.destroy()
      release()
      await local.close()
    }
  })
})
