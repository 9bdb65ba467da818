// Several agents, crashes and restarts against the real server and the fake model server: one
// answer per message whatever the number of agents, a dead writer's reply marked interrupted by
// whichever agent is left, and no question skipped across a restart.

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Agent,
  createOpenAiModel,
  INTERRUPTED_REASON,
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
} from '../../shared/conversation/index.js'
import { type FakeModelServer, startFakeModelServer } from '../helpers/fake-model-server.js'
import { nodeScript } from '../helpers/node-script.js'
import { until, withTimeout } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer
let fake: FakeModelServer
const clients: SyncClient[] = []
const agents: Agent[] = []
const children: ChildProcess[] = []

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-agent-fleet-'))
  server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' } })
  fake = await startFakeModelServer()
  // A question containing "story" streams forever; anything else gets a short answer.
  fake.respond((request) => {
    const last = request.body.messages[request.body.messages.length - 1]?.content ?? ''
    return last.includes('story')
      ? { kind: 'endless', intervalMs: 10, token: 'once ' }
      : { kind: 'reply', tokens: ['answer ', 'to ', last], delayMs: 5 }
  })
})

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  for (const agent of agents.splice(0)) await agent.leave()
  for (const client of clients.splice(0)) await client.destroy()
  await fake.close()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const alice: Author = { id: 'device:alice', kind: 'device', name: 'Alice' }
const url = (): string => `ws://127.0.0.1:${server.port}`
const liveness = { leaseMs: 600, writerGraceMs: 300, claimSettleMs: 50 } as const

async function device(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: url(), sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

async function agentIn(
  sessionId: string,
  name: string,
  options: Partial<JoinSessionOptions> = {},
): Promise<Agent> {
  const agent = await joinSession({
    url: url(),
    sessionId,
    name,
    model: createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' }),
    coalesceMs: 0,
    ...liveness,
    ...options,
  })
  agents.push(agent)
  return agent
}

function childAgent(sessionId: string, name: string) {
  const child = spawn(process.execPath, nodeScript('test/helpers/agent-process.ts'), {
    env: {
      ...process.env,
      URL: url(),
      SESSION: sessionId,
      AGENT_NAME: name,
      MODEL_URL: fake.baseUrl,
      LEASE_MS: String(liveness.leaseMs),
      GRACE_MS: String(liveness.writerGraceMs),
      SETTLE_MS: String(liveness.claimSettleMs),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(child)
  const lines: string[] = []
  child.stdout?.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, lines, exited }
}

const ask = (client: SyncClient, content: string): MessageView =>
  appendMessage(client.doc, { role: 'user', author: alice, content })

const repliesTo = (client: SyncClient, promptId: string): MessageView[] =>
  readMessages(client.doc).filter((m) => m.metadata.replyTo === promptId)

const isSettled = (client: SyncClient, promptId: string): boolean =>
  repliesTo(client, promptId).some((m) => m.status !== 'streaming')

describe('agents of one session', () => {
  it('regression: two agents answer each message once, questions in a burst or one by one', async () => {
    const phone = await device('pair')
    await agentIn('pair', 'left')
    await agentIn('pair', 'right')
    const burst = [ask(phone, 'one'), ask(phone, 'two'), ask(phone, 'three')]
    await until(() => burst.every((p) => isSettled(phone, p.id)), 15_000, 'burst answered')
    const single = ask(phone, 'four')
    await until(() => isSettled(phone, single.id), 15_000, 'fourth answered')
    for (const prompt of [...burst, single]) {
      expect(repliesTo(phone, prompt.id).map((m) => m.status)).toEqual(['complete'])
    }
    // Nothing more arrives: each message cost one model request.
    for (const agent of agents) await agent.client.whenFlushed()
    expect(fake.requests).toHaveLength(4)
    expect(readMessages(phone.doc).filter((m) => m.role === 'assistant')).toHaveLength(4)
  })

  it("regression: a second process with the same name leaves the first one's live reply alone", async () => {
    const phone = await device('twins')
    const first = await agentIn('twins', 'same')
    fake.respond(() => ({
      kind: 'reply',
      tokens: Array.from({ length: 60 }, (_, i) => `w${i} `),
      delayMs: 15,
    }))
    const prompt = ask(phone, 'a slow answer')
    await until(() => first.state === 'streaming', 10_000, 'first streaming')
    await agentIn('twins', 'same')
    await until(() => isSettled(phone, prompt.id), 15_000, 'reply settled')
    const [reply] = repliesTo(phone, prompt.id)
    expect(reply?.status).toBe('complete')
    expect(reply?.content.split(' ').filter(Boolean)).toHaveLength(60)
    expect(repliesTo(phone, prompt.id)).toHaveLength(1)
  })

  it('regression: a reply whose agent was killed is marked interrupted by another agent of the session', async () => {
    const phone = await device('widow')
    const doomed = childAgent('widow', 'doomed')
    await until(() => doomed.lines.some((l) => l.includes('"joined"')), 20_000, 'child joined')
    const prompt = ask(phone, 'a long story')
    await until(() => (repliesTo(phone, prompt.id)[0]?.content.length ?? 0) > 10, 10_000, 'streaming')
    doomed.child.kill('SIGKILL')
    await withTimeout(doomed.exited, 5_000, 'child died')
    await agentIn('widow', 'survivor')
    await until(() => isSettled(phone, prompt.id), 10_000, 'interrupted reply marked')
    const [reply] = repliesTo(phone, prompt.id)
    expect(reply).toMatchObject({ status: 'error', error: INTERRUPTED_REASON })
    expect(reply?.author.id).toBe('agent:doomed')
    expect(repliesTo(phone, prompt.id)).toHaveLength(1)
  })

  it('regression: killed and restarted, the agent answers every question sent meanwhile and marks its cut reply', async () => {
    const phone = await device('restart')
    const before = childAgent('restart', 'phoenix')
    await until(() => before.lines.some((l) => l.includes('"joined"')), 20_000, 'child joined')
    const story = ask(phone, 'a long story')
    await until(() => (repliesTo(phone, story.id)[0]?.content.length ?? 0) > 10, 10_000, 'streaming')
    before.child.kill('SIGKILL')
    await withTimeout(before.exited, 5_000, 'child died')
    const meanwhile = [ask(phone, 'first while you were away'), ask(phone, 'second while you were away')]
    const after = childAgent('restart', 'phoenix')
    await until(() => [story, ...meanwhile].every((p) => isSettled(phone, p.id)), 20_000, 'all settled')
    expect(repliesTo(phone, story.id)).toMatchObject([{ status: 'error', error: INTERRUPTED_REASON }])
    for (const prompt of meanwhile) {
      expect(repliesTo(phone, prompt.id)).toMatchObject([
        { status: 'complete', content: `answer to ${prompt.content}` },
      ])
    }
    after.child.kill('SIGTERM')
    await withTimeout(after.exited, 10_000, 'child left')
  })

  it('regression: an old message whose reply has no replyTo is not answered again; an older unanswered one is', async () => {
    const phone = await device('legacy')
    const waiting = ask(phone, 'a question nobody answered')
    const old = ask(phone, 'an old question')
    appendMessage(phone.doc, {
      role: 'assistant',
      author: { id: 'agent:old', kind: 'agent', name: 'old' },
      content: 'an old answer written before replyTo existed',
    })
    await phone.whenFlushed()
    await agentIn('legacy', 'newcomer')
    await until(() => isSettled(phone, waiting.id), 10_000, 'waiting question answered')
    for (const agent of agents) await agent.whenIdle()
    await agents[0]!.client.whenFlushed()
    expect(repliesTo(phone, waiting.id)).toMatchObject([{ status: 'complete' }])
    expect(repliesTo(phone, old.id)).toEqual([])
    expect(fake.requests).toHaveLength(1)
  })
})
