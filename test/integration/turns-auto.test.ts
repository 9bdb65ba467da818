// The optional rule `--turn-auto pool=prefix`: a user message a device adds to a matching session
// gets a turn without any HTTP call, with the priority and tenant of its metadata, once the message
// is stored; agents' messages and other sessions get none; a full queue shows the refusal in the
// session.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { SyncServer } from '../../server/sync-server.js'
import { appendMessage } from '../../shared/conversation/index.js'
import { readTurnEntry } from '../../shared/turns/document.js'
import { type ControllableStore, createControllableStore } from '../helpers/controllable-store.js'
import { startTestServer } from '../helpers/test-server.js'
import { until } from '../helpers/wait.js'

let server: SyncServer
let storage: ControllableStore
const clients: SyncClient[] = []

beforeAll(async () => {
  storage = createControllableStore(createMemoryStore())
  server = await startTestServer(
    { compaction: false, turnPools: ['gpu:1:3'], turnAuto: ['gpu=chat-'] },
    { store: storage.store },
  )
})

afterAll(async () => {
  for (const client of clients.splice(0)) await client.destroy()
  await server.close()
})

async function open(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: `ws://127.0.0.1:${server.port}`, sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

const phone = { id: 'phone', kind: 'device' as const }
const bot = { id: 'bot', kind: 'agent' as const }

describe('automatic turns', () => {
  it('creates a turn for every user message a device adds to a session of the pool', async () => {
    const client = await open('chat-a')
    appendMessage(client.doc, {
      id: 'q1',
      role: 'user',
      author: phone,
      content: 'hi',
      metadata: { priority: 0, tenant: 'acme' },
    })
    appendMessage(client.doc, { id: 'a1', role: 'assistant', author: bot, content: 'hello' })
    appendMessage(client.doc, { id: 'q2', role: 'user', author: bot, content: 'an agent asking' })
    await until(
      () => readTurnEntry(client.doc, 'q1')?.state === 'queued',
      5_000,
      'the user message gets a turn',
    )
    expect((await server.turns.get('gpu~chat-a~q1')).turn).toMatchObject({ priority: 0, tenant: 'acme' })
    await client.whenSynced()
    await expect(async () => server.turns.get('gpu~chat-a~a1')).rejects.toThrow('no such turn')
    await expect(async () => server.turns.get('gpu~chat-a~q2')).rejects.toThrow('no such turn')
  })

  it('creates the turn only once the message is stored', async () => {
    // Regression (turns-cluster.test flake): the turn was created as the message arrived, before
    // its write committed. In a cluster the scheduling node then found the session not stored,
    // refused to write the turn's entry and dropped it: the devices never saw the turn queued.
    const client = await open('chat-held')
    const release = storage.hold()
    try {
      const calls = storage.appendCalls
      appendMessage(client.doc, { id: 'q1', role: 'user', author: phone, content: 'hi' })
      await storage.whenAppendCalls(calls + 1)
      // Not created while the write waits (created at once before the fix: one event-loop turn).
      await new Promise((resolve) => setTimeout(resolve, 200))
      await expect(async () => server.turns.get('gpu~chat-held~q1')).rejects.toThrow('no such turn')
    } finally {
      release()
    }
    await until(
      () => readTurnEntry(client.doc, 'q1')?.state === 'queued',
      5_000,
      'the stored message gets its turn',
    )
    expect((await server.turns.get('gpu~chat-held~q1')).turn).toMatchObject({ state: 'queued' })
    // Out of the queue, which the refusal test below fills.
    await server.turns.cancel('gpu~chat-held~q1', phone)
  })

  it('leaves sessions outside the rule alone', async () => {
    const client = await open('other-b')
    appendMessage(client.doc, { id: 'q1', role: 'user', author: phone, content: 'hi' })
    await client.whenSynced()
    await expect(async () => server.turns.get('gpu~other-b~q1')).rejects.toThrow('no such turn')
  })

  it('shows a refusal in the session when the queue is full', async () => {
    const client = await open('chat-full')
    for (let i = 0; i < 3; i++)
      appendMessage(client.doc, { id: `m${i}`, role: 'user', author: phone, content: 'q' })
    await until(() => readTurnEntry(client.doc, 'm2') !== undefined, 5_000, 'the last message gets an entry')
    expect(readTurnEntry(client.doc, 'm2')).toMatchObject({ state: 'failed', reason: 'queue-full' })
  })
})
