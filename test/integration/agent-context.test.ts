// What the model is given, against the real server and the fake model server: a long session gets
// summaries the agent writes through its model, a huge message is cut rather than evicting the
// history, and each prompt is built from the document as it is when the request is made.

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
import { SUMMARY_INSTRUCTION } from '../../client/agent/summarizer.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  type Author,
  appendMessage,
  type MessageView,
  readMessages,
  readSummaries,
} from '../../shared/conversation/index.js'
import { type FakeModelServer, type FakeRequest, startFakeModelServer } from '../helpers/fake-model-server.js'
import { until } from '../helpers/wait.js'

let dataDir: string
let server: SyncServer
let fake: FakeModelServer
const clients: SyncClient[] = []
const agents: Agent[] = []
let summariesWritten = 0

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-agent-context-'))
  server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' } })
  fake = await startFakeModelServer()
  summariesWritten = 0
  fake.respond((request) => {
    const last = lastContent(request)
    if (last === SUMMARY_INSTRUCTION) return { kind: 'reply', tokens: [`SUMMARY-${++summariesWritten}`] }
    return { kind: 'reply', tokens: ['answer ', 'to ', last.slice(0, 40)], delayMs: 20 }
  })
})

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.leave()
  for (const client of clients.splice(0)) await client.destroy()
  await fake.close()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const alice: Author = { id: 'device:alice', kind: 'device', name: 'Alice' }
const earlier: Author = { id: 'agent:earlier', kind: 'agent', name: 'earlier' }

function lastContent(request: FakeRequest): string {
  return request.body.messages[request.body.messages.length - 1]?.content ?? ''
}

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
    name: 'reader',
    model: createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' }),
    coalesceMs: 0,
    claimSettleMs: 10,
    ...options,
  })
  agents.push(agent)
  return agent
}

/** A question and its answer (with replyTo), as an earlier agent would have left them. */
function exchange(client: SyncClient, question: string, answer: string): [MessageView, MessageView] {
  const q = appendMessage(client.doc, { role: 'user', author: alice, content: question })
  const a = appendMessage(client.doc, {
    role: 'assistant',
    author: earlier,
    content: answer,
    metadata: { replyTo: q.id },
  })
  return [q, a]
}

const replyTo = (client: SyncClient, promptId: string): MessageView | undefined =>
  readMessages(client.doc).find((m) => m.metadata.replyTo === promptId)

const requestFor = (content: string): FakeRequest | undefined =>
  fake.requests.find((r) => lastContent(r) === content)

describe('the context an agent gives its model', () => {
  it('regression: in a 500-message session the request carries summaries the agent wrote, with no gap before the window', async () => {
    const phone = await device('long')
    for (let i = 0; i < 250; i++) {
      exchange(
        phone,
        `question ${i}: what about item ${i} of the inventory list?`,
        `item ${i} is on shelf ${i % 17}.`,
      )
    }
    await phone.whenFlushed()
    const agent = await agentIn('long', { maxContextTokens: 2_000 })
    const prompt = appendMessage(phone.doc, { role: 'user', author: alice, content: 'and the last one?' })
    await until(() => replyTo(phone, prompt.id)?.status === 'complete', 20_000, 'answered')

    const summaries = readSummaries(agent.doc)
    expect(summaries.length).toBeGreaterThan(0)
    expect(summaries.every((s) => s.author.id === agent.id && /^SUMMARY-\d+$/.test(s.text))).toBe(true)
    const request = requestFor('and the last one?')!
    const latest = summaries[summaries.length - 1]!
    expect(request.body.messages[0]).toEqual({
      role: 'system',
      content: `Summary of the earlier conversation: ${latest.text}`,
    })
    // No gap: the window starts at or before the first message the summary leaves out, and runs
    // contiguously to the question (the summary may overlap the window, never leave a hole).
    const all = readMessages(agent.doc)
    const covered = all.findIndex((m) => m.id === latest.coversThroughId)
    const first = all.findIndex((m) => m.content === request.body.messages[1]?.content)
    expect(covered).toBeGreaterThan(0)
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThanOrEqual(covered + 1)
    const question = all.findIndex((m) => m.id === prompt.id)
    expect(request.body.messages.slice(1).map((m) => m.content)).toEqual(
      all.slice(first, question + 1).map((m) => m.content),
    )
    // Each summarisation request folded the previous summary in.
    const summaryRequests = fake.requests.filter((r) => lastContent(r) === SUMMARY_INSTRUCTION)
    expect(summaryRequests).toHaveLength(summaries.length)
    expect(summaryRequests[1]?.body.messages[0]?.content).toBe(
      'Summary of the earlier conversation: SUMMARY-1',
    )
  })

  it('regression: a 200 KB reply is cut in the window instead of pushing every earlier message out', async () => {
    const phone = await device('huge')
    exchange(phone, 'first question', 'first answer')
    exchange(phone, 'dump the log', `START ${'x'.repeat(200_000)} END`)
    await phone.whenFlushed()
    await agentIn('huge')
    const prompt = appendMessage(phone.doc, {
      role: 'user',
      author: alice,
      content: 'what did we say first?',
    })
    await until(() => replyTo(phone, prompt.id)?.status === 'complete', 10_000, 'answered')
    const sent = requestFor('what did we say first?')!.body.messages
    expect(sent.map((m) => m.content.slice(0, 14))).toEqual([
      'first question',
      'first answer',
      'dump the log',
      `START ${'x'.repeat(8)}`,
      'what did we sa',
    ])
    const cut = sent[3]!.content
    expect(cut.length).toBeLessThan(10_000)
    expect(cut).toMatch(/characters cut from this message/)
    expect(cut.endsWith(' END')).toBe(true)
  })

  it("regression: after a burst, the third prompt carries the agent's own answers to the first two, in thread order", async () => {
    const phone = await device('burst')
    await agentIn('burst')
    const questions = ['one?', 'two?', 'three?'].map((content) =>
      appendMessage(phone.doc, { role: 'user', author: alice, content }),
    )
    await until(
      () => questions.every((q) => replyTo(phone, q.id)?.status === 'complete'),
      10_000,
      'all answered',
    )
    expect(requestFor('three?')!.body.messages).toEqual([
      { role: 'user', content: 'one?' },
      { role: 'assistant', content: 'answer to one?' },
      { role: 'user', content: 'two?' },
      { role: 'assistant', content: 'answer to two?' },
      { role: 'user', content: 'three?' },
    ])
  })
})
