// An agent against the real server and a misbehaving model (the fake model server): every failure
// ends the reply with a status that is true and a reason a person understands, the model request
// is closed, and the next message is served.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Agent,
  createOpenAiModel,
  type JoinSessionOptions,
  joinSession,
} from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  type Author,
  appendMessage,
  type MessageView,
  readMessages,
  requestCancel,
  setMessageStatus,
} from '../../shared/conversation/index.js'
import { type FakeModelServer, startFakeModelServer } from '../helpers/fake-model-server.js'
import { until, withTimeout } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer
let fake: FakeModelServer
const clients: SyncClient[] = []
const agents: Agent[] = []

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-agent-failures-'))
  server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' } })
  fake = await startFakeModelServer()
})

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.leave()
  for (const client of clients.splice(0)) await client.destroy()
  await fake.close()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const alice: Author = { id: 'device:alice', kind: 'device', name: 'Alice' }

async function device(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: `ws://127.0.0.1:${server.port}`, sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

async function agentIn(sessionId: string, options: Partial<JoinSessionOptions> = {}): Promise<Agent> {
  const agent = await joinSession({
    url: `ws://127.0.0.1:${server.port}`,
    sessionId,
    name: 'honest',
    model: createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' }),
    coalesceMs: 0,
    claimSettleMs: 10,
    // Generous by default: a loaded CI machine can take longer than 300 ms to pass a first token;
    // the tests of a timeout set the one they test.
    timeouts: { firstTokenMs: 5_000, betweenTokensMs: 5_000, replyMs: 20_000 },
    retry: { baseDelayMs: 10, maxDelayMs: 50 },
    ...options,
  })
  agents.push(agent)
  return agent
}

function replyTo(client: SyncClient, promptId: string): MessageView | undefined {
  return readMessages(client.doc).find((m) => m.metadata.replyTo === promptId)
}

const ask = (client: SyncClient, content: string): MessageView =>
  appendMessage(client.doc, { role: 'user', author: alice, content })

async function settled(client: SyncClient, promptId: string): Promise<MessageView> {
  await until(
    () => {
      const reply = replyTo(client, promptId)
      return reply !== undefined && reply.status !== 'streaming'
    },
    10_000,
    `reply to ${promptId} settled`,
  )
  return replyTo(client, promptId)!
}

describe('an agent whose model misbehaves', () => {
  it('regression: a stalled model ends the reply error "the model sent nothing for …", aborts the request and serves the next message', async () => {
    const phone = await device('stall')
    const agent = await agentIn('stall', {
      timeouts: { firstTokenMs: 5_000, betweenTokensMs: 300, replyMs: 20_000 },
    })
    fake.enqueue({ kind: 'stall', tokens: ['Let me think '] })
    const first = ask(phone, 'a hard question')
    await fake.whenRequests(1)
    const second = ask(phone, 'an easy one')
    fake.enqueue({ kind: 'reply', tokens: ['easy'] })
    const stalled = await settled(phone, first.id)
    expect(stalled).toMatchObject({
      status: 'error',
      error: 'the model sent nothing for 0.3 s',
      content: 'Let me think ',
    })
    await withTimeout(fake.requests[0]!.closed, 5_000, 'stalled request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
    expect(await settled(phone, second.id)).toMatchObject({ status: 'complete', content: 'easy' })
    await until(() => agent.state === 'idle', 5_000, 'agent idle')
  })

  it('regression: a stream cut off without its end marker is error "the model\'s stream ended early", with its text kept', async () => {
    const phone = await device('early')
    await agentIn('early')
    fake.enqueue({ kind: 'early-end', tokens: ['Half ', 'an ', 'answer'] })
    const prompt = ask(phone, 'tell me everything')
    expect(await settled(phone, prompt.id)).toMatchObject({
      status: 'error',
      error: "the model's stream ended early",
      content: 'Half an answer',
    })
  })

  it('regression: a reset connection is error "connection reset by the model server", with its text kept', async () => {
    const phone = await device('reset')
    await agentIn('reset')
    fake.enqueue({ kind: 'reset', tokens: ['Some ', 'words'] })
    const prompt = ask(phone, 'go on')
    expect(await settled(phone, prompt.id)).toMatchObject({
      status: 'error',
      error: 'connection reset by the model server',
      content: 'Some words',
    })
  })

  it('regression: 429 with Retry-After is retried after the wait, and presence shows the retry', async () => {
    const phone = await device('busy')
    const agent = await agentIn('busy')
    const seen: string[] = []
    agent.onState((_state, _id, detail) => {
      if (detail !== undefined) seen.push(detail)
    })
    const presence: unknown[] = []
    phone.awareness.on('change', () => {
      for (const state of phone.awareness.getStates().values()) {
        if (state.state === 'waiting') presence.push(state)
      }
    })
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 503 })
    fake.enqueue({ kind: 'reply', tokens: ['at ', 'last'] })
    const prompt = ask(phone, 'are you there?')
    expect(await settled(phone, prompt.id)).toMatchObject({ status: 'complete', content: 'at last' })
    expect(fake.requests).toHaveLength(3)
    expect(fake.requests[1]!.receivedAt - fake.requests[0]!.receivedAt).toBeGreaterThanOrEqual(950)
    expect(seen).toEqual(['waiting for the model, retry 1 of 3', 'waiting for the model, retry 2 of 3'])
    expect(presence).toContainEqual(
      expect.objectContaining({
        detail: 'waiting for the model, retry 1 of 3',
        retry: { attempt: 1, of: 3 },
      }),
    )
  })

  it('regression: a reply another peer closes aborts the endless model request', async () => {
    const phone = await device('closed')
    const agent = await agentIn('closed')
    fake.enqueue({ kind: 'endless', intervalMs: 5 })
    const prompt = ask(phone, 'never stop')
    await until(() => (replyTo(phone, prompt.id)?.content.length ?? 0) > 20, 10_000, 'tokens flowing')
    // Not a cancel: another peer moves the reply off streaming (as a recovery or a moderator might).
    setMessageStatus(phone.doc, replyTo(phone, prompt.id)!.id, 'error', { error: 'closed by a moderator' })
    await withTimeout(fake.requests[0]!.closed, 5_000, 'model request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
    await until(() => agent.state === 'idle', 5_000, 'agent idle')
    const sent = fake.requests[0]!.tokensSent
    await agent.client.whenFlushed()
    expect(replyTo(phone, prompt.id)?.status).toBe('error')
    expect(fake.requests[0]!.tokensSent).toBe(sent)
  })

  it('a cancel from a device aborts the endless model request', async () => {
    const phone = await device('cancel')
    await agentIn('cancel')
    fake.enqueue({ kind: 'endless', intervalMs: 5 })
    const prompt = ask(phone, 'never stop')
    await until(() => (replyTo(phone, prompt.id)?.content.length ?? 0) > 20, 10_000, 'tokens flowing')
    requestCancel(phone.doc, replyTo(phone, prompt.id)!.id, alice)
    await withTimeout(fake.requests[0]!.closed, 5_000, 'model request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
    expect((await settled(phone, prompt.id)).status).toBe('cancelled')
  })

  it('leave() aborts the endless model request and ends the reply cancelled', async () => {
    const phone = await device('leave')
    const agent = await agentIn('leave')
    fake.enqueue({ kind: 'endless', intervalMs: 5 })
    const prompt = ask(phone, 'never stop')
    await until(() => (replyTo(phone, prompt.id)?.content.length ?? 0) > 20, 10_000, 'tokens flowing')
    agents.splice(agents.indexOf(agent), 1)
    await withTimeout(agent.leave(), 10_000, 'agent left')
    await withTimeout(fake.requests[0]!.closed, 5_000, 'model request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
    expect((await settled(phone, prompt.id)).status).toBe('cancelled')
  })

  it('an endless stream ends at the reply timeout', async () => {
    const phone = await device('endless')
    await agentIn('endless', { timeouts: { firstTokenMs: 5_000, betweenTokensMs: 5_000, replyMs: 400 } })
    fake.enqueue({ kind: 'endless', intervalMs: 5 })
    const prompt = ask(phone, 'never stop')
    const reply = await settled(phone, prompt.id)
    expect(reply).toMatchObject({ status: 'error', error: 'the reply took longer than 0.4 s' })
    expect(reply.content.length).toBeGreaterThan(0)
    await withTimeout(fake.requests[0]!.closed, 5_000, 'model request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
  })
})
