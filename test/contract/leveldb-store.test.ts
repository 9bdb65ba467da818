// Runs the Store contract against the LevelDB store, each test in a fresh temp directory, plus
// the checks only a disk-backed store has: the format key and refusing foreign databases.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ClassicLevel } from 'classic-level'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FORMAT_KEY } from '../../server/persistence/keys.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import type { Store } from '../../server/persistence/store.js'
import { runStoreContract } from './store-contract.js'

async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'colloquy-leveldb-'))
}

runStoreContract('leveldb', async () => {
  const location = await makeTempDir()
  let current: Store = await openLeveldbStore({ location })
  return {
    store: current,
    async reopen() {
      current = await openLeveldbStore({ location })
      return current
    },
    async cleanup() {
      await current.close()
      await rm(location, { recursive: true, force: true })
    },
  }
})

describe('openLeveldbStore', () => {
  let location: string

  beforeEach(async () => {
    location = await makeTempDir()
  })

  afterEach(async () => {
    await rm(location, { recursive: true, force: true })
  })

  it('writes the format key into a new database', async () => {
    const store = await openLeveldbStore({ location })
    await store.close()
    const db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    })
    const format = await db.get(FORMAT_KEY)
    await db.close()
    expect(new TextDecoder().decode(format)).toBe('1')
  })

  it('refuses a database of an unknown format version', async () => {
    const db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    })
    await db.put(FORMAT_KEY, new TextEncoder().encode('2'))
    await db.close()
    await expect(openLeveldbStore({ location })).rejects.toThrow(/storage format "2".*only format 1/)
  })

  it('refuses a non-empty database without a format key', async () => {
    const db = new ClassicLevel(location)
    await db.put('some-other-app', 'value')
    await db.close()
    await expect(openLeveldbStore({ location })).rejects.toThrow(/without a Colloquy format key/)
    // The refused directory was closed again: it can be opened once more.
    const again = new ClassicLevel(location)
    expect(await again.get('some-other-app')).toBe('value')
    await again.close()
  })

  it('works without fsync when sync is false', async () => {
    const store = await openLeveldbStore({ location, sync: false })
    await store.append([{ sessionId: 's', time: 1, update: Uint8Array.of(1, 2, 3) }])
    expect((await store.load('s')).log.map((entry) => [...entry.update])).toEqual([[1, 2, 3]])
    await store.close()
  })

  it('waits for operations in flight before closing', async () => {
    const store = await openLeveldbStore({ location })
    const append = store.append([{ sessionId: 's', time: 1, update: new Uint8Array(10) }])
    const closed = store.close()
    await append
    await closed
    const reopened = await openLeveldbStore({ location })
    expect((await reopened.getMeta('s'))?.logCount).toBe(1)
    await reopened.close()
  })
})
