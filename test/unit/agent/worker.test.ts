// The pool worker against a real sync server and an in-memory turns API (the server's turn service
// is tested on its own): one derived answer per turn, completed only once durable, the concurrency
// bound, a cancel or a lost lease stops the model at once, a half-written answer is continued, and
// stop() gives the turns back with their text durable.

import { getEventListeners } from 'node:events'
import type { LanguageModelV3StreamPart } from '@ai-sdk/provider'
import { tool } from 'ai'
import { MockLanguageModelV3, simulateReadableStream } from 'ai/test'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { z } from 'zod'
import { createSharedSessions } from '../../../client/agent/fleet/sessions.js'
import { TurnsApiError, type TurnsClient } from '../../../client/agent/fleet/turns-client.js'
import { answerIdOf, type Worker, type WorkerEvent } from '../../../client/agent/fleet/worker.js'
import type { Model } from '../../../client/agent/model.js'
import { createAiSdkModel } from '../../../client/agent/models/ai-sdk.js'
import { createDemoModel } from '../../../client/agent/models/demo-model.js'
import { createWorker } from '../../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../../client/node.js'
import type { WebSocketLikeConstructor } from '../../../client/websocket.js'
import { DEFAULT_CONFIG } from '../../../server/config.js'
import { type SyncServer, startSyncServer } from '../../../server/sync-server.js'
import {
  type Author,
  appendMessage,
  type MessageView,
  openStreamingWriter,
  readMessage,
  readMessages,
} from '../../../shared/conversation/index.js'
import type { ClaimedTurn, RenewResponse, Turn } from '../../../shared/turns/index.js'
import { turnIdOf } from '../../../shared/turns/index.js'
import { until, withTimeout } from '../../helpers/wait.js'

let server: SyncServer
const clients: SyncClient[] = []
const workers: Worker[] = []

beforeEach(async () => {
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent' },
  })
})

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.stop()
  for (const client of clients.splice(0)) await client.destroy()
  await server.close()
})

const url = (): string => `ws://127.0.0.1:${server.port}`
const alice: Author = { id: 'device:alice', kind: 'device' }

async function device(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: url(), sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

/** A device asks a question; returns the turn the pool gets for it. */
async function ask(sessionId: string, text: string): Promise<{ client: SyncClient; turn: Turn }> {
  const client = await device(sessionId)
  const message = appendMessage(client.doc, { role: 'user', author: alice, content: text })
  await client.whenFlushed()
  const turn: Turn = {
    id: turnIdOf(sessionId, message.id, 'main'),
    sessionId,
    messageId: message.id,
    pool: 'main',
    priority: 1,
    tenant: 't',
    state: 'queued',
    attempts: 0,
    createdAt: Date.now(),
    updatedAt: Date.now(),
  }
  return { client, turn }
}

/**
 * The turns API in memory: a queue, leases of `ttlMs` renewed every `renewMs`, and a hook deciding
 * each renew's answer. `complete` reads the session through a fresh client, recording what the
 * server held at that moment.
 */
function fakeTurns(options: { ttlMs?: number; renewMs?: number } = {}) {
  const queue: Turn[] = []
  const running = new Map<string, { leaseId: string }>()
  const completed: { turnId: string; replyId?: string; answer?: MessageView }[] = []
  const failed: { turnId: string; reason: string; retry?: boolean }[] = []
  const renews: { turnId: string; state?: string; replyId?: string }[] = []
  let maxRunning = 0
  let renewAnswer: (turnId: string) => RenewResponse['status'] | 'hang' = () => 'ok'
  let leaseCounter = 0
  /** The signal the worker passed to its last claim (its stop signal). */
  let claimSignal: AbortSignal | undefined
  /** When the last lease this fake granted runs out (ms, this process's clock). */
  let lastExpiry = 0
  const lease = () => {
    lastExpiry = Date.now() + (options.ttlMs ?? 5_000)
    return {
      id: `lease-${++leaseCounter}`,
      expiresAt: lastExpiry,
      renewIntervalMs: options.renewMs ?? 30,
      ttlMs: options.ttlMs ?? 5_000,
    }
  }
  const client: TurnsClient = {
    async claim(_pool, request, signal) {
      claimSignal = signal
      const deadline = Date.now() + request.waitMs
      while (queue.length === 0 && Date.now() < deadline && signal?.aborted !== true) {
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      const out: ClaimedTurn[] = []
      while (out.length < request.max && queue.length > 0) {
        const turn = queue.shift() as Turn
        const given = lease()
        running.set(turn.id, { leaseId: given.id })
        maxRunning = Math.max(maxRunning, running.size)
        out.push({ turn: { ...turn, state: 'claimed', attempts: turn.attempts + 1 }, lease: given })
      }
      return out
    },
    async renew(turnId, request) {
      renews.push({
        turnId,
        ...(request.state === undefined ? {} : { state: request.state }),
        ...(request.replyId === undefined ? {} : { replyId: request.replyId }),
      })
      const status = renewAnswer(turnId)
      if (status === 'hang') return new Promise<never>(() => {})
      if (status === 'ok') return { status, lease: { ...lease(), id: request.leaseId } }
      running.delete(turnId)
      return { status }
    },
    async complete(turnId, request) {
      running.delete(turnId)
      const parsed = turnId.split('~')
      const reader = createNodeSyncClient({ url: url(), sessionId: parsed[1] as string })
      await reader.whenSynced()
      const answer = request.replyId === undefined ? undefined : readMessage(reader.doc, request.replyId)
      await reader.destroy()
      completed.push({
        turnId,
        ...(request.replyId === undefined ? {} : { replyId: request.replyId }),
        ...(answer === undefined ? {} : { answer }),
      })
      return { turn: {} as Turn }
    },
    async fail(turnId, request) {
      running.delete(turnId)
      failed.push({
        turnId,
        reason: request.reason,
        ...(request.retry === undefined ? {} : { retry: request.retry }),
      })
      return { turn: {} as Turn }
    },
    create: async () => {
      throw new Error('not used')
    },
    cancel: async () => {
      throw new Error('not used')
    },
    get: async () => {
      throw new Error('not used')
    },
    pool: async () => {
      throw new Error('not used')
    },
  }
  return {
    client,
    queue,
    completed,
    failed,
    renews,
    get maxRunning() {
      return maxRunning
    },
    get lastExpiry() {
      return lastExpiry
    },
    get claimSignal() {
      return claimSignal
    },
    onRenew(answer: (turnId: string) => RenewResponse['status'] | 'hang') {
      renewAnswer = answer
    },
  }
}

function start(
  turns: ReturnType<typeof fakeTurns>,
  model: Model,
  concurrency = 1,
): {
  worker: Worker
  events: WorkerEvent[]
} {
  const worker = createWorker({
    url: url(),
    pool: 'main',
    concurrency,
    model,
    name: 'w',
    turns: turns.client,
    claimWaitMs: 50,
    coalesceMs: 0,
  })
  workers.push(worker)
  const events: WorkerEvent[] = []
  worker.on((event) => events.push(event))
  return { worker, events }
}

const whole = async (text: string, tokens: number): Promise<string> => {
  let out = ''
  const model = createDemoModel({ tokens, delayMs: 0 })
  const prompt = { content: text } as MessageView
  for await (const t of model.generate(
    { sessionId: 's', prompt, messages: [prompt] },
    new AbortController().signal,
  ))
    out += t
  return out
}

/** A turn in `sessionId` whose worker streams a long answer: resolves once it holds `minChars`. */
async function streamingLongAnswer(sessionId: string, question: string, minChars: number) {
  const turns = fakeTurns()
  const { client, turn } = await ask(sessionId, question)
  turns.queue.push(turn)
  const { events } = start(turns, createDemoModel({ tokens: 10_000, delayMs: 2 }))
  await until(
    () => (readMessage(client.doc, answerIdOf(turn))?.content.length ?? 0) > minChars,
    10_000,
    'streaming',
  )
  return { turns, client, turn, events }
}

describe('a pool worker', () => {
  it('answers a turn into the answer message derived from it and completes it once the answer is durable', async () => {
    const turns = fakeTurns()
    const { turn } = await ask('w-one', 'hello')
    turns.queue.push(turn)
    start(turns, createDemoModel({ tokens: 6, delayMs: 1 }))
    await until(() => turns.completed.length === 1, 10_000, 'the turn completed')
    const done = turns.completed[0]
    expect(done?.replyId).toBe(answerIdOf(turn))
    // What the server held when complete was called: the whole answer, complete.
    expect(done?.answer).toMatchObject({ status: 'complete', content: await whole('hello', 6) })
    expect(done?.answer?.metadata).toMatchObject({ replyTo: turn.messageId, turnId: turn.id })
    // The server was told the answer streams, and which message it is.
    expect(turns.renews.some((r) => r.state === 'streaming' && r.replyId === answerIdOf(turn))).toBe(true)
  })

  it('regression: calls complete only after the session said the answer is durable (whenFlushed)', async () => {
    const turns = fakeTurns()
    const { turn } = await ask('w-durable', 'hello')
    turns.queue.push(turn)
    const log: string[] = []
    // Sessions whose acks come late: a worker that completes before them would complete a turn whose
    // answer could still be lost.
    const sessions = createSharedSessions((sessionId) => {
      const client = createNodeSyncClient({ url: url(), sessionId })
      return {
        doc: client.doc,
        whenSynced: () => client.whenSynced(),
        whenFlushed: async () => {
          await client.whenFlushed()
          await new Promise((resolve) => setTimeout(resolve, 200))
          log.push('flushed')
        },
        close: () => client.destroy(),
      }
    })
    const original = turns.client.complete
    turns.client.complete = async (turnId, request) => {
      log.push('complete')
      return original(turnId, request)
    }
    const worker = createWorker({
      url: url(),
      pool: 'main',
      model: createDemoModel({ tokens: 3, delayMs: 0 }),
      turns: turns.client,
      sessions,
      claimWaitMs: 50,
      coalesceMs: 0,
    })
    workers.push(worker)
    await until(() => turns.completed.length === 1, 10_000, 'completed')
    expect(log.indexOf('flushed')).toBeGreaterThanOrEqual(0)
    expect(log.indexOf('flushed')).toBeLessThan(log.indexOf('complete'))
  })

  it('answers through an AI SDK model, recording its tool call and the tool’s result in the session', async () => {
    const turns = fakeTurns()
    const { client, turn } = await ask('w-tools', 'weather in Lyon?')
    turns.queue.push(turn)
    const finish = (unified: 'stop' | 'tool-calls'): LanguageModelV3StreamPart => ({
      type: 'finish',
      finishReason: { unified, raw: unified },
      usage: {
        inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
        outputTokens: { total: 1, text: 1, reasoning: undefined },
      },
    })
    const steps: LanguageModelV3StreamPart[][] = [
      [
        { type: 'tool-call', toolCallId: 'c1', toolName: 'weather', input: '{"city":"Lyon"}' },
        finish('tool-calls'),
      ],
      [
        { type: 'text-start', id: 't' },
        { type: 'text-delta', id: 't', delta: 'Sunny in Lyon.' },
        { type: 'text-end', id: 't' },
        finish('stop'),
      ],
    ]
    let step = 0
    const mock = new MockLanguageModelV3({
      doStream: async () => ({ stream: simulateReadableStream({ chunks: steps[step++] ?? [] }) }),
    })
    const weather = tool({
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `${city}: sunny`,
    })
    start(turns, createAiSdkModel({ model: mock, tools: { weather } }))
    await until(() => turns.completed.length === 1, 10_000, 'completed')
    const answerId = answerIdOf(turn)
    await until(
      () => readMessage(client.doc, `${answerId}:tool:c1`) !== undefined,
      5_000,
      'tool result synced',
    )
    expect(turns.completed[0]?.answer).toMatchObject({
      content: 'Sunny in Lyon.',
      status: 'complete',
      metadata: { toolCalls: [{ id: 'c1', name: 'weather', input: { city: 'Lyon' } }] },
    })
    expect(readMessage(client.doc, `${answerId}:tool:c1`)).toMatchObject({
      role: 'tool',
      content: 'Lyon: sunny',
      metadata: { replyTo: answerId, toolName: 'weather' },
    })
  })

  it('never answers more turns at once than its concurrency, and answers them all', async () => {
    const turns = fakeTurns()
    for (let i = 0; i < 5; i++) turns.queue.push((await ask(`w-many-${i}`, `q${i}`)).turn)
    start(turns, createDemoModel({ tokens: 5, delayMs: 5 }), 2)
    await until(() => turns.completed.length === 5, 15_000, 'five turns completed')
    expect(turns.maxRunning).toBe(2)
    expect(new Set(turns.completed.map((c) => c.turnId)).size).toBe(5)
  })

  // Regression (fleet bench, 10,000 questions): every wait for a free slot added a listener to the
  // worker's stop signal and never removed it, about one per answered turn (Node warned at 1,500).
  it('regression: keeps no listener on its stop signal per turn answered', async () => {
    const turns = fakeTurns()
    for (let i = 0; i < 12; i++) turns.queue.push((await ask(`w-listeners-${i}`, `q${i}`)).turn)
    start(turns, createDemoModel({ tokens: 2, delayMs: 1 }), 1)
    await until(() => turns.completed.length === 12, 20_000, 'twelve turns completed')
    const signal = turns.claimSignal
    expect(signal).toBeDefined()
    if (signal === undefined) return
    expect(getEventListeners(signal, 'abort').length).toBeLessThan(4)
  })

  it('serves the sessions of all its turns over one socket', async () => {
    const turns = fakeTurns()
    for (let i = 0; i < 4; i++) turns.queue.push((await ask(`w-mux-${i}`, `q${i}`)).turn)
    let sockets = 0
    class CountedWebSocket extends WebSocket {
      constructor(address: string | URL, protocols?: string | string[]) {
        super(address, protocols)
        sockets++
      }
    }
    const worker = createWorker({
      WebSocket: CountedWebSocket as unknown as WebSocketLikeConstructor,
      url: url(),
      pool: 'main',
      concurrency: 4,
      model: createDemoModel({ tokens: 5, delayMs: 5 }),
      turns: { ...turns.client, complete: async () => ({ turn: {} as Turn }) },
      claimWaitMs: 50,
      coalesceMs: 0,
    })
    workers.push(worker)
    const done: string[] = []
    worker.on((event) => {
      if (event.type === 'completed') done.push(event.turn.id)
    })
    await until(() => done.length === 4, 10_000, 'four turns answered')
    expect(sockets).toBe(1)
  })

  it('regression: retries a complete refused with a 503 (a cluster without quorum) rather than leave the turn to be redelivered', async () => {
    const turns = fakeTurns()
    const { turn } = await ask('w-503', 'during an outage')
    turns.queue.push(turn)
    let refusals = 2
    const worker = createWorker({
      url: url(),
      pool: 'main',
      model: createDemoModel({ tokens: 4, delayMs: 1 }),
      turns: {
        ...turns.client,
        async complete(turnId, request) {
          if (refusals-- > 0) throw new TurnsApiError(503, 'storage-unavailable', 'no quorum')
          return turns.client.complete(turnId, request)
        },
      },
      claimWaitMs: 50,
      coalesceMs: 0,
      onError: () => {},
    })
    workers.push(worker)
    const events: WorkerEvent[] = []
    worker.on((event) => events.push(event))
    await until(() => turns.completed.length === 1, 10_000, 'the turn completed after two refusals')
    expect(refusals).toBe(-1)
    expect(turns.completed[0]?.answer).toMatchObject({ status: 'complete' })
    expect(events.filter((event) => event.type === 'completed')).toHaveLength(1)
  })

  it('regression: retries a complete that failed on the network (the server restarting) rather than leave the turn to be redelivered', async () => {
    const turns = fakeTurns()
    const { turn } = await ask('w-restart', 'while the server restarts')
    turns.queue.push(turn)
    let refusals = 2
    const worker = createWorker({
      url: url(),
      pool: 'main',
      model: createDemoModel({ tokens: 4, delayMs: 1 }),
      turns: {
        ...turns.client,
        async complete(turnId, request) {
          // What fetch throws while nothing listens on the port.
          if (refusals-- > 0)
            throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') })
          return turns.client.complete(turnId, request)
        },
      },
      claimWaitMs: 50,
      coalesceMs: 0,
      onError: () => {},
    })
    workers.push(worker)
    const events: WorkerEvent[] = []
    worker.on((event) => events.push(event))
    await until(() => turns.completed.length === 1, 5_000, 'the turn completed after two failed calls')
    expect(refusals).toBe(-1)
    expect(turns.completed[0]?.answer).toMatchObject({ status: 'complete' })
    expect(events.filter((event) => event.type === 'completed')).toHaveLength(1)
  })

  it('stops the model at once when a renew says the turn was cancelled, and ends the answer cancelled', async () => {
    const { turns, client, turn, events } = await streamingLongAnswer('w-cancel', 'a long one', 20)
    turns.onRenew(() => 'cancelled')
    await until(() => events.some((e) => e.type === 'cancelled'), 5_000, 'the worker saw the cancel')
    await until(() => readMessage(client.doc, answerIdOf(turn))?.status === 'cancelled', 5_000, 'cancelled')
    const length = readMessage(client.doc, answerIdOf(turn))?.content.length ?? 0
    expect(length).toBeLessThan(40_000)
    // A renew that answers `cancelled` has ended the turn on the server: nothing to complete.
    expect(turns.completed).toEqual([])
    expect(turns.failed).toEqual([])
  })

  it('stops a turn a device cancelled in the document', async () => {
    const { client, turn, events } = await streamingLongAnswer('w-doc-cancel', 'long', 10)
    const { requestCancel } = await import('../../../shared/conversation/index.js')
    requestCancel(client.doc, answerIdOf(turn), alice)
    await until(() => events.some((e) => e.type === 'cancelled'), 5_000, 'the worker stopped')
    expect(readMessage(client.doc, answerIdOf(turn))?.status).toBe('cancelled')
  })

  it('writes nothing more once its lease is lost, and neither completes nor fails the turn', async () => {
    const { turns, turn, events } = await streamingLongAnswer('w-lost', 'long', 10)
    turns.onRenew(() => 'lost')
    await until(() => events.some((e) => e.type === 'lost'), 5_000, 'the worker saw the loss')
    await until(() => events.length > 0 && workers[0]?.active === 0, 5_000, 'the slot is free')
    // Two fresh reads of the server's copy, one after the other: at a token every 2 ms, a worker
    // still writing would have added to the answer in between.
    const first = await device('w-lost')
    const frozen = readMessage(first.doc, answerIdOf(turn))
    const later = await device('w-lost')
    expect(readMessage(later.doc, answerIdOf(turn))?.content).toBe(frozen?.content)
    expect(frozen?.status).toBe('streaming')
    expect(turns.completed).toEqual([])
    expect(turns.failed).toEqual([])
  })

  it('regression: stops writing before the server’s lease ends when its renews hang (two workers wrote one answer at once)', async () => {
    const turns = fakeTurns({ ttlMs: 400, renewMs: 100 })
    const { client, turn } = await ask('w-fence', 'long')
    turns.queue.push(turn)
    const { events } = start(turns, createDemoModel({ tokens: 10_000, delayMs: 2 }))
    const stamps: { type: string; at: number }[] = []
    workers[0]?.on((event) => stamps.push({ type: event.type, at: Date.now() }))
    await until(
      () => (readMessage(client.doc, answerIdOf(turn))?.content.length ?? 0) > 10,
      10_000,
      'streaming',
    )
    turns.onRenew(() => 'hang')
    await until(() => events.some((e) => e.type === 'lost'), 5_000, 'the worker gave up its lease')
    const lostAt = stamps.find((s) => s.type === 'lost')?.at ?? Number.POSITIVE_INFINITY
    // The server may hand the turn to another worker from its lease's end on: this worker must have
    // stopped writing before then, on its own clock, whatever its timers do.
    expect(lostAt).toBeLessThan(turns.lastExpiry)
    const first = await device('w-fence')
    const frozen = readMessage(first.doc, answerIdOf(turn))?.content
    const later = await device('w-fence')
    expect(readMessage(later.doc, answerIdOf(turn))?.content).toBe(frozen)
  })

  it('continues an answer another worker left half-written: one message, its text a prefix of the end', async () => {
    const turns = fakeTurns()
    const { client, turn } = await ask('w-resume', 'resume me')
    const full = await whole('resume me', 12)
    // A worker that died after streaming the first four tokens.
    const model = createDemoModel({ tokens: 12, delayMs: 0 })
    const tokens: string[] = []
    const prompt = readMessage(client.doc, turn.messageId) as MessageView
    for await (const t of model.generate(
      { sessionId: 's', prompt, messages: [prompt] },
      new AbortController().signal,
    ))
      tokens.push(t as string)
    const dead = openStreamingWriter(client.doc, {
      author: { id: 'agent:w', kind: 'agent' },
      id: answerIdOf(turn),
      coalesceMs: 0,
      metadata: { replyTo: turn.messageId },
    })
    for (const t of tokens.slice(0, 4)) dead.write(t)
    await client.whenFlushed()
    const before = readMessage(client.doc, answerIdOf(turn))?.content ?? ''
    turns.queue.push({ ...turn, attempts: 1 })
    const { events } = start(turns, createDemoModel({ tokens: 12, delayMs: 1 }))
    await until(() => turns.completed.length === 1, 10_000, 'completed')
    const answer = turns.completed[0]?.answer
    expect(answer?.content.startsWith(before)).toBe(true)
    expect(answer?.content).toBe(full)
    expect(answer?.metadata.resumes).toMatchObject([{ offset: before.length, attempt: 2 }])
    expect(events.find((e) => e.type === 'streaming')).toMatchObject({ resumedFrom: before.length })
    await until(() => readMessage(client.doc, answerIdOf(turn))?.status === 'complete', 5_000, 'synced')
    expect(readMessages(client.doc).filter((m) => m.role === 'assistant')).toHaveLength(1)
  })

  it('completes without writing when the answer is already complete (its worker died before completing)', async () => {
    const turns = fakeTurns()
    const { client, turn } = await ask('w-done', 'q')
    appendMessage(client.doc, {
      id: answerIdOf(turn),
      role: 'assistant',
      author: { id: 'agent:w', kind: 'agent' },
      content: 'already answered',
      metadata: { replyTo: turn.messageId },
    })
    await client.whenFlushed()
    turns.queue.push(turn)
    start(turns, createDemoModel({ tokens: 5, delayMs: 0 }))
    await until(() => turns.completed.length === 1, 10_000, 'completed')
    expect(turns.completed[0]?.answer?.content).toBe('already answered')
    expect(readMessages(client.doc).filter((m) => m.role === 'assistant')).toHaveLength(1)
  })

  it('on stop(), makes the text so far durable and gives the turn back for another worker to continue', async () => {
    const turns = fakeTurns()
    const { turn } = await ask('w-stop', 'long')
    turns.queue.push(turn)
    const { worker } = start(turns, createDemoModel({ tokens: 10_000, delayMs: 2 }))
    const watcher = await device('w-stop')
    await until(
      () => (readMessage(watcher.doc, answerIdOf(turn))?.content.length ?? 0) > 10,
      10_000,
      'streaming',
    )
    await withTimeout(worker.stop(), 10_000, 'stop')
    expect(turns.failed).toEqual([{ turnId: turn.id, reason: 'worker-stopped', retry: true }])
    const fresh = await device('w-stop')
    const kept = readMessage(fresh.doc, answerIdOf(turn))
    expect(kept?.status).toBe('streaming')
    expect(kept?.content.length).toBeGreaterThan(10)
  })
})
