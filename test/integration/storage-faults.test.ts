// Storage faults at the server level: while commits fail nothing is acknowledged, writes are
// refused with a retryable close, /readyz fails; once storage recovers everything queued is written
// and acknowledged, nothing lost. A failure no retry can fix stops only its own session (#13.7).

import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { ERRORS } from '../../shared/errors.js'
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

  it('stops only the conflicted session when the store refuses its updates for good (regression #13.7)', async () => {
    const inner = createMemoryStore()
    const controllable = createControllableStore(inner)
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent' },
      store: controllable.store,
    })
    const url = `ws://127.0.0.1:${server.port}`
    const conflicted = await connectWsPeer(url, 'conflicted')
    const healthy = await connectWsPeer(url, 'healthy')
    await conflicted.whenSynced(5_000)
    await healthy.whenSynced(5_000)
    conflicted.peer.doc.getText('t').insert(0, 'first')
    await conflicted.peer.whenAcked(conflicted.peer.requestAck())

    // Another writer stored an update behind the loaded session's back (the store numbers it: no
    // seq conflict is possible any more), and the store refuses the session's next update for good
    // (as it refuses an entry it deems invalid): no retry can fix that.
    const other = new Y.Doc()
    other.getMap('m').set('other', 'writer')
    await inner.append([{ sessionId: 'conflicted', time: Date.now(), update: Y.encodeStateAsUpdate(other) }])
    controllable.failSession('conflicted', new RangeError('refused for good'))
    const callsBefore = controllable.appendCalls
    conflicted.peer.doc.getText('t').insert(5, ' second')
    const refused = conflicted.peer.requestAck()
    healthy.peer.doc.getText('t').insert(0, 'meanwhile')
    const meanwhile = healthy.peer.requestAck()

    expect(await withTimeout(conflicted.closed, 5_000, 'conflicted writer closed')).toBe(
      ERRORS.internal.closeCode,
    )
    expect(conflicted.peer.acks).not.toContain(refused)
    controllable.heal()
    // The other session is acked and keeps writing; the server never stopped being ready.
    await healthy.peer.whenAcked(meanwhile)
    healthy.peer.doc.getText('t').insert(0, 'after ')
    await healthy.peer.whenAcked(healthy.peer.requestAck())
    expect(server.isReady).toBe(true)
    expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(200)
    // No retry loop: the refused session's updates were tried once, plus once on their own at most.
    expect(
      controllable.appendBatches.slice(callsBefore).filter((b) => b.some((e) => e.sessionId === 'conflicted'))
        .length,
    ).toBeLessThanOrEqual(2)

    // The writer reconnects: the session reloads from disk and the edit it kept arrives by state vector.
    const back = await connectWsPeer(url, 'conflicted', { doc: conflicted.peer.doc })
    await back.whenSynced(5_000)
    await back.peer.whenAcked(back.peer.requestAck())
    const reader = await connectWsPeer(url, 'conflicted')
    await reader.whenSynced(5_000)
    expect(reader.peer.doc.getText('t').toString()).toBe('first second')
    expect(reader.peer.doc.getMap('m').get('other')).toBe('writer')
    expect((await inner.load('conflicted')).log.map((e) => e.seq)).toEqual([1, 2, 3])
    back.close()
    reader.close()
    healthy.close()
  })
})
