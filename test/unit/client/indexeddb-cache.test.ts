// The IndexedDB offline cache (y-indexeddb) on fake-indexeddb: what one "page load" stores, the
// next one loads, alone and under a sync client that cannot reach any server.

import 'fake-indexeddb/auto'
import { describe, expect, it } from 'vitest'
import { IndexeddbPersistence } from 'y-indexeddb'
import * as Y from 'yjs'
import { createIndexeddbCache } from '../../../client/offline/indexeddb-cache.js'
import { createSyncClient } from '../../../client/sync-client.js'
import { createFakeSockets } from '../../helpers/client-fake-socket.js'

let nextName = 0
function freshName(): string {
  return `colloquy-test-${nextName++}`
}

describe('IndexedDB offline cache', () => {
  it('gives the next attach everything the document held, before and after the first attach', async () => {
    const name = freshName()
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'before attach. ')
    const cache = createIndexeddbCache({ name })
    await cache.attach(doc)
    doc.getText('t').insert(doc.getText('t').length, 'after attach.')
    doc.getArray<string>('lines').push(['one', 'two'])
    await cache.flush()
    await cache.close()

    const reloaded = new Y.Doc()
    const again = createIndexeddbCache({ name })
    await again.attach(reloaded)
    expect(reloaded.getText('t').toString()).toBe('before attach. after attach.')
    expect(reloaded.getArray('lines').toArray()).toEqual(['one', 'two'])
    expect(Y.encodeStateVector(reloaded)).toEqual(Y.encodeStateVector(doc))
    await again.close()
  })

  it('reads what a plain y-indexeddb persistence of the same name wrote', async () => {
    const name = freshName()
    const doc = new Y.Doc()
    const plain = new IndexeddbPersistence(name, doc)
    await plain.whenSynced
    doc.getMap('m').set('k', 'v')
    await plain.destroy()

    const reloaded = new Y.Doc()
    const cache = createIndexeddbCache({ name })
    await cache.attach(reloaded)
    expect(reloaded.getMap('m').get('k')).toBe('v')
    await cache.close()
  })

  it('loads offline edits into a restarted sync client before it connects', async () => {
    const name = freshName()
    const fakes = createFakeSockets()
    const firstRun = createSyncClient({
      url: 'ws://unreachable.test',
      sessionId: 'browser',
      WebSocket: fakes.WebSocket,
      offlineCache: createIndexeddbCache({ name }),
      connect: false,
    })
    await firstRun.whenLoaded()
    firstRun.doc.getArray<string>('lines').push(['typed offline'])
    expect(firstRun.hasLocalChanges).toBe(true)
    await firstRun.destroy()

    const secondRun = createSyncClient({
      url: 'ws://unreachable.test',
      sessionId: 'browser',
      WebSocket: fakes.WebSocket,
      offlineCache: createIndexeddbCache({ name }),
      connect: false,
    })
    await secondRun.whenLoaded()
    expect(secondRun.doc.getArray('lines').toArray()).toEqual(['typed offline'])
    // Nobody has acknowledged it yet: it still counts as a local change to upload.
    expect(secondRun.hasLocalChanges).toBe(true)
    expect(fakes.sockets).toHaveLength(0)
    await secondRun.destroy()
  })

  it('can be closed while it is still opening', async () => {
    const cache = createIndexeddbCache({ name: freshName() })
    const attaching = cache.attach(new Y.Doc())
    await cache.close()
    await attaching
  })
})
