// [T0] Turn service figures, server side only (the burst bench with worker processes belongs to
// the worker side): how fast a real server (LevelDB, fsync on) accepts a burst of turn creations
// over HTTP, each shown in its own session, and hands them out to 16 slots that complete at once;
// plus the scheduler's cost to order a 10,000-deep queue. Every session is stored beforehand, none
// open, so each creation also loads its session to show the turn. Seeded; prints JSON.
// Run: node --import tsx bench/turns/server-figures.ts [turns=10000] [concurrency=64]

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as prng from 'lib0/prng'
import * as Y from 'yjs'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { startSyncServer } from '../../server/sync-server.js'
import { createScheduler } from '../../server/turns/scheduler.js'
import { appendMessage } from '../../shared/conversation/index.js'
import type { ClaimResponse } from '../../shared/turns/api.js'

const turns = Number(process.argv[2] ?? 10_000)
const concurrency = Number(process.argv[3] ?? 64)
const gen = prng.create(17)

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-turns-bench-'))
const server = await startSyncServer({
  config: {
    ...DEFAULT_CONFIG,
    port: 0,
    dataDir,
    logLevel: 'silent',
    compaction: false,
    turnPools: [`gpu:16:${turns}`],
    maxSessionsInMemory: turns + 100,
  },
})
const base = `http://127.0.0.1:${server.port}`
// Every session exists, each with its question, but none is open: each creation loads its session
// to show the turn (the server never creates a session for a turn).
{
  const question = new Y.Doc()
  appendMessage(question, { id: 'q', role: 'user', author: { id: 'phone', kind: 'device' }, content: 'why?' })
  const update = Y.encodeStateAsUpdate(question)
  for (let i = 0; i < turns; i += 1_000) {
    await server.store.append(
      Array.from({ length: Math.min(1_000, turns - i) }, (_, k) => ({
        sessionId: `bench-${i + k}`,
        seq: 1,
        time: Date.now(),
        update,
      })),
    )
  }
}
const post = (route: string, body: unknown) =>
  fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

// Creation burst.
const latencies: number[] = []
let next = 0
const started = performance.now()
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < turns) {
      const i = next++
      const t = performance.now()
      const response = await post('/api/turns', {
        sessionId: `bench-${i}`,
        messageId: 'q',
        pool: 'gpu',
        priority: prng.int32(gen, 0, 2),
        tenant: `t${prng.int32(gen, 0, 19)}`,
      })
      if (response.status !== 201) throw new Error(`create ${i}: ${response.status} ${await response.text()}`)
      await response.arrayBuffer()
      latencies.push(performance.now() - t)
    }
  }),
)
const createSeconds = (performance.now() - started) / 1000

// Dispatch: 4 workers × 4 slots, each turn completed as soon as it is claimed.
const dispatchStarted = performance.now()
let completed = 0
await Promise.all(
  Array.from({ length: 4 }, async (_, w) => {
    while (completed < turns) {
      const response = await post('/api/pools/gpu/claim', { instanceId: `w${w}`, max: 4, waitMs: 200 })
      const { turns: claimed } = (await response.json()) as ClaimResponse
      if (claimed.length === 0 && completed >= turns) break
      await Promise.all(
        claimed.map(async ({ turn, lease }) => {
          const done = await post(`/api/turns/${encodeURIComponent(turn.id)}/complete`, { leaseId: lease.id })
          if (done.status !== 200) throw new Error(`complete: ${done.status}`)
          await done.arrayBuffer()
          completed++
        }),
      )
    }
  }),
)
const dispatchSeconds = (performance.now() - dispatchStarted) / 1000
await server.close()
await rm(dataDir, { recursive: true, force: true })

// Scheduler alone: order a 10,000-deep queue of 20 tenants × 3 classes.
let now = 0
const scheduler = createScheduler({
  pools: new Map([['gpu', { concurrency: 16, maxQueued: 1e6, maxQueuedPerTenant: 1e6 }]]),
  classes: 3,
  starvationMs: 30_000,
  now: () => now,
})
for (let i = 0; i < 10_000; i++) {
  scheduler.enqueue({
    id: `x${i}`,
    pool: 'gpu',
    priority: i % 3,
    tenant: `t${i % 20}`,
    arrival: now++,
    seq: i,
  })
}
const positionsStarted = performance.now()
scheduler.positions('gpu')
const positionsMs = performance.now() - positionsStarted

console.log(
  JSON.stringify(
    {
      scenario: 'T0',
      turns,
      concurrency,
      createPerSecond: Math.round(turns / createSeconds),
      createLatencyMs: {
        p50: +percentile(latencies, 50).toFixed(1),
        p99: +percentile(latencies, 99).toFixed(1),
      },
      claimAndCompletePerSecond: Math.round(turns / dispatchSeconds),
      positions10kMs: +positionsMs.toFixed(1),
      load: os.loadavg().map((value) => +value.toFixed(1)),
    },
    null,
    2,
  ),
)
