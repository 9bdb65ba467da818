// Storage faults at the server level: while commits fail nothing is acknowledged, writes are
// refused with a retryable close, /readyz fails; once storage recovers everything queued is written
// and acknowledged, nothing lost.

import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let server: SyncServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

describe('storage faults', () => {
  it('acks nothing while commits fail, refuses writes, and writes everything once storage recovers', async () => {
    const controllable = createControllableStore(createMemoryStore())
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent' },
      store: controllable.store,
    })
    const url = `ws://127.0.0.1:${server.port}`
    const writer = await connectWsPeer(url, 'faulty')
    await writer.whenSynced(5_000)

    controllable.failNext(Number.POSITIVE_INFINITY)
    writer.peer.doc.getText('t').insert(0, 'must not be lost')
    const counter = writer.peer.requestAck()
    await withTimeout(controllable.whenAppendCalls(2), 5_000, 'commit retried')
    expect(writer.peer.acks).not.toContain(counter)
    expect(server.isReady).toBe(false)
    const ready = await fetch(`http://127.0.0.1:${server.port}/readyz`)
    expect(ready.status).toBe(503)

    // A second writer is refused while storage fails; reads are still served.
    const second = await connectWsPeer(url, 'faulty')
    await second.whenSynced(5_000)
    expect(second.peer.doc.getText('t').toString()).toBe('must not be lost')
    second.peer.doc.getText('t').insert(0, 'refused: ')
    expect(await withTimeout(second.closed, 5_000, 'second refused')).toBe(CloseCode.StorageUnavailable)

    controllable.heal()
    await writer.peer.whenAcked(counter)
    expect(server.isReady).toBe(true)
    const stored = await controllable.store.load('faulty')
    expect(stored.log.length).toBe(1)
    expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(200)

    // The refused writer reconnects and its edit, kept on its side, arrives by state vector.
    const back = await connectWsPeer(url, 'faulty', { doc: second.peer.doc })
    await back.whenSynced(5_000)
    await back.peer.whenAcked(back.peer.requestAck())
    await until(
      () => writer.peer.doc.getText('t').toString() === 'refused: must not be lost',
      5_000,
      'writer sees the recovered edit',
    )
    writer.close()
    back.close()
  })
})
