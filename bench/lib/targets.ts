// The servers under test, each started as a child process on 127.0.0.1 with persistence in a temp
// dir, plus the readings taken from outside: CPU time and RSS from /proc/<pid>. Owns no load.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Framing } from './wire.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** Every server the suite knows. */
export const TARGETS = {
  colloquy: { label: 'Colloquy (LevelDB, fsync)', framing: 'plain', acks: true },
  'colloquy-nofsync': { label: 'Colloquy (LevelDB, --fsync false)', framing: 'plain', acks: true },
  classic: { label: 'y-websocket 1.5.4 (y-leveldb)', framing: 'plain', acks: false },
  'classic-memory': { label: 'y-websocket 1.5.4 (no persistence)', framing: 'plain', acks: false },
  hocuspocus: { label: 'Hocuspocus 3.4.4 (Database ext. on LevelDB)', framing: 'hocuspocus', acks: false },
  floor: { label: 'reference: bare uWS relay (no Y.Doc, no storage)', framing: 'plain', acks: false },
} as const satisfies Record<string, { label: string; framing: Framing; acks: boolean }>

export type TargetId = keyof typeof TARGETS

export interface RunningServer {
  readonly id: TargetId
  readonly pid: number
  readonly url: string
  /** The same host and port over HTTP (Colloquy's REST routes). */
  readonly httpUrl: string
  readonly framing: Framing
  /** The tail of what the process printed. */
  output(): string
  /** CPU time (user + system) the process has used so far, µs (10 ms resolution). */
  cpuMicros(): number
  /** Resident set size now, bytes. */
  rssBytes(): number
  /** True until the process exits. */
  isRunning(): boolean
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>
}

const TICK_MICROS = 10_000 // CLK_TCK = 100 on Linux

/** CPU time (user + system) process `pid` has used, µs. */
export function cpuMicrosOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_MICROS
}

function readRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match ? Number(match[1]) * 1024 : Number.NaN
}

/**
 * Compiles the server to `dist/` (what `npm start` runs), so the benchmark measures the code users
 * run rather than tsx's on-the-fly transform. Incremental and a few seconds when nothing changed.
 */
export function buildColloquy(): void {
  execFileSync(
    process.execPath,
    [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  )
}

/** A port that was free a moment ago (for servers that cannot listen on port 0 and report it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function spawnAndWait(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  ready: (line: string) => number | undefined,
  timeoutMs: number,
): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server did not start within ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    let resolved = false
    const onData = (chunk: Buffer): void => {
      // Keep only a bounded tail: a long run must not grow this string without end.
      output = (output + chunk.toString()).slice(-20_000)
      if (resolved) return
      for (const line of output.split('\n')) {
        const port = ready(line)
        if (port !== undefined) {
          resolved = true
          clearTimeout(timer)
          resolve({ child, port, output: () => output })
          return
        }
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (!resolved) reject(new Error(`server exited (${code ?? signal}) before listening:\n${output}`))
    })
  })
}

function jsonPort(marker: string): (line: string) => number | undefined {
  return (line) => {
    if (!line.includes(marker)) return undefined
    try {
      const record = JSON.parse(line) as { port?: unknown }
      return typeof record.port === 'number' ? record.port : undefined
    } catch {
      return undefined // a partial line: the rest is still coming
    }
  }
}

/**
 * Starts target `id` with its data under `dataDir` (reused across restarts of the same run).
 * `env` and `nodeArgs` (e.g. `--cpu-prof`, for bench/profile.ts) reach only the server process.
 */
export async function startTarget(
  id: TargetId,
  dataDir: string,
  extraArgs: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
  nodeArgs: readonly string[] = [],
): Promise<RunningServer> {
  const timeoutMs = 30_000
  let started: { child: ChildProcess; port: number; output: () => string }
  switch (id) {
    case 'colloquy':
    case 'colloquy-nofsync': {
      const args = [
        ...nodeArgs,
        path.join(ROOT, 'dist/server/main.js'),
        'serve',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--data',
        dataDir,
        '--fsync',
        id === 'colloquy' ? 'true' : 'false',
        '--log-level',
        'info',
        // The per-connection rate limits and the per-address connection-attempt limit are production
        // guards the peers do not have; the benchmark measures the engine, so they are off.
        '--updates-per-second',
        '0',
        '--update-bytes-per-second',
        '0',
        '--max-connection-attempts-per-ip',
        '0',
        ...extraArgs,
      ]
      started = await spawnAndWait(process.execPath, args, env, jsonPort('colloquy listening'), timeoutMs)
      break
    }
    case 'classic':
    case 'classic-memory': {
      const port = await freePort()
      const classicEnv: NodeJS.ProcessEnv = { ...env, HOST: '127.0.0.1', PORT: String(port) }
      if (id === 'classic') classicEnv.YPERSISTENCE = dataDir
      const script = path.join(ROOT, 'node_modules/y-websocket-classic/bin/server.js')
      started = await spawnAndWait(
        process.execPath,
        [...nodeArgs, script],
        classicEnv,
        (line) => (line.includes('running at') ? port : undefined),
        timeoutMs,
      )
      break
    }
    case 'hocuspocus': {
      const args = [
        ...nodeArgs,
        '--import',
        'tsx',
        path.join(ROOT, 'bench/peers/hocuspocus-server.ts'),
        '--data',
        dataDir,
      ]
      started = await spawnAndWait(process.execPath, args, env, jsonPort('peer listening'), timeoutMs)
      break
    }
    case 'floor': {
      const args = [...nodeArgs, '--import', 'tsx', path.join(ROOT, 'bench/peers/relay-floor.ts')]
      started = await spawnAndWait(process.execPath, args, env, jsonPort('floor listening'), timeoutMs)
      break
    }
  }
  const { child, port, output } = started
  const pid = child.pid
  if (pid === undefined) throw new Error(`${id}: no pid`)
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  return {
    id,
    pid,
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    output,
    framing: TARGETS[id].framing,
    cpuMicros: () => cpuMicrosOf(pid),
    rssBytes: () => readRssBytes(pid),
    isRunning: () => child.exitCode === null && child.signalCode === null,
    async stop(graceMs = 10_000) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    },
  }
}
