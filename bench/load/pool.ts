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

/** Forks one load client (`bench/load/worker.ts` through tsx, structured-clone IPC) at {@link LOAD_NICENESS}. */
export function startLoadProcess(): LoadProcess {
  const child: ChildProcess = fork(path.join(ROOT, 'bench/load/worker.ts'), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  if (child.pid === undefined) throw new Error('load process did not start')
  os.setPriority(child.pid, LOAD_NICENESS)
  let busy = false
  return {
    pid: child.pid,
    request(command, expect, timeoutMs) {
      if (busy) throw new Error('load process: one command at a time')
      busy = true
      return new Promise((resolve, reject) => {
        const done = (): void => {
          busy = false
          clearTimeout(timer)
          child.off('message', onMessage)
          child.off('exit', onExit)
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`load process: no '${expect}' within ${timeoutMs} ms`))
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
        child.on('message', onMessage)
        child.once('exit', onExit)
        child.send(command)
      })
    },
    kill() {
      child.kill('SIGKILL')
    },
  }
}
