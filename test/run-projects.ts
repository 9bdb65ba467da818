// `npm test`'s vitest step: the `main` and `cluster` projects in two vitest processes at once.
//
// One `vitest run` cannot run them side by side: vitest 4 puts a project with
// `fileParallelism: false` in a group of its own that starts only after every other file has
// finished, so the cluster files (one at a time, ≈ 5 min) ran after the main project's (one
// worker on 2 cores). Here the cluster project still runs one file at a time, in its own process,
// while the main project runs in the other. The main project's output streams as it comes; the
// cluster project's is kept in test-results/vitest-cluster.log and printed after it. The two JSON
// reports are merged into test-results/vitest.json (what .ci/run counts). Exits non-zero when
// either project fails or writes no report.

import { spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Json, mergeVitestReports, reportOfRun } from './helpers/vitest-report.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = path.join(ROOT, 'test-results')
const VITEST = path.join(ROOT, 'node_modules/vitest/vitest.mjs')

/** Runs one project; resolves with its exit code (1 when killed by a signal). */
function runProject(project: string, log: 'inherit' | string): Promise<number> {
  const args = [
    VITEST,
    'run',
    '--project',
    project,
    `--outputFile.json=${path.join(RESULTS, `vitest-${project}.json`)}`,
  ]
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: log === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'],
  })
  // The log is complete once its stream has closed (after the child's pipes end).
  let logWritten = Promise.resolve()
  if (log !== 'inherit') {
    const out = createWriteStream(log)
    child.stdout?.pipe(out, { end: false })
    child.stderr?.pipe(out, { end: false })
    logWritten = new Promise((resolve) => {
      out.once('close', resolve)
      child.once('close', () => out.end())
    })
  }
  const stop = (): void => {
    child.kill('SIGINT')
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return new Promise((resolve) => {
    child.once('error', (error) => {
      console.error(`vitest (${project}) did not start: ${error.message}`)
      resolve(1)
    })
    child.once('close', (code) => void logWritten.then(() => resolve(code ?? 1)))
  })
}

async function readReport(project: string): Promise<Json | undefined> {
  try {
    return JSON.parse(await readFile(path.join(RESULTS, `vitest-${project}.json`), 'utf8')) as Json
  } catch (error) {
    console.error(`no JSON report from the ${project} project: ${(error as Error).message}`)
    return undefined
  }
}

async function main(): Promise<number> {
  if (process.argv.length > 2) {
    console.error('npm test takes no arguments: run some files with `npx vitest run <files>`')
    return 2
  }
  await mkdir(RESULTS, { recursive: true })
  await Promise.all(
    ['vitest.json', 'vitest-main.json', 'vitest-cluster.json'].map((f) =>
      rm(path.join(RESULTS, f), { force: true }),
    ),
  )
  const clusterLog = path.join(RESULTS, 'vitest-cluster.log')
  console.log(`vitest: the cluster project runs beside the main one; its output follows the main project's`)
  const [mainCode, clusterCode] = await Promise.all([
    runProject('main', 'inherit'),
    runProject('cluster', clusterLog),
  ])
  console.log('\n── cluster project (ran beside the main project) ──')
  console.log(await readFile(clusterLog, 'utf8').catch(() => '(no output)'))

  const reports = [await readReport('main'), await readReport('cluster')]
  const [mainReport, clusterReport] = reports
  if (mainReport === undefined || clusterReport === undefined) return 1
  // A process that failed outside any test (an unhandled error) still reports success: not so here.
  await writeFile(
    path.join(RESULTS, 'vitest.json'),
    JSON.stringify(
      mergeVitestReports(reportOfRun(mainReport, mainCode), reportOfRun(clusterReport, clusterCode)),
    ),
  )
  return mainCode !== 0 ? mainCode : clusterCode
}

process.exitCode = await main()
