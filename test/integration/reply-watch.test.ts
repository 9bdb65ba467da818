// The server's part of reply liveness (server/session/reply-watch.ts): with no agent left in a
// session, a reply whose agent died is marked interrupted by the server, so devices never show
// `streaming` forever (issue #19, problem 5); a reply whose writer is present is left alone.

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  type Author,
  appendMessage,
  INTERRUPTED_REASON,
  type MessageView,
  readMessages,
} from '../../shared/conversation/index.js'
import { type FakeModelServer, startFakeModelServer } from '../helpers/fake-model-server.js'
import { nodeScript } from '../helpers/node-script.js'
import { until, withTimeout } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer
let fake: FakeModelServer
const clients: SyncClient[] = []
const children: ChildProcess[] = []
const GRACE_MS = 300

const start = (overrides: Partial<ServerConfig> = {}): Promise<SyncServer> =>
  startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', replyGraceMs: GRACE_MS, ...overrides },
  })

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-reply-watch-'))
  server = await start()
  fake = await startFakeModelServer()
  fake.respond(() => ({ kind: 'endless', intervalMs: 10, token: 'more ' }))
})

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  for (const client of clients.splice(0)) await client.destroy()
  await fake.close()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const alice: Author = { id: 'device:alice', kind: 'device', name: 'Alice' }
const ghost: Author = { id: 'agent:ghost', kind: 'agent', name: 'ghost' }

async function device(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: `ws://127.0.0.1:${server.port}`, sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

const reply = (client: SyncClient, id: string): MessageView | undefined =>
  readMessages(client.doc).find((m) => m.id === id)

function streamingReply(client: SyncClient, id: string, instanceId: string): void {
  appendMessage(client.doc, {
    id,
    role: 'assistant',
    author: ghost,
    status: 'streaming',
    content: 'half an ans',
    metadata: { instanceId },
  })
}

describe('reply liveness on the server', () => {
  it('regression: with no agent left, a killed agent’s streaming reply is marked interrupted by the server', async () => {
    const phone = await device('alone')
    const child = spawn(process.execPath, nodeScript('test/helpers/agent-process.ts'), {
      env: {
        ...process.env,
        URL: `ws://127.0.0.1:${server.port}`,
        SESSION: 'alone',
        AGENT_NAME: 'doomed',
        MODEL_URL: fake.baseUrl,
        LEASE_MS: '600',
        GRACE_MS: String(GRACE_MS),
        SETTLE_MS: '50',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    children.push(child)
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    await until(() => output.includes('"joined"'), 20_000, 'agent joined')
    const prompt = appendMessage(phone.doc, { role: 'user', author: alice, content: 'a long story' })
    const replyOf = (): MessageView | undefined =>
      readMessages(phone.doc).find((m) => m.metadata.replyTo === prompt.id)
    await until(() => (replyOf()?.content.length ?? 0) > 10, 10_000, 'reply streaming')
    child.kill('SIGKILL')
    await withTimeout(exited, 5_000, 'agent died')
    // No agent is left to sweep: only the server can end the reply.
    await until(() => replyOf()?.status !== 'streaming', 10_000, 'reply marked by the server')
    expect(replyOf()).toMatchObject({
      status: 'error',
      error: INTERRUPTED_REASON,
      author: { id: 'agent:doomed' },
    })
    // The mark is the server's own update: stored, so a device joining later reads it too.
    const later = await device('alone')
    await until(() => reply(later, replyOf()!.id)?.status === 'error', 5_000, 'mark stored and served')
  })

  it('marks a reply left streaming before a restart once the session loads again, and leaves a present writer’s reply alone', async () => {
    const writer = await device('restarted')
    streamingReply(writer, 'dead', 'run-gone')
    streamingReply(writer, 'alive', 'run-here')
    await writer.whenFlushed()
    await writer.destroy()
    clients.splice(0)
    await server.close()
    server = await start()
    // The live writer comes back first and announces its run in presence.
    const present = await device('restarted')
    present.awareness.setLocalState({ user: ghost, instanceId: 'run-here' })
    const phone = await device('restarted')
    await until(() => reply(phone, 'dead')?.status === 'error', 10_000, 'dead reply marked')
    expect(reply(phone, 'dead')?.error).toBe(INTERRUPTED_REASON)
    // Judged in the same look as the dead one, after the same grace period: still streaming.
    expect(reply(phone, 'alive')?.status).toBe('streaming')
    // Once its writer leaves presence it goes the same way.
    present.awareness.setLocalState(null)
    await until(() => reply(phone, 'alive')?.status === 'error', 10_000, 'reply marked after its writer left')
  })
})
