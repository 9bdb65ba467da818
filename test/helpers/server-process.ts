// Runs the real server as a child process (no build needed: the JavaScript child-build.ts made for
// this vitest run, or the source through tsx; see node-script.ts) and reads the port it listens on
// from its JSON log. Used by kill -9 tests and anything that needs a separate process.

import { type ChildProcess, spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { nodeScript } from './node-script.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface ServerProcess {
  readonly child: ChildProcess
  readonly port: number
  readonly url: string
  /** Everything the process printed so far. */
  output(): string
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Options of {@link startServerProcess}. */
export interface ServerProcessOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly timeoutMs?: number
  /** Flags for node itself, before the script (e.g. `--cpu-prof`, `--cpu-prof-dir=DIR`). */
  readonly nodeArgs?: readonly string[]
}

/** Starts `server/main.ts serve` with `args`; resolves once it logs that it listens. */
export function startServerProcess(
  args: readonly string[],
  options: ServerProcessOptions = {},
): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
      ...nodeScript('server/main.ts'),
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      ...args,
    ],
    { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server did not start in time:\n${output}`))
    }, options.timeoutMs ?? 20_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      for (const line of output.split('\n')) {
        if (!line.includes('colloquy listening')) continue
        try {
          const record = JSON.parse(line) as { port?: number }
          if (typeof record.port === 'number') {
            clearTimeout(timer)
            const port = record.port
            resolve({ child, port, url: `ws://127.0.0.1:${port}`, output: () => output, exited })
            return
          }
        } catch {
          // A partial line: wait for the rest.
        }
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${output}`))
    })
  })
}
