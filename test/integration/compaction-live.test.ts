// Compaction of a loaded session from its in-memory document (Session.snapshot): no log replay,
// and the checkpoint is written only once every seq it stands for is durable.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { Merger } from '../../server/compaction/merge.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { startSyncServer } from '../../server/sync-server.js'
import { createControllableStore } from '../helpers/controllable-store.js'
import { until } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

/** A merger that fails the test if the log is replayed. */
const noReplay: Merger = {
  merge: () => Promise.reject(new Error('log replay was not expected')),
  close: async () => undefined,
}

function docOf(state: Uint8Array): Y.Doc {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  return doc
}

describe('compaction from the in-memory document', () => {
  it('checkpoints a loaded session without replaying its log, once its last seq is durable', async () => {
    const inner = createMemoryStore()
    const controllable = createControllableStore(inner)
    let release: () => void = () => undefined
    const server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', logLevel: 'silent', compaction: false },
      store: controllable.store,
      merger: noReplay,
    })
    try {
      const client = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'live')
      await client.whenSynced()
      const map = client.peer.doc.getMap<number>('m')
      for (let i = 0; i < 20; i++) map.set(`k${i}`, i)
      await client.peer.whenAcked(client.peer.requestAck())
      // Appends are held from here: the newest updates stay queued.
      release = controllable.hold()
      for (let i = 20; i < 25; i++) map.set(`k${i}`, i)
      map.delete('k3')
      const session = server.registry.get('live')!
      await until(() => session.updatesQueued === 26, 5_000, 'updates received')
      // The log numbers them only when they commit: the session knows no seq above 20 yet.
      expect(session.lastSeq).toBe(20)
      expect((await inner.getMeta('live'))?.lastSeq).toBe(20)

      const compacting = fetch(`http://127.0.0.1:${server.port}/sessions/live/compact`, { method: 'POST' })
      // Seqs 21…26 are not durable: no checkpoint may claim them yet.
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(await inner.listCheckpoints('live')).toEqual([])
      release()
      expect((await compacting).status).toBe(200)

      const [checkpoint, ...others] = await inner.listCheckpoints('live')
      expect(others).toEqual([])
      expect(checkpoint?.seq).toBe(26)
      expect((await inner.getMeta('live'))?.lastSeq).toBe(26)
      expect(docOf(checkpoint!.state).getMap('m').toJSON()).toEqual(map.toJSON())
      expect(Y.encodeStateVector(docOf(checkpoint!.state))).toEqual(Y.encodeStateVector(client.peer.doc))
      // A load after it (what a restart does) rebuilds the same document.
      const stored = await inner.load('live')
      const reloaded = docOf(stored.checkpoint!.state)
      for (const entry of stored.log) Y.applyUpdate(reloaded, entry.update)
      expect(reloaded.getMap('m').toJSON()).toEqual(map.toJSON())
      client.close()
    } finally {
      release()
      await server.close()
    }
  })
})
