// Side-by-side benchmark runner (issue 6): Colloquy, the classic y-websocket server and Hocuspocus,
// each a child process on 127.0.0.1 with persistence on, driven by load client processes.
// Writes bench/results/bench-<mode>-<time>.{json,md} (and SVG charts in full mode).
//
//   npm run bench                      # full suite (about 15–20 minutes)
//   npm run bench:quick                # small sizes, about a minute (CI smoke)
//   npm run bench -- --only S1,S2 --targets colloquy,hocuspocus --seed 7

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { writeCharts } from './lib/charts.js'
import { renderMarkdown, type SuiteResult } from './lib/report.js'
import { runEnvironment } from './lib/run-meta.js'
import {
  buildColloquy,
  ROOT,
  type RunningServer,
  startTarget,
  TARGETS,
  type TargetId,
} from './lib/targets.js'
import { startLoadProcess } from './load/pool.js'
import { type Mode, type Row, SCENARIOS } from './scenarios/index.js'

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    targets: { type: 'string' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: path.join(ROOT, 'bench/results') },
  },
})

const mode: Mode = values.quick ? 'quick' : 'full'
const seed = Number(values.seed)
const only = values.only?.split(',').map((id) => id.trim().toUpperCase())
const onlyTargets = values.targets?.split(',').map((id) => id.trim()) as TargetId[] | undefined
for (const id of onlyTargets ?? []) if (!(id in TARGETS)) throw new Error(`unknown target ${id}`)

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}

buildColloquy()
const started = performance.now()
const workDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-bench-'))
const writer = startLoadProcess()
const readers = startLoadProcess()
const result: SuiteResult = {
  meta: {
    mode,
    seed,
    ...runEnvironment(),
    command: `npm run ${mode === 'quick' ? 'bench:quick' : 'bench'}${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    targets: Object.fromEntries(Object.entries(TARGETS).map(([id, target]) => [id, target.label])),
    durationSeconds: 0,
  },
  scenarios: [],
}

let failures = 0
let dirCounter = 0
try {
  for (const scenario of SCENARIOS) {
    if (only && !only.includes(scenario.id)) continue
    const rows: Array<{ target: TargetId } & Row> = []
    for (const target of scenario.targets) {
      if (onlyTargets && !onlyTargets.includes(target)) continue
      // Quick mode (CI smoke) runs the variants only where they are the point ([S7]).
      if (
        mode === 'quick' &&
        scenario.id !== 'S7' &&
        (target === 'colloquy-nofsync' || target === 'classic-memory' || target === 'floor')
      )
        continue
      log(`[${scenario.id}] ${target}`)
      let dataDir = ''
      const ctx = {
        target,
        mode,
        seed,
        writer,
        readers,
        log,
        async start(options: { reuseData?: boolean; args?: readonly string[] } = {}): Promise<RunningServer> {
          if (!options.reuseData || dataDir === '') {
            dataDir = path.join(workDir, `${scenario.id}-${target}-${dirCounter++}`)
            await mkdir(dataDir, { recursive: true })
          }
          return startTarget(target, dataDir, options.args)
        },
      }
      const t0 = performance.now()
      try {
        for (const row of await scenario.run(ctx)) rows.push({ target, ...row })
      } catch (error) {
        failures++
        log(`  failed: ${String(error)}`)
        rows.push({ target, error: String(error).slice(0, 300), correct: false })
      }
      // Other work on a shared machine shows here: the 1-minute load average when this target ended.
      const load1 = Number((os.loadavg()[0] ?? 0).toFixed(2))
      for (const row of rows) if (row.target === target && row.load1 === undefined) row.load1 = load1
      log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s (load average ${load1})`)
    }
    result.scenarios.push({ id: scenario.id, title: scenario.title, rows })
  }
} finally {
  writer.kill()
  readers.kill()
  await rm(workDir, { recursive: true, force: true })
}

result.meta.durationSeconds = Math.round((performance.now() - started) / 1000)
await mkdir(values.out, { recursive: true })
const stamp = result.meta.date.replace(/[:.]/g, '-')
const base = path.join(values.out, `bench-${mode}-${stamp}`)
await writeFile(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`)
const markdown = renderMarkdown(result)
await writeFile(`${base}.md`, markdown)
if (mode === 'full') await writeCharts(result, path.join(values.out, 'charts'))
process.stdout.write(`${markdown}\nwrote ${base}.json and .md in ${result.meta.durationSeconds} s\n`)
const incorrect = result.scenarios.flatMap((scenario) => scenario.rows).filter((row) => row.correct === false)
if (failures > 0 || incorrect.length > 0) {
  log(`${failures} scenario runs failed, ${incorrect.length} rows failed their correctness check`)
  process.exitCode = 1
}
