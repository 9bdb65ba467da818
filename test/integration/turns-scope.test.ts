// Issue #17: any token that could write a session created turns of any tenant and of class 0, so
// one tenant could jump every queue and break per-tenant fairness. Now the tenant and best class
// come from the token (`tnt`, `pri`; `colloquy token --tenant --priority`): over HTTP a request
// beyond them gets 403 `tenant-forbidden` / `priority-forbidden`; an automatic turn (a message
// written over the socket) gets its writer token's tenant and at best its class.

import { execFileSync, spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createConnection } from '../../client/connection.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { createTokenVerifier, type MintOptions, mintToken } from '../../server/auth/tokens.js'
import type { SyncServer } from '../../server/sync-server.js'
import { appendMessage } from '../../shared/conversation/index.js'
import type { CreateTurnRequest, CreateTurnResponse } from '../../shared/turns/api.js'
import { readTurnEntry } from '../../shared/turns/document.js'
import { nodeScript } from '../helpers/node-script.js'
import { capturingLogger, startTestServer } from '../helpers/test-server.js'
import { until } from '../helpers/wait.js'

const secret = 'turns-scope-test-secret-0123456789abcdef'
let server: SyncServer
let base: string
const clients: SyncClient[] = []
const log = capturingLogger()

beforeAll(async () => {
  server = await startTestServer(
    {
      compaction: false,
      secret,
      turnPools: ['gpu:1'],
      turnAuto: ['gpu=auto-'],
      turnPositionRefreshMs: 50,
    },
    { logger: log.logger },
  )
  base = `http://127.0.0.1:${server.port}`
})

afterAll(async () => {
  for (const client of clients.splice(0)) await client.destroy()
  await server.close()
})

const token = (options: Partial<MintOptions>): Promise<string> =>
  mintToken({ secret, peerId: 'device', role: 'write', sessionPrefix: '', ...options })

let serial = 0
/** `POST /api/turns` for a new message of session `chat-1` with `labels`: the status and the code or turn. */
async function create(
  bearer: string,
  labels: Pick<CreateTurnRequest, 'tenant' | 'priority'>,
): Promise<{ status: number; code?: string; tenant?: string; priority?: number }> {
  const body: CreateTurnRequest = { sessionId: 'chat-1', messageId: `m${serial++}`, pool: 'gpu', ...labels }
  const response = await fetch(`${base}/api/turns`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = (await response.json()) as CreateTurnResponse & { error?: { code: string } }
  if (json.error !== undefined) return { status: response.status, code: json.error.code }
  return { status: response.status, tenant: json.turn.tenant, priority: json.turn.priority }
}

describe('turns over HTTP and the token (issue #17)', () => {
  it("charge a tenant token's turns to its tenant and refuse another tenant with 403 tenant-forbidden", async () => {
    const acme = await token({ tenant: 'acme', bestPriority: 0 })
    expect(await create(acme, {})).toEqual({ status: 201, tenant: 'acme', priority: 1 })
    expect(await create(acme, { tenant: 'acme', priority: 0 })).toEqual({
      status: 201,
      tenant: 'acme',
      priority: 0,
    })
    expect(await create(acme, { tenant: 'globex' })).toEqual({ status: 403, code: 'tenant-forbidden' })
    const refusal = log.lines.map((line) => JSON.parse(line)).find((r) => r.reason === 'tenant-forbidden')
    expect(refusal).toMatchObject({
      msg: 'turn refused: beyond its token',
      peerId: 'device',
      tenant: 'globex',
    })
  })

  it("refuse a class better than the token's with 403 priority-forbidden", async () => {
    const batch = await token({ tenant: 'acme', bestPriority: 2 })
    expect(await create(batch, { priority: 0 })).toEqual({ status: 403, code: 'priority-forbidden' })
    expect(await create(batch, { priority: 1 })).toEqual({ status: 403, code: 'priority-forbidden' })
    expect(await create(batch, {})).toEqual({ status: 201, tenant: 'acme', priority: 2 })
  })

  it('give a token without turn claims the default tenant and class 1 at best', async () => {
    const plain = await token({})
    expect(await create(plain, {})).toEqual({ status: 201, tenant: 'default', priority: 1 })
    expect(await create(plain, { priority: 0 })).toEqual({ status: 403, code: 'priority-forbidden' })
    expect(await create(plain, { tenant: 't0' })).toEqual({ status: 403, code: 'tenant-forbidden' })
  })

  it('let an admin token without a tenant create turns for any tenant and class (a service)', async () => {
    const service = await token({ role: 'admin' })
    expect(await create(service, { tenant: 'globex', priority: 0 })).toEqual({
      status: 201,
      tenant: 'globex',
      priority: 0,
    })
  })
})

describe('automatic turns and the token of the writer (issue #17)', () => {
  async function ask(
    bearer: string,
    sessionId: string,
    metadata: Record<string, unknown>,
  ): Promise<SyncClient> {
    const device = createNodeSyncClient({
      url: `ws://127.0.0.1:${server.port}`,
      sessionId,
      token: () => bearer,
    })
    clients.push(device)
    await device.whenSynced()
    appendMessage(device.doc, {
      id: 'q',
      role: 'user',
      author: { id: 'device', kind: 'device' },
      content: 'hi',
      metadata,
    })
    await until(() => readTurnEntry(device.doc, 'q') !== undefined, 5_000, 'the message gets a turn')
    return device
  }

  it("give the message its writer's tenant and clamp its class to the writer's best", async () => {
    await ask(await token({ tenant: 'acme', bestPriority: 1 }), 'auto-1', { tenant: 'globex', priority: 0 })
    expect((await server.turns.get('gpu~auto-1~q')).turn).toMatchObject({ tenant: 'acme', priority: 1 })
    await ask(await token({}), 'auto-2', { tenant: 'globex', priority: 0 })
    expect((await server.turns.get('gpu~auto-2~q')).turn).toMatchObject({ tenant: 'default', priority: 1 })
    await ask(await token({ tenant: 'acme', bestPriority: 0 }), 'auto-3', { priority: 0 })
    expect((await server.turns.get('gpu~auto-3~q')).turn).toMatchObject({ tenant: 'acme', priority: 0 })
  })

  it('do the same for a message written over the multiplexed /hocuspocus connection', async () => {
    const connection = createConnection({
      url: `ws://127.0.0.1:${server.port}`,
      WebSocket: WebSocket as never,
      token: await token({ tenant: 'initech', bestPriority: 2 }),
    })
    try {
      const handle = connection.open('auto-mux')
      await handle.whenSynced()
      appendMessage(handle.doc, {
        id: 'q',
        role: 'user',
        author: { id: 'device', kind: 'device' },
        content: 'hi',
        metadata: { tenant: 'globex', priority: 0 },
      })
      await until(() => readTurnEntry(handle.doc, 'q') !== undefined, 5_000, 'the message gets a turn')
      expect((await server.turns.get('gpu~auto-mux~q')).turn).toMatchObject({
        tenant: 'initech',
        priority: 2,
      })
    } finally {
      await connection.destroy()
    }
  })
})

describe('colloquy token --tenant --priority', () => {
  const run = (args: string[]) =>
    spawnSync(
      process.execPath,
      [...nodeScript('cli/colloquy.ts'), 'token', '--peer', 'ops', '--prefix', '', ...args],
      { env: { ...process.env, COLLOQUY_SECRET: secret }, encoding: 'utf8' },
    )

  it('mints the tnt and pri claims the server binds turns to', async () => {
    const minted = execFileSync(
      process.execPath,
      [
        ...nodeScript('cli/colloquy.ts'),
        'token',
        '--peer',
        'ops',
        '--prefix',
        '',
        '--tenant',
        'acme',
        '--priority',
        '2',
      ],
      { env: { ...process.env, COLLOQUY_SECRET: secret }, encoding: 'utf8' },
    ).trim()
    expect(await createTokenVerifier(secret).verify(minted)).toMatchObject({
      tenant: 'acme',
      bestPriority: 2,
    })
    expect(await create(minted, { priority: 1 })).toEqual({ status: 403, code: 'priority-forbidden' })
  })

  it('refuses a bad tenant or class', () => {
    for (const args of [
      ['--priority', '3'],
      ['--priority', ''],
      ['--tenant', 'a b'],
    ]) {
      const refused = run(args)
      expect(refused.status, args.join(' ')).toBe(2)
      expect(refused.stdout).toBe('')
    }
  })
})
