// The LevelDB offline cache (y-leveldb) in a temp dir: stored, closed, reopened, loaded.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createLeveldbCache } from '../../../client/offline/leveldb-cache.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-cache-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('LevelDB offline cache', () => {
  it('gives the next attach everything the document held, before and after the first attach', async () => {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'before. ')
    const cache = createLeveldbCache({ path: dir, name: 's1' })
    await cache.attach(doc)
    for (let i = 0; i < 20; i++) doc.getArray<number>('n').push([i])
    doc.getText('t').insert(8, 'after.')
    await cache.flush()
    await cache.close()
    await cache.close()

    const reloaded = new Y.Doc()
    const again = createLeveldbCache({ path: dir, name: 's1' })
    await again.attach(reloaded)
    expect(reloaded.getText('t').toString()).toBe('before. after.')
    expect(reloaded.getArray('n').toArray()).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(Y.encodeStateVector(reloaded)).toEqual(Y.encodeStateVector(doc))
    await again.close()
  })

  it('keeps sessions apart by name and refuses a second document', async () => {
    const a = new Y.Doc()
    const cache = createLeveldbCache({ path: dir, name: 'a' })
    await cache.attach(a)
    a.getText('t').insert(0, 'only in a')
    await expect(cache.attach(new Y.Doc())).rejects.toThrow('already attached')
    await cache.close()

    const b = new Y.Doc()
    const other = createLeveldbCache({ path: dir, name: 'b' })
    await other.attach(b)
    expect(b.getText('t').toString()).toBe('')
    await other.close()
  })
})
