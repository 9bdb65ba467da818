// Turns in a cluster while JetStream has no quorum (2 of 3 nats-servers killed): creating,
// claiming, renewing, completing and cancelling a turn are refused with a transient 503
// (`storage-unavailable`) within a bound, from every node, and no turn is answered as created
// unless it is in the stream; reads answer or give the same 503, bounded. A real worker keeps
// answering through the outage as far as it can; once the servers are back a single scheduler
// resumes on its own and every question is answered exactly once, whole (a resumed answer ends as
// an uninterrupted one). Never two schedulers at once. Prints `turn calls without quorum: …` (each
// call's answer and time) and `turns without quorum: …` (when a scheduler was back).

import { writeFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { createTurnsClient, TurnsApiError, type TurnsClient } from '../../client/agent/fleet/turns-client.js'
import { answerIdOf, type Worker, type WorkerEvent } from '../../client/agent/fleet/worker.js'
import { createDemoModel, createWorker } from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { type Author, appendMessage, readMessage, readMessages } from '../../shared/conversation/index.js'
import { readTurnEntry } from '../../shared/turns/index.js'
import { type ColloquyCluster, type ColloquyNode, startColloquyCluster } from '../helpers/colloquy-cluster.js'
import { hasNatsServer, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { until } from '../helpers/wait.js'

warnIfNoNatsServer(import.meta.url)

const POOL = 'main'
const LEASE_MS = 12_000
/**
 * Longest a turn call may take to be refused while there is no quorum (ms): the wait for a
 * scheduler (2 leader leases + 10 s = 22 s), plus one forwarded request's timeout (10 s) begun just
 * before its end, and slack for a loaded machine.
 */
const REFUSED_WITHIN_MS = 35_000
/** The same for a read, which waits for a scheduler one leader lease (6 s) only. */
const READ_REFUSED_WITHIN_MS = 18_000
/** Tokens of each answer of the worker's demo model. */
const TOKENS = 40
const alice: Author = { id: 'device:alice', kind: 'device' }

let cluster: ColloquyCluster | undefined
const clients: SyncClient[] = []
const workers: Worker[] = []

const httpOf = (node: ColloquyNode): string => node.url.replace('ws://', 'http://')
const turnsOn = (node: ColloquyNode): TurnsClient => createTurnsClient({ url: node.url })

/** Whether `node` schedules the pool now (only the scheduler reports the pool's gauges); false if down. */
async function schedules(node: ColloquyNode): Promise<boolean> {
  try {
    const response = await fetch(`${httpOf(node)}/metrics`, { signal: AbortSignal.timeout(2_000) })
    return (await response.text()).includes(`colloquy_turns_running{pool="${POOL}"}`)
  } catch {
    return false
  }
}

/** The node scheduling the pool, once exactly one does (bounded). */
async function schedulerNode(ms: number): Promise<ColloquyNode> {
  const deadline = Date.now() + ms
  for (;;) {
    const flags = await Promise.all(cluster!.nodes.map(schedules))
    if (flags.filter(Boolean).length === 1) return cluster!.nodes[flags.indexOf(true)]!
    if (Date.now() > deadline) throw new Error(`no single scheduler within ${ms} ms (${flags.join()})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Writes user messages `ids` into `sessionId` through `node`, durable before it returns. */
async function ask(node: ColloquyNode, sessionId: string, ids: readonly string[]): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: node.url, sessionId })
  clients.push(client)
  await client.whenSynced()
  for (const id of ids)
    appendMessage(client.doc, { id, role: 'user', author: alice, content: `question ${id}` })
  await client.whenFlushed()
  return client
}

/** How a call ended and how long it took. */
interface Outcome {
  readonly label: string
  readonly ms: number
  /** `ok`, or the error's HTTP status and code. */
  readonly result: string
}

async function outcomeOf(label: string, call: () => Promise<unknown>): Promise<Outcome> {
  const startedAt = Date.now()
  try {
    const value = await call()
    return { label, ms: Date.now() - startedAt, result: `ok ${JSON.stringify(value).slice(0, 80)}` }
  } catch (error) {
    const result =
      error instanceof TurnsApiError ? `${error.status} ${error.code}` : `thrown ${String(error)}`
    return { label, ms: Date.now() - startedAt, result }
  }
}

/** Creates a turn, retrying a transient refusal with backoff (as a device does), bounded. */
async function createRetrying(node: ColloquyNode, sessionId: string, messageId: string, ms: number) {
  const deadline = Date.now() + ms
  for (let delay = 200; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await turnsOn(node).create({ sessionId, messageId, pool: POOL })
    } catch (error) {
      if (!(error instanceof TurnsApiError && error.status === 503) || Date.now() + delay > deadline)
        throw error
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}

describe.skipIf(!hasNatsServer)('turns in a cluster while JetStream has no quorum', () => {
  afterEach(async () => {
    // TURNS_QUORUM_LOGS=/tmp/x keeps each node's log as /tmp/x-c1.log … (to read a failure).
    const keepLogs = process.env.TURNS_QUORUM_LOGS
    if (keepLogs !== undefined)
      for (const node of cluster?.nodes ?? [])
        writeFileSync(`${keepLogs}-${node.name}.log`, node.process?.output() ?? '')
    for (const worker of workers.splice(0)) await worker.stop().catch(() => undefined)
    for (const client of clients.splice(0)) await client.destroy()
    await cluster?.stop()
    cluster = undefined
  }, 30_000)

  it('refuses turn writes with a 503 while 2 of 3 nats-servers are down, then answers every question once', async () => {
    cluster = await startColloquyCluster({
      args: [
        '--turn-pools',
        `${POOL}:2`,
        '--turn-lease-ms',
        String(LEASE_MS),
        '--turn-position-refresh-ms',
        '200',
      ],
    })
    const nodes = cluster.nodes
    // Never two schedulers at once: every node's gauges sampled every 200 ms for the whole test.
    let sampling = true
    let mostSchedulers = 0
    const sampler = (async () => {
      while (sampling) {
        const flags = await Promise.all(nodes.map(schedules))
        mostSchedulers = Math.max(mostSchedulers, flags.filter(Boolean).length)
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    })()

    await schedulerNode(30_000)
    const before = ['b0', 'b1', 'b2', 'b3']
    const asker = await ask(nodes[0]!, 'quorum-1', [...before, 'd0', 'd1', 'd2'])
    for (const [i, id] of before.entries()) {
      const created = await turnsOn(nodes[i % 3]!).create({
        sessionId: 'quorum-1',
        messageId: id,
        pool: POOL,
      })
      expect(created.isNew).toBe(true)
    }
    // A queued turn that a device cancels during the outage (refused), and again after it.
    const toCancel = await turnsOn(nodes[1]!).create({ sessionId: 'quorum-1', messageId: 'b3', pool: POOL })

    const events: WorkerEvent[] = []
    const worker = createWorker({
      url: nodes[2]!.url,
      pool: POOL,
      concurrency: 2,
      model: createDemoModel({ tokens: TOKENS, delayMs: 50 }),
      name: 'through-the-outage',
      claimWaitMs: 1_000,
      coalesceMs: 0,
      onError: () => {},
    })
    workers.push(worker)
    worker.on((event) => events.push(event))
    await until(() => events.some((event) => event.type === 'streaming'), 20_000, 'an answer streams')
    // A raw worker's claim, held through the outage: its renew and complete are refused meanwhile.
    const [held] = await turnsOn(nodes[1]!).claim(POOL, { instanceId: 'raw', max: 1, waitMs: 10_000 })

    await cluster.nats.nodes[1]!.kill()
    await cluster.nats.nodes[2]!.kill()
    const outageAt = Date.now()
    /** Every turn call, from every node, at once. */
    const callEverything = (): Promise<Outcome[]> => {
      const calls: Promise<Outcome>[] = []
      for (const [i, node] of nodes.entries()) {
        calls.push(
          outcomeOf(`create on c${i + 1}`, () =>
            turnsOn(node).create({ sessionId: 'quorum-1', messageId: `d${i}`, pool: POOL }),
          ),
          outcomeOf(`get on c${i + 1}`, () => turnsOn(node).get(toCancel.turn.id)),
          outcomeOf(`pool on c${i + 1}`, () => turnsOn(node).pool(POOL)),
        )
      }
      calls.push(outcomeOf('cancel', () => turnsOn(nodes[0]!).cancel(toCancel.turn.id)))
      calls.push(
        outcomeOf('claim', () => turnsOn(nodes[0]!).claim(POOL, { instanceId: 'x', max: 1, waitMs: 0 })),
      )
      if (held !== undefined) {
        calls.push(
          outcomeOf('renew', () => turnsOn(nodes[0]!).renew(held.turn.id, { leaseId: held.lease.id })),
          outcomeOf('complete', () => turnsOn(nodes[2]!).complete(held.turn.id, { leaseId: held.lease.id })),
        )
      }
      return Promise.all(calls)
    }
    const expectRefused = (outcomes: readonly Outcome[], when: string): void => {
      console.info(
        `turn calls without quorum, ${when}: ${outcomes.map((o) => `${o.label} ${o.result.slice(0, 40)} in ${o.ms} ms`).join('; ')}`,
      )
      for (const outcome of outcomes) {
        const isRead = /^(get|pool)/.test(outcome.label)
        expect(outcome.ms, `${outcome.label} answered in time`).toBeLessThanOrEqual(
          isRead ? READ_REFUSED_WITHIN_MS : REFUSED_WITHIN_MS,
        )
        // Never a write answered without quorum; a read answers or is refused the same way; a
        // claim answers nothing or is refused.
        if (isRead) expect(outcome.result, outcome.label).toMatch(/^(ok|503 storage-unavailable$)/)
        else if (outcome.label === 'claim')
          expect(outcome.result).toMatch(/^(ok \[\]|503 storage-unavailable)$/)
        else expect(outcome.result, `${outcome.label} ${when}`).toBe('503 storage-unavailable')
      }
    }
    // While the scheduler still holds its lease (it cannot store anything) …
    expectRefused(await callEverything(), 'the scheduler stepping down')
    const refusedAfterMs = Date.now() - outageAt
    // … and once it stepped down: no node can take the lease without quorum.
    expect(await Promise.all(nodes.map(schedules))).toEqual([false, false, false])
    expectRefused(await callEverything(), 'no scheduler')

    await cluster.nats.nodes[1]!.restart()
    await cluster.nats.nodes[2]!.restart()
    const backAt = Date.now()
    const scheduler = await schedulerNode(60_000)
    console.info(
      `turns without quorum: every call refused ${refusedAfterMs} ms into the outage; ` +
        `a scheduler (${scheduler.name}) ${Date.now() - backAt} ms after the servers were back`,
    )

    // The device retries what was refused: the turns it creates now are new ones, the cancel ends
    // the queued turn; the raw worker's lease outlived the outage or the turn goes to the worker.
    for (const id of ['d0', 'd1', 'd2']) await createRetrying(nodes[0]!, 'quorum-1', id, 60_000)
    if (held !== undefined) {
      const renewed = await turnsOn(nodes[0]!)
        .renew(held.turn.id, { leaseId: held.lease.id })
        .catch(() => undefined)
      if (renewed?.status === 'ok') {
        // It never wrote an answer: it gives the turn back for the worker.
        await turnsOn(nodes[1]!).fail(held.turn.id, { leaseId: held.lease.id, reason: 'raw', retry: true })
      }
    }
    // Cancelled if still queued or running; refused (409) if its answer was done meanwhile.
    await turnsOn(nodes[2]!)
      .cancel(toCancel.turn.id)
      .catch(() => undefined)
    const ids = [...before, 'd0', 'd1', 'd2']

    // Every question answered once: one answer message each, complete, its turn done.
    const turnIdOf = (id: string): string => `${POOL}~quorum-1~${id}`
    const isSettled = async (id: string): Promise<boolean> => {
      const { turn } = await turnsOn(scheduler).get(turnIdOf(id))
      return turn.state === 'done' || turn.state === 'cancelled'
    }
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline) {
      const settled = await Promise.all(ids.map((id) => isSettled(id).catch(() => false)))
      if (settled.every(Boolean)) break
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    for (const id of ids) {
      const { turn } = await turnsOn(nodes[1]!).get(turnIdOf(id))
      if (id === 'b3' && turn.state === 'cancelled') continue
      expect(turn, id).toMatchObject({ state: 'done' })
      const answerId = answerIdOf({ pool: POOL, messageId: id })
      await until(
        () =>
          readMessage(asker.doc, answerId)?.status === 'complete' &&
          readTurnEntry(asker.doc, id)?.state === 'done',
        20_000,
        `the answer to ${id} is complete on the asking device`,
      )
      expect(
        readMessages(asker.doc).filter((message) => message.id === answerId),
        id,
      ).toHaveLength(1)
    }
    const counts = new Map<string, number>()
    for (const event of events) counts.set(event.type, (counts.get(event.type) ?? 0) + 1)
    const attempts = await Promise.all(
      ids.map(async (id) => (await turnsOn(nodes[0]!).get(turnIdOf(id))).turn.attempts),
    )
    console.info(
      `turns after the outage: worker events ${JSON.stringify(Object.fromEntries(counts))}; ` +
        `attempts ${ids.map((id, i) => `${id}:${attempts[i]}`).join(' ')}`,
    )
    // Whole and continuous: what the deterministic model says uninterrupted, no token twice or
    // missing, even for an answer resumed after its worker lost the lease during the outage.
    // (A worker reports `completed` twice for a turn whose complete was refused during the outage
    // and redelivered: it finds its answer complete and completes the turn without writing.)
    const model = createDemoModel({ tokens: TOKENS, delayMs: 0 })
    for (const id of ids) {
      const answer = readMessage(asker.doc, answerIdOf({ pool: POOL, messageId: id }))
      if (answer === undefined || answer.status !== 'complete') continue
      let whole = ''
      const prompt = readMessage(asker.doc, id)!
      for await (const token of model.generate(
        { sessionId: 'quorum-1', prompt, messages: [prompt] },
        new AbortController().signal,
      ))
        if (typeof token === 'string') whole += token
      expect(answer.content, `the answer to ${id}`).toBe(whole)
    }
    sampling = false
    await sampler
    expect(mostSchedulers, 'schedulers at once').toBe(1)
  }, 240_000)
})
