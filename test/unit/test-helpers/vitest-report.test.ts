import { describe, expect, it } from 'vitest'
import { type Json, mergeVitestReports, reportOfRun } from '../../helpers/vitest-report.js'

/** A report as vitest's JSON reporter writes it, trimmed to what .ci/run and readers use. */
function report(passed: number, failed: number, startTime: number, files: string[]): Json {
  return {
    numTotalTestSuites: files.length,
    numFailedTestSuites: failed > 0 ? 1 : 0,
    numPassedTests: passed,
    numFailedTests: failed,
    numPendingTests: 1,
    snapshot: { failure: false, total: 0 },
    startTime,
    success: failed === 0,
    testResults: files.map((name) => ({ name, status: 'passed' })),
  }
}

describe('mergeVitestReports', () => {
  it('adds the counts, keeps both files lists and the earliest start', () => {
    const merged = mergeVitestReports(report(10, 0, 2_000, ['a']), report(5, 0, 1_000, ['b', 'c']))
    expect(merged).toEqual({
      numTotalTestSuites: 3,
      numFailedTestSuites: 0,
      numPassedTests: 15,
      numFailedTests: 0,
      numPendingTests: 2,
      snapshot: { failure: false, total: 0 },
      startTime: 1_000,
      success: true,
      testResults: [
        { name: 'a', status: 'passed' },
        { name: 'b', status: 'passed' },
        { name: 'c', status: 'passed' },
      ],
    })
  })

  it('fails when either project failed, whichever side', () => {
    const ok = report(3, 0, 1, ['a'])
    const failed = report(2, 1, 1, ['b'])
    for (const merged of [mergeVitestReports(ok, failed), mergeVitestReports(failed, ok)]) {
      expect(merged).toMatchObject({
        success: false,
        numFailedTests: 1,
        numFailedTestSuites: 1,
        numPassedTests: 5,
      })
    }
  })

  it('keeps a flag raised by either side (a snapshot failure)', () => {
    const a = { snapshot: { failure: true } }
    const b = { snapshot: { failure: false } }
    expect(mergeVitestReports(a, b)).toEqual({ snapshot: { failure: true } })
    expect(mergeVitestReports(b, a)).toEqual({ snapshot: { failure: true } })
  })
})

describe('reportOfRun', () => {
  it('marks a report unsuccessful when its vitest process failed with no failed test', () => {
    // vitest's report after an unhandled error: every test passed, success true, exit code 1.
    const failedRun = reportOfRun(report(7, 0, 1_000, ['a']), 1)
    expect(failedRun).toMatchObject({ success: false, numFailedTests: 0 })
    const merged = mergeVitestReports(failedRun, reportOfRun(report(3, 0, 2_000, ['b']), 0)) as {
      [key: string]: Json
    }
    expect(merged.success).toBe(false)
    expect(merged.numPassedTests).toBe(10)
    expect(reportOfRun(report(7, 0, 1_000, ['a']), 0)).toMatchObject({ success: true })
  })
})
