// The agent SDK end to end against the real server: two devices and an agent in one session.

import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Agent, createDemoModel, INTERRUPTED_REASON, joinSession } from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  type Author,
  appendMessage,
  type MessageView,
  readMessages,
  requestCancel,
} from '../../shared/conversation/index.js'
import { nodeScript } from '../helpers/node-script.js'
import { until, withTimeout } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer
const clients: SyncClient[] = []
const agents: Agent[] = []

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-agent-'))
  server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' } })
})

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.leave()
  for (const client of clients.splice(0)) await client.destroy()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const url = (): string => `ws://127.0.0.1:${server.port}`

function device(sessionId: string): SyncClient {
  const client = createNodeSyncClient({ url: url(), sessionId })
  clients.push(client)
  return client
}

const alice: Author = { id: 'device:alice', kind: 'device', name: 'Alice' }
const bob: Author = { id: 'device:bob', kind: 'device', name: 'Bob' }

function replyTo(client: SyncClient, promptId: string): MessageView | undefined {
  return readMessages(client.doc).find((m) => m.metadata.replyTo === promptId)
}

describe('agent SDK', () => {
  it('streams 2,000 tokens to two devices in order, and both end identical', async () => {
    const laptop = device('talk')
    const phone = device('talk')
    await Promise.all([laptop.whenSynced(), phone.whenSynced()])
    const agent = await joinSession({
      url: url(),
      sessionId: 'talk',
      name: 'demo',
      model: createDemoModel({ tokens: 2_000, delayMs: 0, token: (i) => `t${i} ` }),
    })
    agents.push(agent)
    const prompt = appendMessage(laptop.doc, { role: 'user', author: alice, content: 'count to 2000' })
    const expected = Array.from({ length: 2_000 }, (_, i) => `t${i} `).join('')
    for (const client of [laptop, phone]) {
      await until(() => replyTo(client, prompt.id)?.status === 'complete', 30_000, 'reply complete')
    }
    const onLaptop = replyTo(laptop, prompt.id)!
    expect(onLaptop.content).toBe(expected)
    expect(onLaptop.author).toEqual({ id: 'agent:demo', kind: 'agent', name: 'demo' })
    expect(readMessages(phone.doc)).toEqual(readMessages(laptop.doc))
    // The agent's presence went back to idle and is visible to the devices.
    await until(
      () =>
        [...laptop.awareness.getStates().values()].some(
          (s) => s.user?.id === 'agent:demo' && s.state === 'idle',
        ),
      5_000,
      'agent idle in presence',
    )
  })

  it('stops when another device cancels: the reply ends cancelled and nothing is written after', async () => {
    const laptop = device('cancel')
    const phone = device('cancel')
    await Promise.all([laptop.whenSynced(), phone.whenSynced()])
    const agent = await joinSession({
      url: url(),
      sessionId: 'cancel',
      name: 'slow',
      model: createDemoModel({ tokens: 100_000, delayMs: 2 }),
      coalesceMs: 0,
    })
    agents.push(agent)
    const prompt = appendMessage(laptop.doc, { role: 'user', author: alice, content: 'talk forever' })
    await until(() => (replyTo(phone, prompt.id)?.content.length ?? 0) > 50, 10_000, 'phone sees tokens')
    const reply = replyTo(phone, prompt.id)!
    expect(requestCancel(phone.doc, reply.id, bob)).toBe(true)
    await until(() => replyTo(laptop, prompt.id)?.status === 'cancelled', 5_000, 'laptop sees cancelled')
    await until(() => agent.state === 'idle', 5_000, 'agent stopped')
    await agent.client.whenFlushed()
    const final = readMessages(agent.doc).find((m) => m.id === reply.id)!
    await until(
      () => replyTo(laptop, prompt.id)?.content === final.content,
      5_000,
      'laptop has the final text',
    )
    expect(final.status).toBe('cancelled')
    expect(final.cancelRequest?.by).toEqual(bob)
    // Far fewer than the 100,000 tokens the model would have produced: it stopped promptly.
    expect(final.content.split(' ').length).toBeLessThan(5_000)
    // A later round trip brings nothing new.
    await phone.whenFlushed()
    expect(replyTo(laptop, prompt.id)?.content).toBe(final.content)
  })

  it('after a kill -9 mid-stream, a restarted agent marks its reply interrupted and answers again', async () => {
    const laptop = device('crash')
    await laptop.whenSynced()
    const startAgent = (tokens: number) => {
      const child = spawn(process.execPath, nodeScript('test/helpers/agent-process.ts'), {
        env: {
          ...process.env,
          URL: url(),
          SESSION: 'crash',
          TOKENS: String(tokens),
          DELAY_MS: '5',
          LEASE_MS: '600',
          GRACE_MS: '300',
          SETTLE_MS: '20',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const lines: string[] = []
      child.stdout.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)))
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      return { child, lines, exited }
    }
    const first = startAgent(100_000)
    await until(() => first.lines.some((l) => l.includes('"joined"')), 20_000, 'agent joined')
    const prompt = appendMessage(laptop.doc, { role: 'user', author: alice, content: 'a long story' })
    await until(() => (replyTo(laptop, prompt.id)?.content.length ?? 0) > 20, 10_000, 'streaming started')
    first.child.kill('SIGKILL')
    await withTimeout(first.exited, 5_000, 'agent died')
    expect(replyTo(laptop, prompt.id)?.status).toBe('streaming')

    const second = startAgent(5)
    await until(() => replyTo(laptop, prompt.id)?.status === 'error', 20_000, 'interrupted reply marked')
    expect(replyTo(laptop, prompt.id)?.error).toBe(INTERRUPTED_REASON)
    const again = appendMessage(laptop.doc, { role: 'user', author: alice, content: 'try again' })
    await until(() => replyTo(laptop, again.id)?.status === 'complete', 10_000, 'a new answer')
    second.child.kill('SIGTERM')
    await withTimeout(second.exited, 10_000, 'agent left')
  })
})
