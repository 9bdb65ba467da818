// Starts load client processes and sends them one command at a time, each answer bounded in time.

import { type ChildProcess, fork } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { ROOT } from '../lib/targets.js'
import type { Command, Reply } from './commands.js'

export interface LoadProcess {
  readonly pid: number
  /** Sends `command` and resolves with the reply of the expected type; rejects on error or timeout. */
  request<T extends Reply['type']>(
    command: Command,
    expect: T,
    timeoutMs: number,
  ): Promise<Extract<Reply, { type: T }>>
  kill(): void
}

/**
 * Niceness of the load processes. Why: server and generator share this machine's cores; at high
 * rates the generator's processes preempted the server under test for tens of milliseconds (its
 * event-loop lag reached 50–110 ms at 40,000 updates/s, 18–29 ms with the generator at nice 10). A
 * lower priority for the generator approximates a load machine of its own, for every target alike.
 */
export const LOAD_NICENESS = 10

/** Forks one load client process. */
function forkWorker(): ChildProcess {
  const child = fork(path.join(ROOT, 'bench/load/worker.ts'), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  if (child.pid === undefined) throw new Error('load process did not start')
  os.setPriority(child.pid, LOAD_NICENESS)
  return child
}

/**
 * Starts one load client (`bench/load/worker.ts` through tsx, structured-clone IPC) at
 * {@link LOAD_NICENESS}.
 *
 * @remarks A process that did not answer in time is killed and replaced by a fresh one before the
 * next request. Why: it may still be running the command, and its late reply would otherwise be
 * taken as the answer to the next request (and its open connections would load the next run).
 */
export function startLoadProcess(): LoadProcess {
  let child = forkWorker()
  let busy = false
  return {
    get pid() {
      return child.pid ?? -1
    },
    request(command, expect, timeoutMs) {
      if (busy) throw new Error('load process: one command at a time')
      if (child.exitCode !== null || child.signalCode !== null) child = forkWorker()
      busy = true
      const current = child
      return new Promise((resolve, reject) => {
        const done = (): void => {
          busy = false
          clearTimeout(timer)
          current.off('message', onMessage)
          current.off('exit', onExit)
        }
        const timer = setTimeout(() => {
          done()
          current.kill('SIGKILL')
          // Replaced now, not at the next request: callers read the CPU of `pid` before their
          // next request, and a reaped pid has no /proc entry.
          child = forkWorker()
          reject(new Error(`load process: no '${expect}' within ${timeoutMs} ms (process replaced)`))
        }, timeoutMs)
        const onMessage = (reply: Reply): void => {
          done()
          if (reply.type === expect) resolve(reply as Extract<Reply, { type: typeof expect }>)
          else
            reject(
              new Error(
                `load process: ${reply.type === 'error' ? reply.message : `unexpected ${reply.type}`}`,
              ),
            )
        }
        const onExit = (code: number | null): void => {
          done()
          reject(new Error(`load process exited (${code})`))
        }
        current.on('message', onMessage)
        current.once('exit', onExit)
        current.send(command)
      })
    },
    kill() {
      child.kill('SIGKILL')
    },
  }
}
