// Proves classic-level's native binding loads on this platform: open, write, read, close.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ClassicLevel } from 'classic-level'
import { expect, it } from 'vitest'

it('loads the classic-level native binding and round-trips a value through a real database', async () => {
  const location = await mkdtemp(path.join(tmpdir(), 'colloquy-native-'))
  try {
    const db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    })
    await db.open()
    await db.batch([{ type: 'put', key: Uint8Array.of(1), value: Uint8Array.of(2, 3) }], { sync: true })
    expect([...((await db.get(Uint8Array.of(1))) ?? [])]).toEqual([2, 3])
    expect(db.status).toBe('open')
    await db.close()
  } finally {
    await rm(location, { recursive: true, force: true })
  }
})
