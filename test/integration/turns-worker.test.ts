// Pool workers against the real server and its turn service: a worker killed -9 mid-answer and
// another finishing the same message (the text before the kill a prefix of the end), a lease that
// expires under a hung worker and the turn resumed elsewhere, cancel while queued and while
// streaming, priority visible to devices and in the order of answers, a server restarted under a
// queue of turns, queue positions written only into sessions someone has open, and one answer per
// turn throughout.

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { freePort } from '../../bench/lib/targets.js'
import { createTurnsClient, type TurnsClient } from '../../client/agent/fleet/turns-client.js'
import { answerIdOf, type Worker, type WorkerEvent } from '../../client/agent/fleet/worker.js'
import { createDemoModel, createWorker } from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { type Author, appendMessage, readMessage, readMessages } from '../../shared/conversation/index.js'
import { readTurnEntry, type Turn, turnIdOf } from '../../shared/turns/index.js'
import { nodeScript } from '../helpers/node-script.js'
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { until, withTimeout } from '../helpers/wait.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const alice: Author = { id: 'device:alice', kind: 'device' }

let dataDir: string
let server: SyncServer | undefined
const clients: SyncClient[] = []
const workers: Worker[] = []
const children: ChildProcess[] = []

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-turns-worker-'))
})

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  for (const worker of workers.splice(0)) await worker.stop()
  for (const client of clients.splice(0)) await client.destroy()
  await server?.close()
  server = undefined
  await rm(dataDir, { recursive: true, force: true })
})

async function startServer(config: Partial<ServerConfig> = {}): Promise<SyncServer> {
  server = await startSyncServer({
    config: {
      ...DEFAULT_CONFIG,
      port: 0,
      dataDir,
      logLevel: 'silent',
      turnPools: ['main:1'],
      turnLeaseMs: 1_500,
      ...config,
    },
  })
  return server
}

const urlOf = (port: number): string => `ws://127.0.0.1:${port}`

async function device(url: string, sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url, sessionId })
  clients.push(client)
  await client.whenSynced()
  return client
}

/** A device asks `text` in `sessionId` and asks the pool to answer it. */
async function ask(
  url: string,
  turns: TurnsClient,
  sessionId: string,
  text: string,
  priority = 1,
): Promise<{ client: SyncClient; turn: Turn; messageId: string }> {
  const client = await device(url, sessionId)
  const message = appendMessage(client.doc, { role: 'user', author: alice, content: text })
  await client.whenFlushed()
  const created = await turns.create({ sessionId, messageId: message.id, pool: 'main', priority })
  return { client, turn: created.turn, messageId: message.id }
}

function startWorker(
  url: string,
  options: { tokens?: number; delayMs?: number; name?: string } = {},
): {
  worker: Worker
  events: WorkerEvent[]
} {
  const worker = createWorker({
    url,
    pool: 'main',
    model: createDemoModel({ tokens: options.tokens ?? 8, delayMs: options.delayMs ?? 2 }),
    name: options.name ?? 'w',
    claimWaitMs: 500,
    coalesceMs: 0,
  })
  workers.push(worker)
  const events: WorkerEvent[] = []
  worker.on((event) => events.push(event))
  return { worker, events }
}

/** A worker process (test/helpers/worker-process.ts); resolves once it printed `started`. */
async function workerProcess(url: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, nodeScript('test/helpers/worker-process.ts'), {
    cwd: ROOT,
    env: { ...process.env, URL: url, POOL: 'main', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let output = ''
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('"started"')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${output}`)))
    }),
    20_000,
    'worker process started',
  )
  return child
}

const assistants = (client: SyncClient, promptId: string) =>
  readMessages(client.doc).filter((m) => m.role === 'assistant' && m.metadata.replyTo === promptId)

async function wholeAnswer(text: string, tokens: number): Promise<string> {
  const model = createDemoModel({ tokens, delayMs: 0 })
  const prompt = { content: text } as Parameters<typeof model.generate>[0]['prompt']
  let out = ''
  for await (const t of model.generate(
    { sessionId: '', prompt, messages: [prompt] },
    new AbortController().signal,
  ))
    out += t
  return out
}

describe('pool workers on the real server', () => {
  it('kill -9 of a worker mid-answer: another worker finishes the same message, the text before the kill a prefix of the end', async () => {
    const { port } = await startServer({ turnLeaseMs: 1_200 })
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const { client, turn, messageId } = await ask(url, turns, 'kill-one', 'tell me everything')
    const child = await workerProcess(url, { TOKENS: '300', DELAY_MS: '10' })
    const answerId = answerIdOf(turn)
    await until(
      () => (readMessage(client.doc, answerId)?.content.length ?? 0) > 100,
      20_000,
      'answer streaming',
    )
    child.kill('SIGKILL')
    // What a device saw before the kill (everything that reached it).
    await new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const seen = readMessage(client.doc, answerId)?.content ?? ''
    const { events } = startWorker(url, { tokens: 300, delayMs: 1, name: 'rescuer' })
    await until(() => readMessage(client.doc, answerId)?.status === 'complete', 30_000, 'answer complete')
    const final = readMessage(client.doc, answerId)
    expect(final?.content.startsWith(seen)).toBe(true)
    expect(final?.content).toBe(await wholeAnswer('tell me everything', 300))
    expect(assistants(client, messageId)).toHaveLength(1)
    expect(final?.metadata.resumes).toMatchObject([{ attempt: 2 }])
    expect(events.find((e) => e.type === 'streaming')).toMatchObject({ type: 'streaming' })
    await until(() => readTurnEntry(client.doc, messageId)?.state === 'done', 10_000, 'turn done')
    expect((await turns.get(turn.id)).turn).toMatchObject({ state: 'done', attempts: 2 })
  })

  it('a hung worker loses its lease: the turn goes to another worker, which resumes the same answer', async () => {
    const { port } = await startServer({ turnLeaseMs: 900 })
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const { client, turn, messageId } = await ask(url, turns, 'hung', 'slowly please')
    // A worker whose renews never reach the server (a hung network path): its lease runs out.
    const real = createTurnsClient({ url })
    const hung: TurnsClient = { ...real, renew: () => new Promise(() => {}) }
    const stuck = createWorker({
      url,
      pool: 'main',
      model: createDemoModel({ tokens: 400, delayMs: 10 }),
      name: 'stuck',
      turns: hung,
      claimWaitMs: 500,
      coalesceMs: 0,
    })
    workers.push(stuck)
    const stuckEvents: WorkerEvent[] = []
    stuck.on((event) => stuckEvents.push(event))
    const answerId = answerIdOf(turn)
    await until(() => (readMessage(client.doc, answerId)?.content.length ?? 0) > 20, 20_000, 'streaming')
    const { events } = startWorker(url, { tokens: 400, delayMs: 1, name: 'second' })
    // The stuck worker notices on its own clock that its lease ran out, and stops writing.
    await until(() => stuckEvents.some((e) => e.type === 'lost'), 20_000, 'the stuck worker stopped')
    await until(() => readMessage(client.doc, answerId)?.status === 'complete', 30_000, 'complete')
    expect(events.some((e) => e.type === 'streaming' && e.resumedFrom !== undefined)).toBe(true)
    expect(readMessage(client.doc, answerId)?.content).toBe(await wholeAnswer('slowly please', 400))
    expect(assistants(client, messageId)).toHaveLength(1)
    await until(() => readTurnEntry(client.doc, messageId)?.state === 'done', 10_000, 'done')
  })

  it('rewrites queue positions only into sessions someone has open, and brings one up to date once it is opened (regression: issue 17, positions were written into every queued session)', async () => {
    const started = await startServer({ turnPositionRefreshMs: 200 })
    const url = urlOf(started.port)
    const turns = createTurnsClient({ url })
    const first = await ask(url, turns, 'watch-a', 'first')
    const second = await ask(url, turns, 'watch-b', 'second')
    const third = await ask(url, turns, 'watch-c', 'third')
    await until(() => readTurnEntry(second.client.doc, second.messageId)?.position === 2, 10_000, 'b 2nd')
    await until(() => readTurnEntry(third.client.doc, third.messageId)?.position === 3, 10_000, 'c 3rd')
    // Nobody has session b open any more; it stays loaded (idle unload is 30 s away).
    await second.client.destroy()
    await until(() => started.registry.get('watch-b')?.connections.size === 0, 10_000, 'b closed')
    await turns.cancel(first.turn.id)
    await until(() => readTurnEntry(third.client.doc, third.messageId)?.position === 2, 10_000, 'c moved up')
    const unseen = started.registry.get('watch-b')?.document
    expect(unseen).toBeDefined()
    expect(readTurnEntry(unseen!, second.messageId)?.position).toBe(2)
    expect(started.turns.get(second.turn.id)).toMatchObject({ position: 1 })
    // Opened again: the next refresh writes where it stands now.
    const again = await device(url, 'watch-b')
    await until(
      () => readTurnEntry(again.doc, second.messageId)?.position === 1,
      10_000,
      'b brought up to date',
    )
  })

  it('cancel while queued: the turn leaves the queue, every device sees it cancelled, no worker answers it', async () => {
    const { port } = await startServer()
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const first = await ask(url, turns, 'queued-a', 'first')
    const second = await ask(url, turns, 'queued-b', 'second')
    await until(
      () => readTurnEntry(second.client.doc, second.messageId)?.position === 2,
      10_000,
      'queued second in line, shown',
    )
    await turns.cancel(first.turn.id)
    await until(
      () => readTurnEntry(first.client.doc, first.messageId)?.state === 'cancelled',
      10_000,
      'cancelled shown',
    )
    await until(() => readTurnEntry(second.client.doc, second.messageId)?.position === 1, 10_000, 'moved up')
    const { events } = startWorker(url)
    await until(
      () => readTurnEntry(second.client.doc, second.messageId)?.state === 'done',
      20_000,
      'second done',
    )
    expect(events.filter((e) => e.type === 'claimed').map((e) => e.turn.id)).toEqual([second.turn.id])
    expect(assistants(first.client, first.messageId)).toHaveLength(0)
    expect(assistants(second.client, second.messageId)).toHaveLength(1)
  })

  it('cancel while streaming: the worker stops the model at once and the answer ends cancelled', async () => {
    const { port } = await startServer({ turnLeaseMs: 900 })
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const { client, turn, messageId } = await ask(url, turns, 'cancel-run', 'go on forever')
    const { events } = startWorker(url, { tokens: 100_000, delayMs: 2 })
    const answerId = answerIdOf(turn)
    await until(() => readTurnEntry(client.doc, messageId)?.state === 'streaming', 20_000, 'streaming shown')
    await turns.cancel(turn.id)
    await until(() => events.some((e) => e.type === 'cancelled'), 10_000, 'the worker stopped')
    await until(() => readMessage(client.doc, answerId)?.status === 'cancelled', 10_000, 'answer cancelled')
    const length = readMessage(client.doc, answerId)?.content.length ?? 0
    await until(() => readTurnEntry(client.doc, messageId)?.state === 'cancelled', 10_000, 'turn cancelled')
    // Nothing more is written after the stop.
    const later = await device(url, 'cancel-run')
    expect(readMessage(later.doc, answerId)?.content.length).toBe(length)
    expect(length).toBeLessThan(100_000 * 4)
  })

  it('priority is visible to devices and decides the order of answers', async () => {
    const { port } = await startServer()
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const low = await ask(url, turns, 'prio-low', 'batch job', 2)
    const mid = await ask(url, turns, 'prio-mid', 'normal', 1)
    const high = await ask(url, turns, 'prio-high', 'interactive', 0)
    await until(
      () => readTurnEntry(high.client.doc, high.messageId)?.position === 1,
      10_000,
      'high first in line',
    )
    await until(
      () => readTurnEntry(low.client.doc, low.messageId)?.position === 3,
      10_000,
      'low last in line',
    )
    expect(readTurnEntry(mid.client.doc, mid.messageId)?.position).toBe(2)
    const { events } = startWorker(url)
    await until(() => events.filter((e) => e.type === 'completed').length === 3, 30_000, 'three answered')
    expect(events.filter((e) => e.type === 'claimed').map((e) => e.turn.id)).toEqual([
      high.turn.id,
      mid.turn.id,
      low.turn.id,
    ])
  })
})

describe('a worker across a server restart', () => {
  let serverProcess: ServerProcess | undefined

  afterEach(async () => {
    if (serverProcess !== undefined && serverProcess.child.exitCode === null) {
      serverProcess.child.kill('SIGKILL')
      await serverProcess.exited
    }
    serverProcess = undefined
  })

  it('keeps going when the server is killed -9 and restarted with turns queued: each answered once', async () => {
    const port = await freePort()
    const args = [
      '--data',
      dataDir,
      '--port',
      String(port),
      '--turn-pools',
      'main:1',
      '--turn-lease-ms',
      '1500',
    ]
    serverProcess = await startServerProcess(args)
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const asked: { client: SyncClient; turn: Turn; messageId: string }[] = []
    for (let i = 0; i < 4; i++) asked.push(await ask(url, turns, `restart-${i}`, `question ${i}`))
    const { events } = startWorker(url, { tokens: 30, delayMs: 20 })
    await until(() => events.some((e) => e.type === 'completed'), 20_000, 'one answered before the restart')
    serverProcess.child.kill('SIGKILL')
    await serverProcess.exited
    serverProcess = await startServerProcess(args)
    // The same worker, untouched, answers the rest.
    await until(
      () => asked.every(({ turn }) => events.some((e) => e.type === 'completed' && e.turn.id === turn.id)),
      60_000,
      'every turn answered after the restart',
    )
    for (const { turn, messageId } of asked) {
      const reader = await device(url, turn.sessionId)
      expect(assistants(reader, messageId)).toHaveLength(1)
      expect(readMessage(reader.doc, answerIdOf(turn))?.status).toBe('complete')
      expect((await turns.get(turnIdOf(turn.sessionId, messageId, 'main'))).turn.state).toBe('done')
    }
  })
})

describe('colloquy agent --pool', () => {
  const CLI = nodeScript('cli/colloquy.ts')

  it('answers the pool’s turns, prints one JSON line per turn event, and exits 0 on SIGTERM', async () => {
    const { port } = await startServer()
    const url = urlOf(port)
    const turns = createTurnsClient({ url })
    const child = spawn(
      process.execPath,
      [
        ...CLI,
        'agent',
        '--pool',
        'main',
        '--concurrency',
        '2',
        '--url',
        url,
        '--name',
        'cli',
        '--delay-ms',
        '1',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    children.push(child)
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await until(() => output.includes('"event":"worker"'), 20_000, 'the worker started')
    const { client, turn, messageId } = await ask(url, turns, 'cli-pool', 'from the cli')
    await until(() => readMessage(client.doc, answerIdOf(turn))?.status === 'complete', 20_000, 'answered')
    expect(readMessage(client.doc, answerIdOf(turn))?.author).toMatchObject({
      id: 'agent:cli',
      kind: 'agent',
    })
    await until(() => output.includes('"event":"completed"'), 10_000, 'completed line')
    const events = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { event: string; turn?: string })
    expect(events.filter((e) => e.turn === turn.id).map((e) => e.event)).toEqual([
      'claimed',
      'streaming',
      'completed',
    ])
    expect(assistants(client, messageId)).toHaveLength(1)
    child.kill('SIGTERM')
    expect(await withTimeout(exited, 10_000, 'exit')).toBe(0)
  })

  it('refuses a session id beside --pool, and a bad pool name, with exit 2', async () => {
    for (const args of [
      ['agent', '--pool', 'main', 'some-session'],
      ['agent', '--pool', 'Not A Pool'],
    ]) {
      const child = spawn(process.execPath, [...CLI, ...args], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let err = ''
      child.stderr?.on('data', (chunk: Buffer) => {
        err += chunk.toString()
      })
      const code = await withTimeout(
        new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))),
        20_000,
        'exit',
      )
      expect(code).toBe(2)
      expect(err).toMatch(/pool/)
    }
  })
})
