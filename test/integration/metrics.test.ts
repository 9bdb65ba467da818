// /metrics after a known workload: the counters say what happened.

import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { scrapeMetrics } from '../helpers/http.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let server: SyncServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

describe('/metrics', () => {
  it('counts connections, updates, relays, commits, acks, storage failures and rejects', async () => {
    const controllable = createControllableStore(createMemoryStore())
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent' },
      store: controllable.store,
    })
    const url = `ws://127.0.0.1:${server.port}`
    const writer = await connectWsPeer(url, 'measured')
    const reader = await connectWsPeer(url, 'measured')
    await reader.whenSynced(5_000)
    for (let i = 0; i < 10; i++) writer.peer.doc.getMap('m').set(`k${i}`, i)
    await writer.peer.whenAcked(writer.peer.requestAck())
    await until(() => reader.peer.doc.getMap('m').size === 10, 5_000, 'reader has all')

    let value = await scrapeMetrics(server!.port)
    expect(value('colloquy_connections')).toBe(2)
    expect(value('colloquy_connections_opened_total')).toBe(2)
    expect(value('colloquy_sessions_loaded')).toBe(1)
    expect(value('colloquy_updates_in_total')).toBe(10)
    expect(value('colloquy_relayed_frames_total')).toBe(10)
    expect(value('colloquy_commit_batch_entries_sum')).toBe(10)
    expect(value('colloquy_commit_seconds_count')).toBeGreaterThanOrEqual(1)
    expect(value('colloquy_storage_failing')).toBe(0)

    // Storage fails: the failure is counted, the gauge says so, and a writer is refused.
    controllable.failNext(Number.POSITIVE_INFINITY)
    writer.peer.doc.getMap('m').set('during', 1)
    await withTimeout(controllable.whenAppendCalls(controllable.appendCalls + 2), 5_000, 'retries')
    const refused = await connectWsPeer(url, 'measured')
    refused.peer.doc.getMap('m').set('refused', 1)
    await withTimeout(refused.closed, 5_000, 'refused writer closed')
    value = await scrapeMetrics(server!.port)
    expect(value('colloquy_commit_failures_total')).toBeGreaterThanOrEqual(2)
    expect(value('colloquy_storage_failing')).toBe(1)
    expect(value('colloquy_rejects_total', 'reason="storage-unavailable"')).toBe(1)

    controllable.heal()
    await writer.peer.whenAcked(writer.peer.requestAck())
    value = await scrapeMetrics(server!.port)
    expect(value('colloquy_storage_failing')).toBe(0)
    expect(value('colloquy_updates_in_total')).toBe(11)
    expect(value('colloquy_ack_seconds_count')).toBeGreaterThanOrEqual(1)
    expect(value('colloquy_connections_closed_total', 'code="4505"')).toBe(1)
    writer.close()
    reader.close()
  })
})
