// History benchmarks. [H1] cold load of a 100,000-update session, uncompacted vs compacted, and the
// classic y-leveldb on the same history; [H2] compaction throughput; [H3] fan-out latency p99 of a
// busy session while a 100,000-update session compacts (and without, as the baseline).
// Usage: npm run bench:history [-- --updates 100000]. Writes bench/results/history-<date>.json.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { LeveldbPersistence } from 'y-leveldb'
import * as Y from 'yjs'
import { compactSession } from '../../server/compaction/compactor.js'
import { createWorkerMerger } from '../../server/compaction/worker-merger.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import type { Store } from '../../server/persistence/store.js'
import { startSyncServer } from '../../server/sync-server.js'
import { connectWsPeer } from '../../test/helpers/ws-peer.js'

const { values } = parseArgs({ options: { updates: { type: 'string' } } })
const UPDATES = Number(values.updates ?? 100_000)

/** A realistic small-update history: a streamed assistant message, a few characters per update. */
function makeHistory(count: number): Uint8Array[] {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  const messages = doc.getArray<Y.Map<unknown>>('messages')
  let text: Y.Text | undefined
  for (let i = 0; updates.length < count; i++) {
    if (i % 500 === 0) {
      const map = new Y.Map<unknown>()
      text = new Y.Text()
      doc.transact(() => {
        messages.push([map])
        map.set('id', `m${i}`)
        map.set('content', text)
      })
      continue
    }
    text!.insert(text!.length, `tok${i % 97} `)
  }
  return updates
}

function docOf(parts: readonly Uint8Array[]): Y.Doc {
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const part of parts) Y.applyUpdate(doc, part)
  })
  return doc
}

async function coldLoad(
  location: string,
  sessionId: string,
): Promise<{ ms: number; bytesRead: number; textLength: number }> {
  const store = await openLeveldbStore({ location })
  const started = performance.now()
  const stored = await store.load(sessionId)
  const parts = stored.checkpoint === undefined ? [] : [stored.checkpoint.state]
  for (const entry of stored.log) parts.push(entry.update)
  const doc = docOf(parts)
  const ms = performance.now() - started
  await store.close()
  const bytesRead = parts.reduce((sum, part) => sum + part.byteLength, 0)
  return { ms, bytesRead, textLength: doc.getArray('messages').length }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

async function fanOut(dataDir: string, bigSession: string, isCompacting: boolean) {
  const server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', compaction: false },
  })
  const url = `ws://127.0.0.1:${server.port}`
  const writer = await connectWsPeer(url, 'busy')
  const readers = await Promise.all(Array.from({ length: 8 }, () => connectWsPeer(url, 'busy')))
  await writer.peer.whenAcked(writer.peer.requestAck())
  const latencies: number[] = []
  const sentAt = new Map<string, number>()
  for (const reader of readers) {
    reader.peer.doc.getMap<number>('m').observe((event) => {
      for (const key of event.keysChanged) {
        const at = sentAt.get(key)
        if (at !== undefined) latencies.push(performance.now() - at)
      }
    })
  }
  // Event-loop delay of the process (server and peers share it) while the updates flow.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  loopDelay.enable()
  const compaction = isCompacting ? server.compaction.compactNow(bigSession) : Promise.resolve(undefined)
  const started = performance.now()
  let i = 0
  // 200 updates/s for the duration of the compaction (at least 2 s).
  let isDone = false
  void compaction.finally(() => {
    isDone = true
  })
  while (!isDone || performance.now() - started < 2_000) {
    const key = `k${i++}`
    sentAt.set(key, performance.now())
    writer.peer.doc.getMap<number>('m').set(key, i)
    await new Promise((resolve) => setTimeout(resolve, 5))
    if (performance.now() - started > 60_000) break
  }
  const result = await compaction
  loopDelay.disable()
  await new Promise((resolve) => setTimeout(resolve, 200))
  for (const peer of [writer, ...readers]) peer.close()
  await server.close()
  const sorted = [...latencies].sort((a, b) => a - b)
  return {
    updates: i,
    deliveries: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
    compactionMs: result?.durationMs,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
  }
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'colloquy-bench-history-'))
  try {
    const updates = makeHistory(UPDATES)
    const totalBytes = updates.reduce((sum, update) => sum + update.byteLength, 0)
    console.log(`history: ${updates.length} updates, ${totalBytes} bytes`)
    const location = path.join(tmp, 'colloquy')
    let store: Store = await openLeveldbStore({ location, sync: false })
    for (let start = 0; start < updates.length; start += 10_000) {
      await store.append(
        updates
          .slice(start, start + 10_000)
          .map((update, i) => ({ sessionId: 'big', time: 1_000 + start + i, update })),
      )
    }
    await store.close()
    const uncompacted = await coldLoad(location, 'big')
    console.log(
      `[H1.1] cold load, uncompacted: ${uncompacted.ms.toFixed(0)} ms, ${uncompacted.bytesRead} bytes read`,
    )

    store = await openLeveldbStore({ location })
    const merger = createWorkerMerger()
    const retention = {
      keepLogMs: DEFAULT_CONFIG.retainLogMs,
      keepCheckpointsMs: DEFAULT_CONFIG.retainCheckpointsMs,
      checkpointSpacingMs: DEFAULT_CONFIG.checkpointSpacingMs,
    }
    await merger.merge([]) // start the thread outside the measurement
    const result = await compactSession('big', { store, merger, retention })
    await merger.close()
    await store.close()
    const throughput = (result!.folded / result!.durationMs) * 1000
    console.log(
      `[H2] compaction: ${result!.folded} updates in ${result!.durationMs.toFixed(0)} ms = ${throughput.toFixed(0)} updates/s, checkpoint ${result!.stateBytes} bytes`,
    )
    const compacted = await coldLoad(location, 'big')
    console.log(
      `[H1.2] cold load, compacted: ${compacted.ms.toFixed(0)} ms, ${compacted.bytesRead} bytes read`,
    )
    if (compacted.textLength !== uncompacted.textLength) throw new Error('compacted load differs')

    // [H1.3] the classic adapter on the same history.
    const classicDir = path.join(tmp, 'yleveldb')
    let classic = new LeveldbPersistence(classicDir)
    const storeStarted = performance.now()
    await Promise.all(updates.map((update) => classic.storeUpdate('big', update)))
    const storeMs = performance.now() - storeStarted
    await classic.destroy()
    classic = new LeveldbPersistence(classicDir)
    const classicStarted = performance.now()
    const classicDoc = await classic.getYDoc('big')
    const classicMs = performance.now() - classicStarted
    await classic.destroy()
    classic = new LeveldbPersistence(classicDir)
    const classicSecondStarted = performance.now()
    await classic.getYDoc('big')
    const classicSecondMs = performance.now() - classicSecondStarted
    await classic.destroy()
    if (classicDoc.getArray('messages').length !== uncompacted.textLength)
      throw new Error('y-leveldb load differs')
    console.log(
      `[H1.3] y-leveldb: store ${storeMs.toFixed(0)} ms; first cold getYDoc ${classicMs.toFixed(0)} ms (merges and rewrites its log), next ${classicSecondMs.toFixed(0)} ms`,
    )

    // [H3] fan-out p99 of a busy session, without and with a 100k-update compaction running.
    const fanDir = path.join(tmp, 'fanout')
    store = await openLeveldbStore({ location: fanDir, sync: false })
    for (let start = 0; start < updates.length; start += 10_000) {
      await store.append(
        updates
          .slice(start, start + 10_000)
          .map((update, i) => ({ sessionId: 'big', time: 1_000 + start + i, update })),
      )
    }
    await store.close()
    const idle = await fanOut(fanDir, 'big', false)
    console.log(
      `[H3.1] fan-out, no compaction: p50 ${idle.p50Ms.toFixed(2)} ms, p99 ${idle.p99Ms.toFixed(2)} ms, max ${idle.maxMs.toFixed(2)} ms (${idle.deliveries} deliveries; event-loop delay p99 ${idle.loopDelayP99Ms.toFixed(1)} ms, max ${idle.loopDelayMaxMs.toFixed(1)} ms)`,
    )
    const busy = await fanOut(fanDir, 'big', true)
    console.log(
      `[H3.2] fan-out while compacting 100k: p50 ${busy.p50Ms.toFixed(2)} ms, p99 ${busy.p99Ms.toFixed(2)} ms, max ${busy.maxMs.toFixed(2)} ms (${busy.deliveries} deliveries; compaction ${busy.compactionMs?.toFixed(0)} ms; event-loop delay p99 ${busy.loopDelayP99Ms.toFixed(1)} ms, max ${busy.loopDelayMaxMs.toFixed(1)} ms)`,
    )

    const report = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      updates: updates.length,
      historyBytes: totalBytes,
      H1: {
        uncompacted,
        compacted,
        yLeveldb: { storeMs, firstGetYDocMs: classicMs, nextGetYDocMs: classicSecondMs },
      },
      H2: {
        folded: result!.folded,
        ms: result!.durationMs,
        updatesPerSecond: throughput,
        checkpointBytes: result!.stateBytes,
      },
      H3: { idle, compacting: busy },
    }
    await mkdir('bench/results', { recursive: true })
    const file = `bench/results/history-${report.date.replace(/[:.]/g, '-')}.json`
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`)
    console.log(`wrote ${file}`)
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

await main()
