// Profiles one target under the [S2]-style streaming load with V8's --cpu-prof and prints the
// functions with the most self time. The .cpuprofile is kept for a flame graph (Chrome DevTools,
// speedscope).
//
//   npx tsx bench/profile.ts [--target colloquy] [--rate 12000] [--seconds 8] [--readers 2]
//   npx tsx bench/profile.ts --perf     # Linux perf instead: native, kernel and JS frames together
//
// With --perf the server runs with --perf-basic-prof (JS frames named in perf's output) under
// `perf record -g`, and the report groups samples by shared object and lists the top symbols: the
// split V8 alone cannot show (LevelDB, libuv, uWS, the kernel's socket and fsync paths).

import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { buildColloquy, ROOT, startTarget, TARGETS, type TargetId } from './lib/targets.js'
import { startLoadProcess } from './load/pool.js'
import { runStream } from './scenarios/stream.js'

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'colloquy' },
    rate: { type: 'string', default: '12000' },
    seconds: { type: 'string', default: '8' },
    seed: { type: 'string', default: '42' },
    readers: { type: 'string', default: '2' },
    perf: { type: 'boolean', default: false },
  },
})
const target = values.target as TargetId
if (!(target in TARGETS)) throw new Error(`unknown target ${target}`)

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const profileDir = await mkdtemp(path.join(os.tmpdir(), `colloquy-cpuprofile-${target}-`))
const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-profile-'))
buildColloquy()
const server = await startTarget(
  target,
  dataDir,
  [],
  {},
  values.perf ? ['--perf-basic-prof'] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
)
const perfData = path.join(profileDir, 'perf.data')
const perf = values.perf
  ? spawn('perf', ['record', '-F', '1999', '-g', '-o', perfData, '-p', String(server.pid)], {
      stdio: 'ignore',
    })
  : undefined
const writer = startLoadProcess()
const readers = startLoadProcess()
try {
  const result = await runStream(server, writer, readers, {
    name: 'profile',
    sessions: 20,
    readersPerSession: Number(values.readers),
    totalRate: Number(values.rate),
    durationMs: Number(values.seconds) * 1000,
    seed: Number(values.seed),
    ackEvery: 0,
    drainTimeoutMs: 10_000,
    settleMs: 1_000,
  })
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  writer.kill()
  readers.kill()
  if (perf) {
    perf.kill('SIGINT')
    await new Promise((resolve) => perf.once('exit', resolve))
  }
  await server.stop()
}

if (perf) {
  // Samples by shared object ([kernel.kallsyms], node, classic-level's .node, uws .node, JIT code as
  // perf-<pid>.map), then the top symbols overall.
  for (const sort of ['dso', 'dso,sym']) {
    const report = execFileSync(
      'perf',
      [
        'report',
        '-i',
        perfData,
        '--stdio',
        '--no-children',
        '-g',
        'none',
        '--sort',
        sort,
        '--percent-limit',
        '0.7',
      ],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    )
    process.stdout.write(
      `\n${report
        .split('\n')
        .filter((line) => line && !line.startsWith('#'))
        .slice(0, 45)
        .join('\n')}\n`,
    )
  }
  process.stdout.write(`\nperf data: ${perfData}\n`)
  process.exit(0)
}

// Self time per function (file:line), summed over samples.
const files = (await readdir(profileDir)).filter((file) => file.endsWith('.cpuprofile'))
for (const file of files) {
  const profile = JSON.parse(await readFile(path.join(profileDir, file), 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<string, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const node = byId.get(id)
    const dt = profile.timeDeltas[i] ?? 0
    total += dt
    if (!node) return
    const { functionName, url, lineNumber } = node.callFrame
    const where = url.replace(`file://${ROOT}/`, '').replace(/^.*node_modules\//, 'node_modules/')
    const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`
    self.set(key, (self.get(key) ?? 0) + dt)
  })
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)
  process.stdout.write(`\n${file}: ${(total / 1e6).toFixed(1)} s sampled\n`)
  for (const [key, micros] of top) {
    process.stdout.write(`${((micros / total) * 100).toFixed(1).padStart(5)}%  ${key}\n`)
  }
}
