// Profiles one target under the [S2]-style streaming load with V8's --cpu-prof and prints the
// functions with the most self time. The .cpuprofile is kept for a flame graph (Chrome DevTools,
// speedscope).
//
//   npx tsx bench/profile.ts [--target colloquy] [--rate 12000] [--seconds 8]

import { mkdtemp, readdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT, startTarget, TARGETS, type TargetId } from './lib/targets.js'
import { startLoadProcess } from './load/pool.js'
import { runStream } from './scenarios/stream.js'

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'colloquy' },
    rate: { type: 'string', default: '12000' },
    seconds: { type: 'string', default: '8' },
    seed: { type: 'string', default: '42' },
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
const server = await startTarget(target, dataDir, [], {}, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
const writer = startLoadProcess()
const readers = startLoadProcess()
try {
  const result = await runStream(server, writer, readers, {
    name: 'profile',
    sessions: 20,
    readersPerSession: 2,
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
  await server.stop()
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
