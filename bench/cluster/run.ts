// Cluster benchmark (issue 15): 3 Colloquy nodes on a 3-node JetStream cluster (R3) against 3
// Hocuspocus nodes with extension-redis on a redis-server, side by side in one run. Writers on
// one node, readers on the two others. Writes bench/results/cluster-<time>.{json,md}.
//
//   npx tsx bench/cluster/run.ts                     # about 4–5 minutes
//   npx tsx bench/cluster/run.ts --targets colloquy-nats --seed 7
//
// Prerequisites: nats-server and redis-server from Debian (`apt-get install -y nats-server
// redis-server`); a target whose server is missing is skipped with a message.

import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { formatJsApiCounts, type JsApiCounter, startJsApiCounter } from '../../test/helpers/js-api-counter.js'
import { renderMarkdown, type SuiteResult } from '../lib/report.js'
import { runEnvironment } from '../lib/run-meta.js'
import { round } from '../lib/stats.js'
import { buildColloquy, ROOT, type RunningServer } from '../lib/targets.js'
import { type LoadProcess, startLoadProcess } from '../load/pool.js'
import type { Row } from '../scenarios/context.js'
import { runStream, type StreamOptions } from '../scenarios/stream.js'
import {
  type BenchCluster,
  CLUSTER_TARGETS,
  type ClusterTargetId,
  missingPrerequisite,
  startBenchCluster,
} from './nodes.js'

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', default: false },
    targets: { type: 'string' },
    scenarios: { type: 'string', default: 'C1,C2,C3' },
    'c1-seconds': { type: 'string', default: '10' },
    'c1-rate': { type: 'string', default: '1000' },
    ramp: { type: 'string', default: '1000,2000,3000,4000,6000,8000,10000,12000,16000,24000' },
    'ramp-all': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'js-api': { type: 'boolean', default: false },
    'nats-pprof': { type: 'string' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: path.join(ROOT, 'bench/results') },
  },
})
if (values.help) {
  process.stdout.write(`npx tsx bench/cluster/run.ts [options]

  --targets LIST      colloquy-nats,hocuspocus-redis (default: both)
  --scenarios LIST    C2,C3 to add to [C1], which always runs (default: C1,C2,C3). C1 cross-node
                      latency, C2 rate ramp, C3 kill -9
  --c1-seconds N      length of the measured [C1] run (default 10; a 4 s warm-up comes first)
  --c1-rate N         [C1] updates/s over its 10 sessions (default 1000)
  --ramp LIST         [C2]'s steps in updates/s, each 4 s, stopping at the first not sustained
                      (default 1000,2000,3000,4000,6000,8000,10000,12000,16000,24000)
  --ramp-all          run every [C2] step, sustained or not (to compare CPU and messages per
                      update step by step between two builds on a loaded machine)
  (each [C1] row also says how long each node and load process waited for a core: /proc schedstat)
  --cpu-prof DIR      run each Colloquy node with node --cpu-prof into DIR (written at the stop)
  --js-api            count the JetStream API requests during the measured [C1] run, by kind
                      (a subscription on $JS.API.>): column jsApiPerS, detail on stderr
  --nats-pprof DIR    CPU-profile each nats-server (Go pprof, prof_port) over the measured [C1]
                      run into DIR/<server>.pb.gz: go tool pprof -top -nodecount=40 DIR/n1.pb.gz
  --seed N            (default 42)
  --out DIR           where cluster-<time>.{json,md} go (default bench/results)

[C1] also reports, per Colloquy node, its event-loop delay during the measured run (max and p99,
from the node's /metrics), to tell a node's stall from the rest.
`)
  process.exit(0)
}
const seed = Number(values.seed)
const scenarios = new Set(values.scenarios.split(',').map((name) => name.trim().toUpperCase()))
const c1Ms = Number(values['c1-seconds']) * 1000
const c1Rate = Number(values['c1-rate'])
const cpuProfArgs =
  values['cpu-prof'] === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.resolve(values['cpu-prof'])]
const targets = (values.targets?.split(',').map((id) => id.trim()) ??
  Object.keys(CLUSTER_TARGETS)) as ClusterTargetId[]
for (const id of targets) if (!(id in CLUSTER_TARGETS)) throw new Error(`unknown cluster target ${id}`)

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}

/** The cluster as runStream sees one server: writers on node 1, CPU summed over every node. */
function asServer(cluster: BenchCluster): RunningServer {
  const writerNode = cluster.nodes[0]!
  return {
    id: cluster.id === 'colloquy-nats' ? 'colloquy' : 'hocuspocus',
    pid: writerNode.pid() ?? -1,
    url: writerNode.url,
    httpUrl: writerNode.url.replace('ws:', 'http:'),
    framing: cluster.framing,
    output: () => '',
    cpuMicros: () => cluster.nodesCpuMicros(),
    rssBytes: () => Number.NaN,
    isRunning: () => writerNode.isRunning(),
    stop: async () => {},
  }
}

/**
 * One cross-node run: the stream row plus the broker's CPU per update and the acks. `afterRun`
 * runs as soon as the stream is done, before this reads the nodes' /metrics (a scrape resets
 * their event-loop figures).
 */
async function crossNodeRun(
  cluster: BenchCluster,
  writer: LoadProcess,
  readers: LoadProcess,
  options: StreamOptions,
  afterRun?: () => Promise<void>,
): Promise<Row & { sustainedCheck: boolean }> {
  // Every node holds the sessions before the clock starts: an idle client on the writers' node
  // loads them there first (Hocuspocus relays a node's updates over Redis only once the document
  // is loaded and subscribed; the first ones otherwise reach the others merged, a second later).
  const docs = Array.from({ length: options.sessions }, (_, i) => `${options.name}-${options.seed}-${i}`)
  await writer.request(
    { type: 'idle', url: cluster.nodes[0]!.url, framing: cluster.framing, docs, perDoc: 1, batch: 0 },
    'connected',
    60_000,
  )
  const broker0 = cluster.brokerCpuMicros()
  const messages0 = await cluster.brokerMessagesIn?.()
  const relay0 = await relaySent(cluster)
  const result = await runStream(asServer(cluster), writer, readers, {
    ...options,
    readerUrls: cluster.nodes.slice(1).map((node) => node.url),
    pauseBeforeWriteMs: 1_000,
    verifyUrls: cluster.nodes.map((node) => node.url),
  })
  // Across nodes a target may deliver some updates merged (fewer frames, same content): the check
  // is the content every node serves to a fresh client; the share of frames is reported.
  const correct = result.contentVerified && result.disconnects === 0
  const brokerMicros = cluster.brokerCpuMicros() - broker0
  await afterRun?.()
  const messages1 = messages0 === undefined ? undefined : await cluster.brokerMessagesIn?.()
  const relay1 = relay0 === undefined ? undefined : await relaySent(cluster)
  const acked = !cluster.acks || (options.ackEvery > 0 && result.acksMissing === 0)
  return {
    offered: result.offeredRate,
    sent: result.sentRate,
    p50Ms: result.latencyP50Ms,
    p99Ms: result.latencyP99Ms,
    maxMs: result.latencyMaxMs,
    drainMs: result.drainMs,
    framesPct: round((100 * result.deliveries) / Math.max(1, result.deliveriesExpected), 1),
    nodesCpuUsPerUpdate: result.serverCpuMicrosPerUpdate,
    brokerCpuUsPerUpdate: round(brokerMicros / Math.max(1, result.updatesSent), 1),
    // Messages the nats-servers received per update (relay, announcements, log appends and their
    // replication, requests, heartbeats; from clients and routes), from their /varz. Less noisy
    // than CPU on a loaded machine, not independent of it: batches grow with the loop's turns.
    ...(messages0 === undefined || messages1 === undefined
      ? {}
      : { brokerMsgsInPerUpdate: round((messages1 - messages0) / Math.max(1, result.updatesSent), 2) }),
    // Updates per relay message (the relay sends one per session per event-loop turn).
    ...(relay0 === undefined || relay1 === undefined
      ? {}
      : {
          relayUpdatesPerMsg: round(
            (relay1.updates - relay0.updates) / Math.max(1, relay1.messages - relay0.messages),
            2,
          ),
        }),
    ...(cluster.acks && options.ackEvery > 0
      ? { ackP50Ms: result.ackP50Ms, ackP99Ms: result.ackP99Ms, acksMissing: result.acksMissing }
      : {}),
    correct,
    sustainedCheck:
      correct &&
      result.complete &&
      result.latencyP99Ms <= 50 &&
      result.drainMs <= 1_000 &&
      acked &&
      result.sentRate >= 0.95 * options.totalRate,
  }
}

const RAMP = values.ramp.split(',').map((step) => Number(step.trim()))
if (RAMP.some((step) => !Number.isInteger(step) || step <= 0))
  throw new Error(`--ramp: positive integers, got ${values.ramp}`)

/** Nanoseconds the main thread of `pid` has waited on a run queue (runnable, not running) so far. */
function runQueueWaitNs(pid: number | undefined): number {
  if (pid === undefined || pid < 0) return Number.NaN
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1])
  } catch {
    return Number.NaN
  }
}

/**
 * Share of a window each process spent runnable but not running (waiting for a core): a stall the
 * process did not cause. Start it before the window, call the result after: `c1 12%, …`.
 */
function runQueueWait(processes: readonly { name: string; pid: () => number | undefined }[]): () => string {
  const started = performance.now()
  const before = processes.map((process) => runQueueWaitNs(process.pid()))
  return () => {
    const wallNs = (performance.now() - started) * 1e6
    return processes
      .map((process, i) => {
        const waited = runQueueWaitNs(process.pid()) - before[i]!
        return `${process.name} ${Number.isFinite(waited) ? Math.round((100 * waited) / wallNs) : '?'}%`
      })
      .join(', ')
  }
}

/**
 * Each Colloquy node's event-loop delay since the last read (prom-client resets its histogram at
 * every scrape): `c1 max/p99` in ms. Empty for targets without Colloquy's /metrics.
 */
async function eventLoopDelays(cluster: BenchCluster): Promise<string> {
  if (cluster.id !== 'colloquy-nats') return ''
  const read = async (url: string): Promise<string> => {
    const text = await (await fetch(`${url.replace('ws:', 'http:')}/metrics`)).text()
    const value = (name: string): number =>
      Number(
        text.match(new RegExp(`^colloquy_process_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm'))?.[1],
      )
    return `${round(value('max') * 1000, 1)}/${round(value('p99') * 1000, 1)}`
  }
  const nodes = cluster.nodes.filter((node) => node.isRunning())
  const figures = await Promise.all(nodes.map((node) => read(node.url).catch(() => '?')))
  return nodes.map((node, i) => `${node.name} ${figures[i]}`).join(', ')
}

/** The relay's updates and update messages sent so far, summed over the running Colloquy nodes. */
async function relaySent(cluster: BenchCluster): Promise<{ updates: number; messages: number } | undefined> {
  if (cluster.id !== 'colloquy-nats') return undefined
  const sent = { updates: 0, messages: 0 }
  for (const node of cluster.nodes.filter((each) => each.isRunning())) {
    const text = await (await fetch(`${node.url.replace('ws:', 'http:')}/metrics`)).text()
    sent.updates += Number(/^colloquy_relay_updates_sent_total (\S+)$/m.exec(text)?.[1] ?? 0)
    sent.messages += Number(
      /^colloquy_relay_messages_sent_total\{kind="update"\} (\S+)$/m.exec(text)?.[1] ?? 0,
    )
  }
  return sent
}

/** A counter of the Colloquy nodes' /metrics, summed over its labels and the running nodes. */
async function counterSum(cluster: BenchCluster, name: string): Promise<number> {
  if (cluster.id !== 'colloquy-nats') return Number.NaN
  const pattern = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm')
  let sum = 0
  for (const node of cluster.nodes.filter((each) => each.isRunning())) {
    const text = await (await fetch(`${node.url.replace('ws:', 'http:')}/metrics`)).text()
    for (const match of text.matchAll(pattern)) sum += Number(match[1])
  }
  return sum
}

/** Updates the Colloquy nodes read back from the log to fill relay gaps, summed (all reasons). */
const repairedUpdates = (cluster: BenchCluster): Promise<number> =>
  counterSum(cluster, 'colloquy_relay_repaired_updates_total')

/** Compaction runs of the Colloquy nodes (every result), summed. */
const compactionRuns = (cluster: BenchCluster): Promise<number> =>
  counterSum(cluster, 'colloquy_compaction_runs_total')

async function runTarget(
  id: ClusterTargetId,
  workDir: string,
  writer: LoadProcess,
  readers: LoadProcess,
): Promise<{ latency: Row[]; ramp: Row[]; recovery: Row[] }> {
  const dataDir = path.join(workDir, id)
  await mkdir(dataDir, { recursive: true })
  const natsPprofDir = values['nats-pprof'] === undefined ? undefined : path.resolve(values['nats-pprof'])
  const cluster = await startBenchCluster(id, dataDir, {
    colloquyNodeArgs: cpuProfArgs,
    natsProfile: natsPprofDir !== undefined,
  })
  const ackEvery = cluster.acks ? 10 : 0
  const base = { readersPerSession: 2, seed, drainTimeoutMs: 3_000, settleMs: 1_000 }
  try {
    // [C1] cross-node latency at a steady rate, after a discarded warm-up.
    log(`[C1] ${id}: warm-up`)
    await crossNodeRun(cluster, writer, readers, {
      ...base,
      name: 'c1-warmup',
      sessions: 10,
      totalRate: 1000,
      durationMs: 4_000,
      ackEvery,
    })
    log(`[C1] ${id}: ${c1Rate} updates/s for ${c1Ms / 1000} s`)
    await eventLoopDelays(cluster)
    const repairedBefore = await repairedUpdates(cluster)
    const compactionsBefore = await compactionRuns(cluster)
    const waits = runQueueWait([
      ...cluster.nodes.map((node) => ({ name: node.name, pid: () => node.pid() })),
      { name: 'writer', pid: () => writer.pid },
      { name: 'readers', pid: () => readers.pid },
    ])
    let loopDelays = ''
    const natsUrl = cluster.natsUrls?.[0]
    const apiCounter: JsApiCounter | undefined =
      values['js-api'] && natsUrl !== undefined ? await startJsApiCounter(natsUrl) : undefined
    const apiStarted = performance.now()
    // The profiles cover the measured run: the stream's pause, writes and drain (~c1 + 2 s).
    const profiles =
      natsPprofDir === undefined
        ? undefined
        : profileNatsServers(cluster, natsPprofDir, Math.round(c1Ms / 1000) + 1)
    const { sustainedCheck: _, ...measured } = await crossNodeRun(
      cluster,
      writer,
      readers,
      { ...base, name: 'c1', sessions: 10, totalRate: c1Rate, durationMs: c1Ms, ackEvery },
      async () => {
        loopDelays = await eventLoopDelays(cluster)
      },
    )
    const runQueue = waits()
    const api = await apiCounter?.stop()
    const apiSeconds = (performance.now() - apiStarted) / 1000
    if (api !== undefined)
      log(`[C1] ${id}: JetStream API requests in ${round(apiSeconds, 1)} s: ${formatJsApiCounts(api.byKind)}`)
    if (profiles !== undefined) log(`[C1] ${id}: nats-server profiles: ${(await profiles).join(', ')}`)
    const latency: Row = {
      ...measured,
      ...(api === undefined ? {} : { jsApiPerS: round(api.total / apiSeconds, 1) }),
      ...(loopDelays === '' ? {} : { eventLoopMaxP99Ms: loopDelays }),
      runQueueWait: runQueue,
      ...(cluster.id === 'colloquy-nats'
        ? {
            repairedFromLog: (await repairedUpdates(cluster)) - repairedBefore,
            compactions: (await compactionRuns(cluster)) - compactionsBefore,
          }
        : {}),
    }
    log(`[C1] ${id}: ${JSON.stringify(latency)}`)
    if (!scenarios.has('C2') && !scenarios.has('C3')) return { latency: [latency], ramp: [], recovery: [] }

    // [C2] ramp until p99 > 50 ms, a backlog, missing acks or the generator falls short.
    const ramp: Row[] = []
    for (const [step, rate] of (scenarios.has('C2') ? RAMP : []).entries()) {
      const { sustainedCheck, ...row } = await crossNodeRun(cluster, writer, readers, {
        ...base,
        name: `c2-${step}`,
        sessions: 20,
        totalRate: rate,
        durationMs: 4_000,
        ackEvery,
      }).catch((error: unknown) => ({
        offered: rate,
        error: String(error).slice(0, 200),
        sustainedCheck: false,
      }))
      ramp.push({ ...row, sustained: sustainedCheck })
      log(`[C2] ${id}: ${rate}/s p99 ${String((row as Row).p99Ms)} ms, sustained ${sustainedCheck}`)
      if (!sustainedCheck && !values['ramp-all']) break
    }

    // [C3] kill -9 of the writers' node: time to the first write through another node (acked for
    // Colloquy, delivered for Hocuspocus) and until clients on both surviving nodes have all text.
    const recovery = scenarios.has('C3') ? [await recoveryRun(cluster, writer, readers)] : []
    return { latency: [latency], ramp, recovery }
  } finally {
    await cluster.stop()
  }
}

/**
 * Fetches a CPU profile of `seconds` from every nats-server's pprof port into `dir`; resolves with
 * the files written (a failed fetch is logged and skipped: the run goes on).
 */
async function profileNatsServers(cluster: BenchCluster, dir: string, seconds: number): Promise<string[]> {
  await mkdir(dir, { recursive: true })
  const ports = cluster.natsProfPorts ?? []
  const files = await Promise.all(
    ports.map(async (port, i) => {
      const file = path.join(dir, `n${i + 1}.pb.gz`)
      try {
        const response = await fetch(`http://127.0.0.1:${port}/debug/pprof/profile?seconds=${seconds}`, {
          signal: AbortSignal.timeout((seconds + 30) * 1000),
        })
        await writeFile(file, new Uint8Array(await response.arrayBuffer()))
        return file
      } catch (error) {
        log(`nats-server n${i + 1} profile failed: ${String(error)}`)
        return undefined
      }
    }),
  )
  return files.filter((file): file is string => file !== undefined)
}

async function recoveryRun(cluster: BenchCluster, writer: LoadProcess, readers: LoadProcess): Promise<Row> {
  const [first, second, third] = cluster.nodes as [
    BenchCluster['nodes'][0],
    BenchCluster['nodes'][0],
    BenchCluster['nodes'][0],
  ]
  const framing = cluster.framing
  const epochMs = Date.now()
  const docs = Array.from({ length: 5 }, (_, i) => `c3-${seed}-${i}`)
  const written = await writer.request(
    {
      type: 'write',
      url: first.url,
      framing,
      docs,
      ratePerDoc: 100,
      durationMs: 2_000,
      epochMs,
      seed,
      ackEvery: cluster.acks ? 1 : 0,
      keepText: true,
    },
    'written',
    60_000,
  )
  await writer.request({ type: 'close' }, 'closed', 30_000)
  const killedAt = performance.now()
  await first.kill()
  // First write through a surviving node, on a new session (acked when the target acks).
  let firstWriteMs = Number.NaN
  // Bounded: 30 s per phase.
  const writeDeadline = performance.now() + 30_000
  for (let attempt = 0; performance.now() < writeDeadline && Number.isNaN(firstWriteMs); attempt++) {
    try {
      const after = await writer.request(
        {
          type: 'write',
          url: second.url,
          framing,
          docs: [`c3-after-${seed}-${attempt}`],
          ratePerDoc: 50,
          durationMs: 40,
          epochMs,
          seed,
          ackEvery: cluster.acks ? 1 : 0,
          keepText: true,
        },
        'written',
        20_000,
      )
      await writer.request({ type: 'close' }, 'closed', 10_000)
      const check = await readers.request(
        {
          type: 'verify',
          url: third.url,
          framing,
          docs: [`c3-after-${seed}-${attempt}`],
          texts: after.texts,
          timeoutMs: 5_000,
        },
        'verified',
        20_000,
      )
      if (after.acksMissing === 0 && check.ok.every(Boolean)) firstWriteMs = performance.now() - killedAt
    } catch {
      // Not yet: try again (bounded by the attempts).
    }
  }
  // All clients resynced: fresh clients on the two surviving nodes get the same text; then how
  // much of what was written before the kill survived it (Colloquy acked each update).
  let resyncMs = Number.NaN
  let served: string[] = []
  const resyncDeadline = performance.now() + 30_000
  while (performance.now() < resyncDeadline && Number.isNaN(resyncMs)) {
    // One request at a time per load process: the nodes are read in turn.
    const onSecond = await readers
      .request(
        { type: 'verify', url: second.url, framing, docs, texts: [], timeoutMs: 5_000 },
        'verified',
        20_000,
      )
      .catch(() => undefined)
    if (onSecond === undefined) continue
    const onThird = await readers
      .request(
        { type: 'verify', url: third.url, framing, docs, texts: onSecond.texts, timeoutMs: 5_000 },
        'verified',
        20_000,
      )
      .catch(() => undefined)
    if (onThird?.ok.every(Boolean) === true) {
      resyncMs = performance.now() - killedAt
      served = onSecond.texts
    }
  }
  const writtenChars = written.texts.reduce((sum, text) => sum + text.length, 0)
  const keptChars = written.texts.reduce(
    (sum, text, i) => sum + (served[i]?.startsWith(text) ? text.length : (served[i]?.length ?? 0)),
    0,
  )
  const keptPct = round((100 * keptChars) / Math.max(1, writtenChars), 1)
  log(
    `[C3] ${cluster.id}: first write ${round(firstWriteMs, 0)} ms, resynced ${round(resyncMs, 0)} ms after kill -9, ${keptPct}% of the text kept`,
  )
  return {
    updatesBeforeKill: written.sent.reduce((sum, n) => sum + n, 0),
    ...(cluster.acks ? { unackedBeforeKill: written.acksMissing } : {}),
    firstWriteMs: round(firstWriteMs, 0),
    allResyncedMs: round(resyncMs, 0),
    textKeptPct: keptPct,
    correct: Number.isFinite(firstWriteMs) && Number.isFinite(resyncMs) && (!cluster.acks || keptPct === 100),
  }
}

buildColloquy()
const started = performance.now()
const workDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-cluster-bench-'))
const writer = startLoadProcess()
const readers = startLoadProcess()
const result: SuiteResult = {
  meta: {
    mode: 'cluster',
    seed,
    ...runEnvironment(),
    command: `npx tsx bench/cluster/run.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    targets: Object.fromEntries(Object.entries(CLUSTER_TARGETS).map(([id, target]) => [id, target.label])),
    durationSeconds: 0,
  },
  scenarios: [],
}
const tables = {
  C1: {
    title: `cross-node latency: 10 sessions, ${c1Rate} updates/s for ${c1Ms / 1000} s, writers on node 1, a reader on each other node`,
    rows: [] as Row[],
  },
  C2: {
    title: 'highest sustained rate (ramp, 4 s steps, 20 sessions; Colloquy acks every 10th update)',
    rows: [] as Row[],
  },
  C3: { title: "recovery after kill -9 of the writers' node (ms after the kill)", rows: [] as Row[] },
}
let failures = 0
try {
  for (const id of targets) {
    const missing = missingPrerequisite(id)
    if (missing !== undefined) {
      log(missing)
      for (const table of Object.values(tables)) table.rows.push({ target: id, skipped: missing })
      continue
    }
    try {
      const rows = await runTarget(id, workDir, writer, readers)
      tables.C1.rows.push(...rows.latency.map((row) => ({ target: id, ...row })))
      tables.C2.rows.push(...rows.ramp.map((row) => ({ target: id, ...row })))
      tables.C3.rows.push(...rows.recovery.map((row) => ({ target: id, ...row })))
    } catch (error) {
      failures++
      log(`${id} failed: ${String(error)}`)
      tables.C1.rows.push({ target: id, error: String(error).slice(0, 300), correct: false })
    }
  }
} finally {
  writer.kill()
  readers.kill()
  await rm(workDir, { recursive: true, force: true })
}
for (const [id, table] of Object.entries(tables)) result.scenarios.push({ id, ...table })
result.meta.durationSeconds = Math.round((performance.now() - started) / 1000)
await mkdir(values.out, { recursive: true })
const base = path.join(values.out, `cluster-${result.meta.date.replace(/[:.]/g, '-')}`)
await writeFile(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`)
const markdown = renderMarkdown(result)
await writeFile(`${base}.md`, markdown)
process.stdout.write(`${markdown}\nwrote ${base}.json and .md in ${result.meta.durationSeconds} s\n`)
if (failures > 0) process.exitCode = 1
