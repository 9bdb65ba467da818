// Durability: a child-process server is killed with SIGKILL while a client streams updates with
// acks on; after a restart every acknowledged update must be there. Several rounds, seed printed.
// SIGKILL keeps the page cache, so this cannot tell whether fsync happened: power-loss.test.ts
// and test/contract/leveldb-sync.test.ts prove that.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as prng from 'lib0/prng'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServerProcess } from '../helpers/server-process.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let dataDir: string

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-kill-'))
})

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

describe('kill -9 durability', () => {
  it('keeps every acknowledged update across SIGKILL and restart', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`kill -9 seed: ${seed}`)
    const gen = prng.create(seed)
    const rounds = 4
    const acknowledged: string[] = []

    for (let round = 0; round < rounds; round++) {
      const server = await startServerProcess(['--data', dataDir, '--log-level', 'info'])
      const client = await connectWsPeer(server.url, 'durable')
      await client.whenSynced(10_000)
      // Everything acknowledged in earlier rounds must have survived their kills.
      const map = client.peer.doc.getMap<number>('m')
      const missing = acknowledged.filter((key) => !map.has(key))
      expect(missing, `seed ${seed}, round ${round}`).toEqual([])

      const lastKeyOfCounter = new Map<number, number>()
      const keys: string[] = []
      let isStopped = false
      void client.closed.then(() => {
        isStopped = true
      })
      const killAfterMs = prng.int32(gen, 150, 700)
      const killer = setTimeout(() => server.child.kill('SIGKILL'), killAfterMs)
      // Bounded: at most 20,000 updates or until the socket dies.
      for (let i = 0; i < 20_000 && !isStopped; i++) {
        const key = `r${round}-${i}`
        map.set(key, i)
        keys.push(key)
        lastKeyOfCounter.set(client.peer.requestAck(), i)
        if (i % 4 === 0) await new Promise<void>((resolve) => setImmediate(resolve))
      }
      clearTimeout(killer)
      server.child.kill('SIGKILL')
      await server.exited
      await client.closed

      const highestAcked = Math.max(0, ...client.peer.acks)
      const lastDurableIndex = lastKeyOfCounter.get(highestAcked) ?? -1
      acknowledged.push(...keys.slice(0, lastDurableIndex + 1))
      console.log(
        `round ${round}: killed after ${killAfterMs} ms, ${keys.length} sent, ${lastDurableIndex + 1} acked`,
      )
    }

    const server = await startServerProcess(['--data', dataDir, '--log-level', 'info'])
    try {
      const client = await connectWsPeer(server.url, 'durable')
      await client.whenSynced(10_000)
      const map = client.peer.doc.getMap<number>('m')
      expect(acknowledged.length, 'some updates were acknowledged').toBeGreaterThan(0)
      expect(
        acknowledged.filter((key) => !map.has(key)),
        `seed ${seed}`,
      ).toEqual([])
      client.close()
    } finally {
      server.child.kill('SIGKILL')
      await server.exited
    }
  })
})
