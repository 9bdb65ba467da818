// Compaction metrics on /metrics: every run of the scheduler is counted by result (success,
// skipped, failure) and timed, whether it comes from the HTTP API or the background timer.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createInlineMerger, type Merger } from '../../server/compaction/merge.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { scrapeMetrics } from '../helpers/http.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let server: SyncServer | undefined
let dataDir: string | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  dataDir = undefined
})

/** Writes `count` updates to `sessionId` and waits until they are durable. */
async function write(sessionId: string, count: number, prefix: string): Promise<void> {
  const client = await connectWsPeer(`ws://127.0.0.1:${server!.port}`, sessionId)
  for (let i = 0; i < count; i++) client.peer.doc.getMap('m').set(`${prefix}${i}`, i)
  await client.peer.whenAcked(client.peer.requestAck())
  client.close()
}

function compact(sessionId: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${server!.port}/sessions/${sessionId}/compact`, { method: 'POST' })
}

describe('compaction metrics', () => {
  it('counts successful, skipped and failed compactions and times them', async () => {
    const inline = createInlineMerger()
    let failNext = false
    const merger: Merger = {
      async merge(updates) {
        if (failNext) {
          failNext = false
          throw new Error('injected merge failure')
        }
        return inline.merge(updates)
      },
      close: () => inline.close(),
    }
    server = await startSyncServer({
      // The failure is injected into the merger, which only the log-replay fold uses.
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        store: 'memory',
        logLevel: 'silent',
        compaction: false,
        compactFromMemory: false,
      },
      merger,
    })
    let value = await scrapeMetrics(server!.port)
    expect(value('colloquy_compaction_runs_total', 'result="success"')).toBeNaN()
    expect(value('colloquy_compaction_seconds_count')).toBe(0)

    await write('s', 5, 'a')
    expect((await compact('s')).status).toBe(200)
    // Nothing new since the checkpoint: skipped.
    expect((await compact('s')).status).toBe(200)
    await write('s', 3, 'b')
    failNext = true
    expect((await compact('s')).status).toBe(500)

    value = await scrapeMetrics(server!.port)
    expect(value('colloquy_compaction_runs_total', 'result="success"')).toBe(1)
    expect(value('colloquy_compaction_runs_total', 'result="skipped"')).toBe(1)
    expect(value('colloquy_compaction_runs_total', 'result="failure"')).toBe(1)
    // Success and failure are timed; a skipped run is not.
    expect(value('colloquy_compaction_seconds_count')).toBe(2)
    expect(value('colloquy_compaction_seconds_sum')).toBeGreaterThan(0)

    // The failed session compacts on the next try.
    expect((await compact('s')).status).toBe(200)
    value = await scrapeMetrics(server!.port)
    expect(value('colloquy_compaction_runs_total', 'result="success"')).toBe(2)
  })

  it('counts runs of the background compactor (LevelDB, worker thread)', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-compaction-metrics-'))
    server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        dataDir,
        logLevel: 'silent',
        compaction: true,
        compactIntervalMs: 50,
        compactMinUpdates: 10,
        compactMaxUpdates: 20,
      },
    })
    await write('busy', 30, 'k')
    // Bounded polling: /metrics has no event to wait on.
    const deadline = Date.now() + 10_000
    let successes = Number.NaN
    while (!(successes >= 1)) {
      if (Date.now() > deadline) throw new Error('timed out: background compaction not counted')
      await new Promise((resolve) => setTimeout(resolve, 25))
      successes = (await scrapeMetrics(server!.port))('colloquy_compaction_runs_total', 'result="success"')
    }
    const value = await scrapeMetrics(server!.port)
    expect(value('colloquy_compaction_seconds_count')).toBeGreaterThanOrEqual(1)
    expect(value('colloquy_compaction_runs_total', 'result="failure"')).toBeNaN()
    const meta = await server.store.getMeta('busy')
    expect(meta?.checkpointSeq).toBeGreaterThan(0)
  })
})
