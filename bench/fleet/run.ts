// The fleet bench (issue #17): a burst of questions over as many sessions, answered by worker
// processes through the server's turn scheduler. Two phases on one server: a calm burst, then the
// same burst while one worker process is killed -9 every few seconds (and replaced). Reports, per
// phase: every session answered exactly once (and every resumed answer continuous), wait p50/p99
// per priority class, tenant fairness (max/min share while every tenant had work queued), slot
// utilisation, the sync p99 of unrelated sessions before, during and after the burst (a probe
// process), and what a plain FIFO queue would have given for the same arrivals and answer times.
// The server has a secret: each question's turn is created with its tenant's token (claims tnt,
// pri), workers and the probe with their own. The bench's own processes (question writers,
// workers) run at a lower CPU priority than the server and the probe (--nice), so on one machine
// they cannot starve the server they measure.
//
//   npx tsx bench/fleet/run.ts                       # the size docs/benchmarks.md reports
//   npx tsx bench/fleet/run.ts --questions 10000 --burst-ms 10000   # the issue's full size
//   npx tsx bench/fleet/run.ts --questions 10000 --burst-ms 10000 --sync-only   # the sync goal only, minutes
//
// --sync-only measures the sync of unrelated sessions without waiting for every answer: the calm
// phase only, its baseline, its burst and a drain window of --drain-ms (the workers keep claiming
// and answering during it, so their cost counts), then it stops; the exactly-once checks, waits
// and fairness are skipped (the output says so). --cpu-prof DIR profiles the server process
// (node --cpu-prof; the profile is written when the server exits at the end of the run).
// --trace-gc runs the server under node --trace-gc and sums its GC pauses per window.
// --server-node-arg=FLAG passes FLAG to the server's node (e.g. --server-node-arg=--max-semi-space-size=32).
// --pin puts the server on CPU 0 and every bench process on CPU 1 (taskset); the output says which
// mode ran. The default (unpinned) stays the reference.
// The server runs the compiled JavaScript that `npm start` runs (dist/, built at the start as the
// main suite builds it), not the sources through tsx; --tsx-server runs the sources instead.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { createTurnsClient } from '../../client/agent/fleet/turns-client.js'
import { answerIdOf } from '../../client/agent/fleet/worker.js'
import { createConnection } from '../../client/connection.js'
import { mintToken } from '../../server/auth/tokens.js'
import { appendMessage, readMessages } from '../../shared/conversation/index.js'
import { PRIORITY_CLASSES, turnIdOf } from '../../shared/turns/index.js'
import { startNatsCluster } from '../../test/helpers/nats-cluster.js'
import { CHILD_BUILD_ENV } from '../../test/helpers/node-script.js'
import { startServerProcess } from '../../test/helpers/server-process.js'
import { buildColloquy } from '../lib/targets.js'
import { createRandom } from '../lib/wire.js'
import { answerMsOf, expectedAnswer } from './fleet-model.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

const { values: flags } = parseArgs({
  options: {
    questions: { type: 'string', default: '400' },
    'burst-ms': { type: 'string', default: '10000' },
    workers: { type: 'string', default: '4' },
    slots: { type: 'string', default: '4' },
    tenants: { type: 'string', default: '20' },
    seed: { type: 'string', default: '1' },
    'min-ms': { type: 'string', default: '1000' },
    'max-ms': { type: 'string', default: '3000' },
    'kill-every-ms': { type: 'string', default: '10000' },
    'lease-ms': { type: 'string', default: '6000' },
    'max-attempts': { type: 'string', default: '10' },
    'skip-kills': { type: 'boolean', default: false },
    'probe-sessions': { type: 'string', default: '4' },
    'probe-interval-ms': { type: 'string', default: '100' },
    'baseline-ms': { type: 'string', default: '10000' },
    nice: { type: 'string', default: '10' },
    anonymous: { type: 'boolean', default: false },
    'server-arg': { type: 'string', multiple: true, default: [] },
    'server-node-arg': { type: 'string', multiple: true, default: [] },
    'sync-only': { type: 'boolean', default: false },
    'drain-ms': { type: 'string', default: '10000' },
    'cpu-prof': { type: 'string' },
    pin: { type: 'boolean', default: false },
    'trace-gc': { type: 'boolean', default: false },
    'tsx-server': { type: 'boolean', default: false },
    'probe-own-server': { type: 'boolean', default: false },
    'no-turns': { type: 'boolean', default: false },
    'burst-servers': { type: 'string', default: '1' },
    cluster: { type: 'boolean', default: false },
    'cluster-probe': { type: 'string', default: 'own' },
  },
})
const QUESTIONS = Number(flags.questions)
const BURST_MS = Number(flags['burst-ms'])
const WORKERS = Number(flags.workers)
const SLOTS = Number(flags.slots)
const TENANTS = Number(flags.tenants)
const SEED = Number(flags.seed)
const MIN_MS = Number(flags['min-ms'])
const MAX_MS = Number(flags['max-ms'])
const KILL_EVERY_MS = Number(flags['kill-every-ms'])
const LEASE_MS = Number(flags['lease-ms'])
const PROBE_SESSIONS = Number(flags['probe-sessions'])
const PROBE_INTERVAL_MS = Number(flags['probe-interval-ms'])
const BASELINE_MS = Number(flags['baseline-ms'])
const NICE = Number(flags.nice)
const SYNC_ONLY = flags['sync-only'] === true
/** --sync-only: how long the drain window lasts after the burst (ms). */
const DRAIN_MS = Number(flags['drain-ms'])
const POOL = 'main'
/** Questions being written and created at once (the writers' concurrency). */
const MAX_IN_FLIGHT = 200

/** The tokens of one run (none with --anonymous): a server secret made for the run. */
interface Tokens {
  readonly secret: string
  /** Workers: kind agent, every session. */
  readonly worker: string
  /** The question writers and the probe: write, the bench's sessions. */
  readonly device: string
  /** Per `<tenant>:<class>`: the token whose turns go to that tenant, at best that class. */
  readonly turn: ReadonlyMap<string, string>
  /** `/metrics`: admin, every session. */
  readonly metrics: string
}

async function mintTokens(): Promise<Tokens> {
  const secret = randomBytes(32).toString('base64')
  const common = { secret, ttlSeconds: 24 * 3600 } as const
  const worker = await mintToken({
    ...common,
    peerId: 'bench-worker',
    role: 'write',
    kind: 'agent',
    sessionPrefix: '',
  })
  const device = await mintToken({
    ...common,
    peerId: 'bench-device',
    role: 'write',
    sessionPrefix: 'fleet-',
  })
  const metrics = await mintToken({ ...common, peerId: 'bench-metrics', role: 'admin', sessionPrefix: '' })
  const turn = new Map<string, string>()
  for (let t = 0; t < TENANTS; t++)
    for (let c = 0; c < PRIORITY_CLASSES; c++)
      turn.set(
        `t${t}:${c}`,
        await mintToken({
          ...common,
          peerId: `device-t${t}`,
          role: 'write',
          sessionPrefix: 'fleet-',
          tenant: `t${t}`,
          bestPriority: c,
        }),
      )
  return { secret, worker, device, turn, metrics }
}

// --- The server's own view: CPU and event-loop delay between two scrapes of /metrics. ---

interface ServerSample {
  readonly at: number
  readonly cpuSeconds: number
  /** Event-loop delay since the previous scrape (prom-client resets its histogram on each). */
  readonly lagP99Ms: number
  readonly lagMaxMs: number
}

async function scrapeServer(url: string, token: string | undefined): Promise<ServerSample> {
  const response = await fetch(`${url.replace(/^ws/, 'http')}/metrics`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  })
  const text = await response.text()
  const value = (name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`colloquy_process_${name} `))
    return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return {
    at: Date.now(),
    cpuSeconds: value('process_cpu_seconds_total'),
    lagP99Ms: value('nodejs_eventloop_lag_p99_seconds') * 1000,
    lagMaxMs: value('nodejs_eventloop_lag_max_seconds') * 1000,
  }
}

/**
 * --cluster: resolves once this node schedules the fleet's pool (its /metrics then has the pool's
 * queue gauge, which only the scheduling node reports); throws after 30 s.
 */
async function waitForScheduler(url: string, token: string | undefined): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const response = await fetch(`${url.replace(/^ws/, 'http')}/metrics`, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    })
    const text = await response.text()
    if (
      text.split('\n').some((line) => line.startsWith('colloquy_turns_queued{') && line.includes(`"${POOL}"`))
    )
      return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  throw new Error(`node a did not take the scheduling of pool ${POOL} within 30 s`)
}

/** The server between two scrapes: its CPU share of one core and its event-loop delay in `to`'s period. */
function serverLine(label: string, from: ServerSample, to: ServerSample): string {
  const cpuSeconds = to.cpuSeconds - from.cpuSeconds
  const share = cpuSeconds / Math.max(0.001, (to.at - from.at) / 1000)
  return `server ${label}: ${(share * 100).toFixed(0)} % of one core (${cpuSeconds.toFixed(2)} s of CPU in ${seconds(to.at - from.at)}), event-loop delay p99 ${to.lagP99Ms.toFixed(1)} ms, max ${to.lagMaxMs.toFixed(1)} ms`
}

interface Question {
  readonly index: number
  readonly sessionId: string
  readonly messageId: string
  readonly text: string
  readonly priority: number
  readonly tenant: string
  /** Planned offset in the burst (ms). */
  readonly offsetMs: number
  /** When the server answered the create (local ms). */
  createdAt?: number
  refused?: string
}

interface WorkerRecord {
  readonly t: number
  readonly type: string
  readonly turn?: string
  readonly attempt?: number
  readonly resumedFrom?: number
}

const sortedNumbers = (values: readonly number[]): number[] => [...values].sort((a, b) => a - b)
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number
}
const seconds = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a')

/** Priority classes: 20 % class 0 (interactive), 30 % class 1, 50 % class 2 (batch). */
function classOf(r: number): number {
  if (r < 0.2) return 0
  if (r < 0.5) return 1
  return Math.min(2, PRIORITY_CLASSES - 1)
}

/** Tenants: tenant t0 sends a third of everything, the others share the rest evenly. */
function tenantOf(r: number, s: number): string {
  if (r < 1 / 3) return 't0'
  return `t${1 + Math.floor(s * (TENANTS - 1))}`
}

function planQuestions(phase: string): Question[] {
  const random = createRandom(SEED * 7919 + phase.length)
  const questions: Question[] = []
  for (let i = 0; i < QUESTIONS; i++) {
    questions.push({
      index: i,
      sessionId: `fleet-${phase}-${SEED}-${i}`,
      messageId: `q-${phase}-${i}`,
      text: `question ${i} of ${phase}`,
      priority: classOf(random()),
      tenant: tenantOf(random(), random()),
      offsetMs: random() * BURST_MS,
    })
  }
  return questions.sort((a, b) => a.offsetMs - b.offsetMs)
}

// --- Worker processes. ---

interface WorkerProcess {
  readonly child: ChildProcess
  readonly records: WorkerRecord[]
  readonly name: string
  /** The server it claims from. */
  readonly url: string
}

function startWorker(url: string, name: string, all: WorkerRecord[][], token?: string): WorkerProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/fleet/worker-process.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        URL: url,
        POOL,
        CONCURRENCY: String(SLOTS),
        SEED: String(SEED),
        MIN_MS: String(MIN_MS),
        MAX_MS: String(MAX_MS),
        NAME: name,
        ...(token === undefined ? {} : { TOKEN: token }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  const records: WorkerRecord[] = []
  all.push(records)
  let buffer = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const lines = buffer.split('\n')
    buffer = lines.pop() ?? ''
    for (const line of lines) {
      try {
        records.push(JSON.parse(line) as WorkerRecord)
      } catch {
        // not a record
      }
    }
  })
  return { child, records, name, url }
}

// --- The unrelated sessions' sync latency (bench/fleet/probe-process.ts). ---

interface ProbeSample {
  /** Send time (ms since the epoch). */
  readonly t: number
  readonly ms: number
}

interface Probe {
  readonly child: ChildProcess
  readonly samples: ProbeSample[]
  readonly started: Promise<void>
}

/** Starts the probe at the server's CPU priority (before the bench lowers its own). */
function startProbe(url: string, token: string | undefined): Probe {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/fleet/probe-process.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        URL: url,
        SESSIONS: String(PROBE_SESSIONS),
        INTERVAL_MS: String(PROBE_INTERVAL_MS),
        PREFIX: `fleet-probe-${SEED}`,
        ...(token === undefined ? {} : { TOKEN: token }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  const samples: ProbeSample[] = []
  let buffer = ''
  let onStarted: () => void = () => {}
  const started = new Promise<void>((resolve) => {
    onStarted = resolve
  })
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const lines = buffer.split('\n')
    buffer = lines.pop() ?? ''
    for (const line of lines) {
      try {
        const record = JSON.parse(line) as Partial<ProbeSample> & { type?: string }
        if (record.type === 'started') onStarted()
        else if (typeof record.t === 'number' && typeof record.ms === 'number')
          samples.push({ t: record.t, ms: record.ms })
      } catch {
        // not a record
      }
    }
  })
  return { child, samples, started }
}

/** Latencies of the probe's messages sent in [from, to). */
function probeWindow(probe: Probe, from: number, to: number): number[] {
  return sortedNumbers(probe.samples.filter((s) => s.t >= from && s.t < to).map((s) => s.ms))
}

function syncLine(label: string, latencies: readonly number[], baselineP99?: number): string {
  const p99 = percentile(latencies, 99)
  const ratio =
    baselineP99 === undefined ? '' : `, ${(p99 / baselineP99).toFixed(2)}× the p99 without a burst`
  return `sync of ${PROBE_SESSIONS} unrelated sessions ${label}: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (n ${latencies.length})${ratio}`
}

/** A counting semaphore: at most `limit` holders; the others wait in order, without polling. */
function createSemaphore(limit: number): { acquire(): Promise<void>; release(): void } {
  let held = 0
  const waiting: (() => void)[] = []
  return {
    acquire() {
      if (held < limit) {
        held++
        return Promise.resolve()
      }
      return new Promise<void>((resolve) => waiting.push(resolve))
    },
    release() {
      const next = waiting.shift()
      if (next === undefined) held--
      else next()
    },
  }
}

// --- FIFO, from the same arrivals and answer times. ---

interface Served {
  readonly question: Question
  readonly startAt: number
}

/** Serves `questions` (created at `createdAt`) in arrival order on `slots` slots, each taking its seeded time. */
function simulateFifo(questions: readonly Question[], slots: number): Served[] {
  const ordered = questions
    .filter((q) => q.createdAt !== undefined)
    .sort((a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0))
  const free: number[] = new Array(slots).fill(0)
  const served: Served[] = []
  for (const question of ordered) {
    let slot = 0
    for (let i = 1; i < free.length; i++) if ((free[i] as number) < (free[slot] as number)) slot = i
    const startAt = Math.max(question.createdAt as number, free[slot] as number)
    free[slot] = startAt + answerMsOf(SEED, question.messageId, MIN_MS, MAX_MS)
    served.push({ question, startAt })
  }
  return served
}

/**
 * The same arrivals and answer times on `slots` slots under the server's rules, simplified: strict
 * priority classes, least-recently-served tenant within a class, oldest turn of that tenant (no
 * starvation guard: no turn here waits 30 s). The scheduling alone, without network or start-up costs.
 */
function simulatePriorityFair(questions: readonly Question[], slots: number): Served[] {
  const pending = questions
    .filter((q) => q.createdAt !== undefined)
    .sort((a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0))
  const free: number[] = new Array(slots).fill(0)
  const lastServed = new Map<string, number>()
  const queued: Question[] = []
  const served: Served[] = []
  let next = 0
  let serial = 0
  while (served.length < pending.length) {
    let slot = 0
    for (let i = 1; i < free.length; i++) if ((free[i] as number) < (free[slot] as number)) slot = i
    let now = free[slot] as number
    if (queued.length === 0 && next < pending.length) now = Math.max(now, pending[next]?.createdAt as number)
    while (next < pending.length && (pending[next]?.createdAt as number) <= now)
      queued.push(pending[next++] as Question)
    let best = 0
    for (let i = 1; i < queued.length; i++) {
      const a = queued[i] as Question
      const b = queued[best] as Question
      const key = (q: Question): [number, number, number] => [
        q.priority,
        lastServed.get(`${q.priority}:${q.tenant}`) ?? -1,
        q.createdAt as number,
      ]
      const [ka, kb] = [key(a), key(b)]
      if (ka[0] < kb[0] || (ka[0] === kb[0] && (ka[1] < kb[1] || (ka[1] === kb[1] && ka[2] < kb[2]))))
        best = i
    }
    const question = queued.splice(best, 1)[0] as Question
    lastServed.set(`${question.priority}:${question.tenant}`, serial++)
    free[slot] = now + answerMsOf(SEED, question.messageId, MIN_MS, MAX_MS)
    served.push({ question, startAt: now })
  }
  return served
}

/** max/min of turns served per tenant, counted while every tenant of the class still had work queued. */
function fairness(served: readonly Served[]): number {
  const ratios: number[] = []
  for (let c = 0; c < PRIORITY_CLASSES; c++) {
    const inClass = served.filter((s) => s.question.priority === c).sort((a, b) => a.startAt - b.startAt)
    const remaining = new Map<string, number>()
    for (const s of inClass) remaining.set(s.question.tenant, (remaining.get(s.question.tenant) ?? 0) + 1)
    if (remaining.size < 2) continue
    const count = new Map<string, number>([...remaining.keys()].map((t) => [t, 0]))
    for (const s of inClass) {
      const left = (remaining.get(s.question.tenant) as number) - 1
      remaining.set(s.question.tenant, left)
      count.set(s.question.tenant, (count.get(s.question.tenant) as number) + 1)
      if (left === 0) break // from here on, this tenant has nothing queued in this class
    }
    const counts = [...count.values()]
    ratios.push(Math.max(...counts) / Math.max(1, Math.min(...counts)))
  }
  return ratios.length === 0 ? Number.NaN : Math.max(...ratios)
}

function waitsByClass(served: readonly Served[]): string[] {
  const out: string[] = []
  for (let c = 0; c < PRIORITY_CLASSES; c++) {
    const waits = sortedNumbers(
      served
        .filter((s) => s.question.priority === c)
        .map((s) => s.startAt - (s.question.createdAt as number)),
    )
    out.push(
      `class ${c}: p50 ${seconds(percentile(waits, 50))}, p99 ${seconds(percentile(waits, 99))} (n ${waits.length})`,
    )
  }
  return out
}

// --- One phase. ---

/** Each phase's burst and the window after it (ms since the epoch): the GC summary's windows. */
const phaseWindows: { name: string; from: number; burstEnd: number; to: number }[] = []

/**
 * --trace-gc: the server's GC pauses (node --trace-gc lines on its stdout, timed from its start)
 * in each window: count, total and longest pause, and those of 10 ms or more.
 */
function gcLines(output: string, serverStart: number): string[] {
  const pauses: { at: number; ms: number; kind: string }[] = []
  for (const line of output.split('\n')) {
    const match =
      /\s(\d+) ms: (Scavenge|Mark-Compact|Mark-sweep|Mark-Compact \(reduce\)|Minor Mark-Sweep)\b.*?, ([\d.]+) \/ [\d.]+ ms/.exec(
        line,
      )
    if (match !== null)
      pauses.push({ at: serverStart + Number(match[1]), ms: Number(match[3]), kind: match[2]! })
  }
  const windowLine = (label: string, from: number, to: number): string => {
    const inside = pauses.filter((p) => p.at >= from && p.at < to)
    const total = inside.reduce((sum, p) => sum + p.ms, 0)
    const longest = inside.reduce((max, p) => Math.max(max, p.ms), 0)
    const long = inside.filter((p) => p.ms >= 10)
    const kinds = [...new Set(long.map((p) => p.kind))].join(', ')
    // Per kind: the young generation's scavenges are what --max-semi-space-size changes.
    const byKind = [...new Set(inside.map((p) => p.kind))]
      .map((kind) => {
        const of = inside.filter((p) => p.kind === kind)
        return `${kind} ${of.length} pauses, ${of.reduce((sum, p) => sum + p.ms, 0).toFixed(0)} ms`
      })
      .join(', ')
    return `server GC ${label}: ${inside.length} pauses, ${total.toFixed(0)} ms in all (${((total / Math.max(1, to - from)) * 100).toFixed(1)} % of the window), longest ${longest.toFixed(1)} ms, ${long.length} of 10 ms or more${kinds.length > 0 ? ` (${kinds})` : ''}; ${byKind}`
  }
  return phaseWindows.flatMap((w) => [
    windowLine(`during the ${w.name} burst`, w.from, w.burstEnd),
    windowLine(`after the ${w.name} burst`, w.burstEnd, w.to),
  ])
}

interface PhaseResult {
  readonly name: string
  readonly lines: string[]
}

async function runPhase(
  url: string,
  /** --burst-servers: every server of the burst, `url` first; question i goes to the (i mod n)th. */
  burstUrls: readonly string[],
  phase: string,
  workers: WorkerProcess[],
  allRecords: WorkerRecord[][],
  kills: boolean,
  tokens: Tokens | undefined,
  probe: Probe,
  baselineP99: number,
): Promise<PhaseResult> {
  // The pool's status and the final checks with the worker token; each question's turn with its
  // tenant's token for its class (the server binds tenant and class to it).
  const turns = createTurnsClient({ url, ...(tokens === undefined ? {} : { token: tokens.worker }) })
  const turnsFor = new Map<string, ReturnType<typeof createTurnsClient>>()
  const questions = planQuestions(phase)
  const urlFor = new Map(questions.map((question, i) => [question, burstUrls[i % burstUrls.length]!]))
  const urlOf = (question: Question): string => urlFor.get(question)!
  const turnsOf = (question: Question): ReturnType<typeof createTurnsClient> => {
    const at = urlOf(question)
    if (tokens === undefined && at === url) return turns
    const key = `${at} ${question.tenant}:${question.priority}`
    let client = turnsFor.get(key)
    if (client === undefined) {
      client = createTurnsClient({
        url: at,
        ...(tokens === undefined
          ? {}
          : { token: tokens.turn.get(`${question.tenant}:${question.priority}`) as string }),
      })
      turnsFor.set(key, client)
    }
    return client
  }
  const connections = new Map(
    burstUrls.map((at) => [
      at,
      createConnection({
        url: at,
        WebSocket: WebSocket as never,
        ...(tokens === undefined ? {} : { token: tokens.device }),
      }),
    ]),
  )
  const connection = connections.get(url)!
  const startedAt = Date.now()
  const serverAtStart = await scrapeServer(url, tokens?.metrics)
  const writersCpuAtStart = process.cpuUsage()
  const lines: string[] = []

  // Kills: every KILL_EVERY_MS, kill -9 one worker and start a replacement.
  let killCount = 0
  let killing = true
  const killer = (async () => {
    if (!kills) return
    let next = 0
    while (killing) {
      await new Promise((resolve) => setTimeout(resolve, KILL_EVERY_MS))
      if (!killing) break
      const victim = workers[next % workers.length] as WorkerProcess
      victim.child.kill('SIGKILL')
      killCount++
      workers[next % workers.length] = startWorker(victim.url, `${victim.name}r`, allRecords, tokens?.worker)
      next++
    }
  })()

  // The burst: each question at its planned time, over one multiplexed device connection. At most
  // MAX_IN_FLIGHT at once; the others wait their turn on a semaphore (no polling: 10,000 waiters
  // polling every few ms would cost the machine more than the server's work).
  const inFlight = createSemaphore(MAX_IN_FLIGHT)
  await Promise.all(
    questions.map(async (question) => {
      const delay = startedAt + question.offsetMs - Date.now()
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
      await inFlight.acquire()
      try {
        const handle = connections.get(urlOf(question))!.open(question.sessionId)
        appendMessage(handle.doc, {
          id: question.messageId,
          role: 'user',
          author: { id: `device:${question.tenant}`, kind: 'device' },
          content: question.text,
        })
        await handle.whenFlushed()
        await handle.close()
        // --no-turns, a control: the questions' sync traffic alone (sessions opened, a message
        // written and acked, closed), no turn created, so the pool stays idle.
        if (!flags['no-turns'])
          await turnsOf(question).create({
            sessionId: question.sessionId,
            messageId: question.messageId,
            pool: POOL,
            priority: question.priority,
            tenant: question.tenant,
          })
        question.createdAt = Date.now()
      } catch (error) {
        question.refused = error instanceof Error ? error.message : String(error)
      } finally {
        inFlight.release()
      }
    }),
  )
  const createdIn = Date.now() - startedAt
  const burstEnd = Math.max(Date.now(), startedAt + BURST_MS)
  const serverAtBurstEnd = await scrapeServer(url, tokens?.metrics)
  const writersCpu = process.cpuUsage(writersCpuAtStart)

  // Wait until the pool has nothing queued or running (bounded; one small call a second, not one
  // per turn: 10,000 gets a second would load the server the probe measures), then read each turn.
  const created = questions.filter((q) => q.createdAt !== undefined)
  const deadline = SYNC_ONLY
    ? Date.now() + DRAIN_MS
    : Date.now() + Math.max(120_000, ((created.length * ((MIN_MS + MAX_MS) / 2)) / (WORKERS * SLOTS)) * 4)
  while (Date.now() < deadline) {
    const pool = await turns.pool(POOL)
    if (pool.queued === 0 && pool.running === 0) break
    await new Promise((resolve) => setTimeout(resolve, 1_000))
  }
  const drainEnd = Date.now()
  phaseWindows.push({ name: phase, from: startedAt, burstEnd, to: drainEnd })
  const serverAtDrainEnd = await scrapeServer(url, tokens?.metrics)
  killing = false
  await killer
  const drainedIn = drainEnd - startedAt
  if (SYNC_ONLY) {
    const refused = questions.filter((q) => q.refused !== undefined)
    const left = await turns.pool(POOL)
    for (const each of connections.values()) await each.destroy()
    lines.push(
      `questions ${questions.length}, turns created ${created.length} in ${seconds(createdIn)}, refused ${refused.length}${refused[0] ? ` (${refused[0].refused})` : ''}`,
    )
    lines.push(
      `--sync-only: stopped ${seconds(drainEnd - burstEnd)} after the burst with ${left.queued} queued and ${left.running} running; exactly-once checks, waits, fairness and utilisation NOT measured`,
    )
    lines.push(...syncLines())
    return { name: phase, lines }
  }
  const finalStates = new Map<string, string>()
  for (const q of created) {
    const id = turnIdOf(q.sessionId, q.messageId, POOL)
    const answer = await turns.get(id)
    if (['done', 'cancelled', 'expired', 'failed'].includes(answer.turn.state))
      finalStates.set(id, answer.turn.state)
  }

  // Check every session: exactly one answer, complete, with the whole expected text.
  let answeredOnce = 0
  let missing = 0
  let duplicated = 0
  let broken = 0
  let resumed = 0
  const brokenDetails: string[] = []
  for (const q of created) {
    const handle = connection.open(q.sessionId)
    await handle.whenSynced()
    const answers = readMessages(handle.doc).filter(
      (m) => m.role === 'assistant' && m.metadata.replyTo === q.messageId,
    )
    await handle.close()
    if (answers.length === 0) missing++
    else if (answers.length > 1) duplicated++
    else {
      const answer = answers[0]
      const expected = await expectedAnswer(q.text)
      if (
        answer?.id !== answerIdOf({ pool: POOL, messageId: q.messageId }) ||
        answer.status !== 'complete' ||
        answer.content !== expected
      )
        broken++
      else answeredOnce++
      if (answer !== undefined && answer.content !== expected && brokenDetails.length < 3)
        brokenDetails.push(
          `${q.messageId}: status ${answer.status}, ${answer.content.length}/${expected.length} chars, turn ${finalStates.get(turnIdOf(q.sessionId, q.messageId, POOL))}`,
        )
      if (Array.isArray(answer?.metadata.resumes)) resumed++
    }
  }
  await connection.destroy()

  // Worker records of this phase: first claim per turn, and the busy time of every attempt.
  const ids = new Map(created.map((q) => [turnIdOf(q.sessionId, q.messageId, POOL), q]))
  const firstClaim = new Map<string, number>()
  let busyMs = 0
  let firstStart = Number.POSITIVE_INFINITY
  let lastEnd = 0
  for (const records of allRecords) {
    const open = new Map<string, number>()
    for (const record of records) {
      if (record.turn === undefined || !ids.has(record.turn)) continue
      if (record.type === 'claimed') {
        if (!firstClaim.has(record.turn) || (firstClaim.get(record.turn) as number) > record.t)
          firstClaim.set(record.turn, record.t)
        open.set(record.turn, record.t)
        firstStart = Math.min(firstStart, record.t)
      } else if (['completed', 'cancelled', 'failed', 'lost', 'released'].includes(record.type)) {
        const from = open.get(record.turn)
        if (from !== undefined) {
          busyMs += record.t - from
          lastEnd = Math.max(lastEnd, record.t)
          open.delete(record.turn)
        }
      }
    }
  }
  const served: Served[] = []
  for (const [id, q] of ids) {
    const at = firstClaim.get(id)
    if (at !== undefined) served.push({ question: q, startAt: at })
  }
  const slotsTotal = WORKERS * SLOTS
  const utilisation = busyMs / (slotsTotal * Math.max(1, lastEnd - firstStart))
  const fifo = simulateFifo(created, slotsTotal)
  const modelled = simulatePriorityFair(created, slotsTotal)
  const refused = questions.filter((q) => q.refused !== undefined)

  lines.push(
    `questions ${questions.length}, turns created ${created.length} in ${seconds(createdIn)}, refused ${refused.length}${refused[0] ? ` (${refused[0].refused})` : ''}`,
  )
  lines.push(
    `final: ${[...finalStates.values()].filter((s) => s === 'done').length} done of ${created.length}, all final in ${seconds(drainedIn)}`,
  )
  lines.push(
    `answers: ${answeredOnce} exactly once and whole, ${missing} missing, ${duplicated} duplicated, ${broken} wrong/incomplete; ${resumed} resumed by another worker`,
  )
  if (brokenDetails.length > 0) lines.push(`  not whole: ${brokenDetails.join('; ')}`)
  if (kills) lines.push(`workers killed -9: ${killCount}`)
  lines.push(`wait (create → first claim), measured: ${waitsByClass(served).join('; ')}`)
  lines.push(
    `wait, plain FIFO from the same arrivals and answer times (simulated): ${waitsByClass(fifo).join('; ')}`,
  )
  lines.push(
    `wait, the server's rules on the same arrivals (simulated, no overheads): ${waitsByClass(modelled).join('; ')}`,
  )
  lines.push(
    `tenant fairness max/min (while every tenant of a class had work queued): measured ${fairness(served).toFixed(2)}, rules simulated ${fairness(modelled).toFixed(2)}, FIFO ${fairness(fifo).toFixed(2)}`,
  )
  lines.push(
    `slot utilisation: ${(utilisation * 100).toFixed(1)} % of ${slotsTotal} slots from the first claim to the last end`,
  )
  lines.push(...syncLines())
  return { name: phase, lines }

  /** The sync windows of the phase and the server's (and the writers') CPU in each. */
  function syncLines(): string[] {
    // This process during the burst: the question writers (and the pace they could keep).
    const writersShare =
      (writersCpu.user + writersCpu.system) / 1000 / Math.max(1, serverAtBurstEnd.at - serverAtStart.at)
    const drainLabel = SYNC_ONLY ? `in the ${seconds(DRAIN_MS)} after the burst` : 'while the pool drains'
    return [
      syncLine('during the burst', probeWindow(probe, startedAt, burstEnd), baselineP99),
      serverLine('during the burst', serverAtStart, serverAtBurstEnd),
      `question writers (this process) during the burst: ${(writersShare * 100).toFixed(0)} % of one core`,
      syncLine(`after the burst, ${drainLabel}`, probeWindow(probe, burstEnd, drainEnd), baselineP99),
      serverLine(drainLabel, serverAtBurstEnd, serverAtDrainEnd),
    ]
  }
}

/**
 * --pin: the server on CPU 0, this process (the question writers) and every process it starts
 * from now on (the probe, the workers) on CPU 1, with `taskset -a` (every thread). Closer to a
 * deployment where the devices and the model workers are other machines. Returns the mode run.
 */
function pinCores(serverPid: number | undefined): string {
  const cores = os.availableParallelism()
  if (serverPid === undefined || cores < 2) {
    console.error(`fleet bench: --pin needs 2 CPUs and a server pid (${cores} CPUs); running unpinned`)
    return 'unpinned (--pin refused)'
  }
  try {
    execFileSync('taskset', ['-a', '-cp', '0', String(serverPid)], { stdio: 'ignore' })
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' })
  } catch (error) {
    console.error(`fleet bench: taskset failed (${String(error)}); running unpinned`)
    return 'unpinned (taskset failed)'
  }
  return `pinned: the server on CPU 0, the writers, probe and workers on CPU 1 (of ${cores})`
}

async function main(): Promise<void> {
  if (!flags['tsx-server']) {
    // What users run: `npm start` serves dist/server/main.js. startServerProcess starts the build
    // that CHILD_BUILD_ENV names (test/helpers/node-script.ts); tsx would add its loader and
    // esbuild's keep-names wrappers (a `__name` call per named closure) to what is measured.
    buildColloquy()
    process.env[CHILD_BUILD_ENV] = path.join(ROOT, 'dist')
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-fleet-'))
  const tokens = flags.anonymous ? undefined : await mintTokens()
  const nodeArgs = [
    ...(flags['cpu-prof'] === undefined
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(flags['cpu-prof'])}`]),
    ...(flags['trace-gc'] ? ['--trace-gc'] : []),
    ...(flags['server-node-arg'] ?? []),
  ]
  const serverStart = Date.now()
  const startServerWith = (data: string, args: string[], extra: string[]) =>
    startServerProcess(
      [
        '--data',
        data,
        ...extra,
        '--max-connection-attempts-per-ip',
        '0',
        '--document-opens-per-second',
        '0',
        '--max-documents-per-socket',
        '0',
        '--turn-pools',
        `${POOL}:${WORKERS * SLOTS}`,
        '--turn-lease-ms',
        String(LEASE_MS),
        '--turn-max-attempts',
        String(flags['max-attempts']),
        ...(flags['server-arg'] ?? []),
      ],
      {
        timeoutMs: 30_000,
        ...(tokens === undefined ? {} : { env: { COLLOQUY_SECRET: tokens.secret } }),
        ...(args.length === 0 ? {} : { nodeArgs: args }),
      },
    )
  const startServer = (data: string, args: string[]) => startServerWith(data, args, [])
  // --cluster, a deployment rather than a control: a 3-server NATS JetStream cluster and two
  // Colloquy nodes on it (this machine, as operations.md "Bursts of new sessions" advises for a
  // flood): the burst, the workers and the pool's scheduling on node a, the probe's sessions on
  // node b (--cluster-probe own, the default) or on node a too (--cluster-probe same, the
  // comparison: everything on one node of the same cluster). Node a starts alone and takes the
  // pool's key before node b starts, so b never schedules it.
  if (flags.cluster && !SYNC_ONLY) throw new Error('--cluster needs --sync-only (the checks read one server)')
  if (flags.cluster && !['own', 'same'].includes(flags['cluster-probe']))
    throw new Error('--cluster-probe is own or same')
  const nats = flags.cluster ? await startNatsCluster() : undefined
  if (nats !== undefined) await nats.waitForMetaLeader(30_000)
  const clusterArgs = (nodeId: string): string[] =>
    nats === undefined ? [] : ['--nats', nats.urls.join(','), '--node-id', nodeId]
  const server = await startServerWith(dataDir, nodeArgs, clusterArgs('a'))
  const url = server.url
  if (nats !== undefined) await waitForScheduler(url, tokens?.metrics)
  const clusterProbeDir =
    nats !== undefined && flags['cluster-probe'] === 'own'
      ? await mkdtemp(path.join(os.tmpdir(), 'colloquy-fleet-b-'))
      : undefined
  const clusterProbeServer =
    clusterProbeDir === undefined ? undefined : await startServerWith(clusterProbeDir, [], clusterArgs('b'))
  // --probe-own-server, a control: the probe's sessions on a second server process of their own
  // (same build and flags, no profiling), the burst and the workers on the first. What is left of
  // the burst in the probe's figures is then the machine (2 shared cores), not the server's event
  // loop: the floor any design that serves sessions from more than one event loop could reach here.
  const probeDir = flags['probe-own-server']
    ? await mkdtemp(path.join(os.tmpdir(), 'colloquy-fleet-probe-'))
    : undefined
  const probeServer = probeDir === undefined ? clusterProbeServer : await startServer(probeDir, [])
  // --burst-servers N, a control: the burst (questions i mod N) and the workers spread over N server
  // processes, the probe on the first: its event loop then carries 1/N of the burst while the
  // machine carries all of it (what serving sessions from N event loops would give here). The
  // server figures are the first server's.
  const burstServerCount = Math.max(1, Number(flags['burst-servers']))
  if (burstServerCount > 1 && !SYNC_ONLY)
    throw new Error('--burst-servers needs --sync-only (the checks read one server)')
  const extraDirs: string[] = []
  const extraServers: Awaited<ReturnType<typeof startServer>>[] = []
  for (let i = 1; i < burstServerCount; i++) {
    extraDirs.push(await mkdtemp(path.join(os.tmpdir(), 'colloquy-fleet-extra-')))
    extraServers.push(await startServer(extraDirs.at(-1)!, []))
  }
  const burstUrls = [url, ...extraServers.map((extra) => extra.url)]
  // Before any other bench process starts: the probe and the workers inherit this process's CPUs.
  const cpuMode = flags.pin
    ? pinCores(server.child.pid)
    : 'unpinned (the server shares every core with its load)'
  const allRecords: WorkerRecord[][] = []
  const workers: WorkerProcess[] = []
  const probe = startProbe(probeServer?.url ?? url, tokens?.device)
  try {
    // The server and the probe keep the default CPU priority; this process (the question writers,
    // the checks) and the workers it starts from now on run `NICE` lower: on one machine the
    // bench's own load must not take the CPU the server needs (on a real deployment the devices
    // and the model workers are other machines).
    let nice = 0
    if (NICE > 0) {
      try {
        os.setPriority(Math.min(19, NICE))
        nice = Math.min(19, NICE)
      } catch (error) {
        console.error(
          `fleet bench: could not lower its CPU priority (${String(error)}); running at the default`,
        )
      }
    }
    await probe.started
    for (let i = 0; i < WORKERS; i++)
      workers.push(startWorker(burstUrls[i % burstUrls.length]!, `w${i}`, allRecords, tokens?.worker))
    // The burst starts once every worker process runs (tsx start-up is seconds on a busy machine).
    const bootDeadline = Date.now() + 60_000
    while (workers.some((w) => !w.records.some((r) => r.type === 'started')) && Date.now() < bootDeadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    // The baseline: the same probe with the workers idle (long-polling), no question.
    const baselineFrom = Date.now()
    const serverAtBaseline = await scrapeServer(url, tokens?.metrics)
    await new Promise((resolve) => setTimeout(resolve, BASELINE_MS))
    const baseline = probeWindow(probe, baselineFrom, Date.now())
    const serverAfterBaseline = await scrapeServer(url, tokens?.metrics)
    const baselineP99 = percentile(baseline, 99)
    const results: PhaseResult[] = []
    results.push(
      await runPhase(url, burstUrls, 'calm', workers, allRecords, false, tokens, probe, baselineP99),
    )
    if (!flags['skip-kills'] && !SYNC_ONLY)
      results.push(
        await runPhase(url, burstUrls, 'kills', workers, allRecords, true, tokens, probe, baselineP99),
      )
    if (SYNC_ONLY)
      console.log(
        `fleet bench --sync-only: the calm phase only, stopped ${seconds(DRAIN_MS)} after its burst; answers not checked`,
      )
    console.log(
      `fleet bench: ${QUESTIONS} questions over ${QUESTIONS} sessions in ${seconds(BURST_MS)}, ${WORKERS} worker processes × ${SLOTS} slots, answers ${MIN_MS}-${MAX_MS} ms (seed ${SEED}), ${PRIORITY_CLASSES} classes, ${TENANTS} tenants, lease ${LEASE_MS} ms, ${tokens === undefined ? 'anonymous' : 'tenant tokens'}, bench processes at nice ${nice}`,
    )
    console.log(`fleet bench: CPUs ${cpuMode}`)
    console.log(
      `fleet bench: the server runs ${flags['tsx-server'] ? 'the sources through tsx (--tsx-server)' : 'dist/ (compiled, what npm start runs)'}`,
    )
    if (burstServerCount > 1)
      console.log(
        `fleet bench: --burst-servers ${burstServerCount}: the burst and the workers spread over ${burstServerCount} server processes, the probe on the first (a control, not the product); server figures are the first's`,
      )
    if (probeDir !== undefined)
      console.log(
        'fleet bench: --probe-own-server: the probe on a second server process (a control, not the product)',
      )
    if (nats !== undefined)
      console.log(
        `fleet bench: --cluster: 3 nats-servers (JetStream), Colloquy node a (the burst, the workers, the pool's scheduling)${clusterProbeServer === undefined ? ', the probe on node a too (--cluster-probe same)' : ', node b (the probe)'}; the server lines are node a's`,
      )
    console.log(syncLine('without a burst (workers idle)', baseline))
    console.log(serverLine('without a burst', serverAtBaseline, serverAfterBaseline))
    for (const result of results) {
      console.log(`\n[${result.name}]`)
      for (const line of result.lines) console.log(`  ${line}`)
    }
    if (flags['trace-gc']) for (const line of gcLines(server.output(), serverStart)) console.log(line)
  } finally {
    for (const worker of workers) worker.child.kill('SIGKILL')
    probe.child.kill('SIGTERM')
    // A profiled server must exit on its own for node to write the profile.
    server.child.kill(flags['cpu-prof'] === undefined ? 'SIGKILL' : 'SIGTERM')
    await server.exited
    if (probeServer !== undefined) {
      probeServer.child.kill('SIGKILL')
      await probeServer.exited
    }
    if (probeDir !== undefined) await rm(probeDir, { recursive: true, force: true })
    if (clusterProbeDir !== undefined) await rm(clusterProbeDir, { recursive: true, force: true })
    await nats?.stop()
    for (const extra of extraServers) {
      extra.child.kill('SIGKILL')
      await extra.exited
    }
    for (const dir of extraDirs) await rm(dir, { recursive: true, force: true })
    if (flags['cpu-prof'] !== undefined)
      console.log(`server CPU profile in ${path.resolve(flags['cpu-prof'])}`)
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
