// What every bench run records about where it ran: the machine and the commit. Shared by the
// single-node suite (bench/run.ts) and the cluster one (bench/cluster/run.ts).

import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { ROOT } from './targets.js'

/** `git <args>` in the repository, trimmed; 'unknown' when git is missing or fails. */
function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

/** The machine and commit fields of a result's meta (see SuiteResult in report.ts). */
export function runEnvironment(): {
  date: string
  node: string
  cpu: string
  cores: number
  memoryGiB: number
  commit: string
  dirty: boolean
} {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain']) !== '',
  }
}
