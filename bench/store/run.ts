// Store benchmark runner: sustained acknowledged updates/s of our write queue + LevelDB store versus
// y-leveldb, same machine, same run. Prints a markdown table and writes bench/results/store-*.json.
//
//   npm run bench:store -- [--seconds 5] [--sessions 100] [--inflight 2000]

import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { type DriveResult, drive } from './driver.js'
import { type OpenTarget, openColloquyTarget, openYLeveldbTarget } from './targets.js'
import { makeSessionUpdates } from './updates.js'

/** Updates generated per session before the run; the driver cycles through them. */
const UPDATES_PER_SESSION = 300
const DRAIN_TIMEOUT_MS = 60_000

interface Scenario {
  readonly id: string
  readonly store: string
  readonly sync: boolean
  readonly open: (location: string, sessions: number) => Promise<OpenTarget>
}

const SCENARIOS: readonly Scenario[] = [
  {
    id: 'S1.1',
    store: 'colloquy write-queue + leveldb-store',
    sync: true,
    open: (location, sessions) => openColloquyTarget(location, sessions, true),
  },
  {
    id: 'S1.2',
    store: 'colloquy write-queue + leveldb-store',
    sync: false,
    open: (location, sessions) => openColloquyTarget(location, sessions, false),
  },
  { id: 'S1.3', store: 'y-leveldb storeUpdate', sync: false, open: openYLeveldbTarget },
]

interface ScenarioResult extends DriveResult {
  readonly id: string
  readonly store: string
  readonly sync: boolean
  /** Updates found in the store after closing and reopening it. */
  readonly stored: number
  /** True when every submitted update was found stored. */
  readonly isVerified: boolean
  readonly batches?: number
}

function readOptions(): { seconds: number; sessions: number; inflight: number } {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      sessions: { type: 'string', default: '100' },
      inflight: { type: 'string', default: '2000' },
    },
  })
  const toPositive = (name: string, text: string): number => {
    const value = Number(text)
    if (!Number.isFinite(value) || value <= 0)
      throw new Error(`--${name} must be a positive number, got ${text}`)
    return value
  }
  return {
    seconds: toPositive('seconds', values.seconds),
    sessions: Math.floor(toPositive('sessions', values.sessions)),
    inflight: Math.floor(toPositive('inflight', values.inflight)),
  }
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
  } catch (error) {
    console.error(`git rev-parse failed, recording no commit: ${(error as Error).message}`)
    return undefined
  }
}

async function runScenario(
  scenario: Scenario,
  pools: Uint8Array[][],
  options: { seconds: number; sessions: number; inflight: number },
): Promise<ScenarioResult> {
  const location = await mkdtemp(path.join(os.tmpdir(), `colloquy-bench-${scenario.id}-`))
  try {
    const target = await scenario.open(location, options.sessions)
    const result = await drive({
      target,
      pools,
      seconds: options.seconds,
      inflight: options.inflight,
      drainTimeoutMs: DRAIN_TIMEOUT_MS,
    })
    const batches = target.batches?.()
    const stored = await target.closeAndCount()
    return {
      id: scenario.id,
      store: scenario.store,
      sync: scenario.sync,
      ...result,
      stored,
      isVerified: stored === result.submitted,
      ...(batches === undefined ? {} : { batches }),
    }
  } finally {
    await rm(location, { recursive: true, force: true })
  }
}

function formatTable(results: readonly ScenarioResult[]): string {
  const rows = [
    '| id | store | sync | updates/s | p50 ack ms | p99 ack ms | acked | batches | stored = submitted |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
  ]
  for (const r of results) {
    rows.push(
      `| ${r.id} | ${r.store} | ${r.sync} | ${Math.round(r.updatesPerSecond).toLocaleString('en-US')} | ` +
        `${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.acked} | ${r.batches ?? '–'} | ` +
        `${r.isVerified ? 'yes' : `NO (${r.stored}/${r.submitted})`} |`,
    )
  }
  return rows.join('\n')
}

async function main(): Promise<void> {
  const options = readOptions()
  // Everything below is bounded; this only catches a bug that would otherwise hang the run.
  const boundMs = SCENARIOS.length * (options.seconds * 1000 + DRAIN_TIMEOUT_MS + 30_000)
  setTimeout(() => {
    console.error(`store benchmark exceeded its ${boundMs} ms bound`)
    process.exit(2)
  }, boundMs).unref()

  const pools = makeSessionUpdates(options.sessions, UPDATES_PER_SESSION)
  const all = pools.flat()
  const meanUpdateBytes = all.reduce((sum, update) => sum + update.byteLength, 0) / all.length
  console.log(
    `store benchmark: ${options.sessions} sessions, ${options.inflight} in flight, ${options.seconds} s per scenario, ` +
      `mean update ${meanUpdateBytes.toFixed(1)} bytes`,
  )

  const results: ScenarioResult[] = []
  for (const scenario of SCENARIOS) {
    console.log(`[${scenario.id}] ${scenario.store}, sync ${scenario.sync} …`)
    results.push(await runScenario(scenario, pools, options))
  }

  const ours = results.find((r) => r.id === 'S1.1')
  const baseline = results.find((r) => r.id === 'S1.3')
  const ratio =
    ours !== undefined && baseline !== undefined ? ours.updatesPerSecond / baseline.updatesPerSecond : 0
  console.log(`\n${formatTable(results)}\n`)
  console.log(`colloquy (sync: true) / y-leveldb (no fsync): ${ratio.toFixed(1)}× (target ≥ 10×)`)

  const report = {
    benchmark: 'store',
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    commit: gitCommit(),
    options: { ...options, updatesPerSession: UPDATES_PER_SESSION, meanUpdateBytes },
    results,
    ratioSyncedVsYLeveldb: ratio,
  }
  const dir = path.resolve('bench/results')
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, `store-${report.date.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
  if (results.some((r) => !r.isVerified)) process.exitCode = 1
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
