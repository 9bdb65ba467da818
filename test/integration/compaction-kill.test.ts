// Crash during compaction: a child-process server compacts a growing session continuously (tiny
// thresholds) while a client streams acknowledged updates; SIGKILL inside a compaction, restart.
// The session must load, with every acknowledged update. Several rounds, seed printed.
// Deterministic in what it asserts (#13.9): each round waits for two compactions to finish while
// updates stream, then for the next one to start, and kills at a seeded point of it (a fraction of
// the last compaction's duration), instead of hoping a timer lands there.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as prng from 'lib0/prng'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import { startServerProcess } from '../helpers/server-process.js'
import { until } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let dataDir: string

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-compaction-kill-'))
})

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

// Compact whenever 300 updates follow the checkpoint, check every 10 ms, and keep no fine-grained
// history, so each compaction also trims: the riskiest combination for a crash.
const SERVER_ARGS = [
  '--compact-interval-ms',
  '10',
  '--compact-min-updates',
  '300',
  '--compact-max-updates',
  '300',
  '--retain-log-ms',
  '0',
  '--retain-checkpoints-ms',
  '0',
  '--log-level',
  'info',
  // The log-replay fold (the long path a kill can land in); the in-memory path is tested in
  // compaction-live.test.ts.
  '--compact-from-memory',
  'false',
  // Rounds last until a compaction finished and the next one started (seconds): no rate limits.
  ...['--updates-per-second', '1000000', '--updates-burst', '1000000'],
  ...['--update-bytes-per-second', String(1 << 30), '--update-bytes-burst', String(1 << 30)],
]

describe('kill -9 during compaction', () => {
  it('loads with every acknowledged update after SIGKILL at seeded points inside compactions', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`compaction kill -9 seed: ${seed}`)
    const gen = prng.create(seed)
    const rounds = 4
    // A kill can still land just after a compaction ended (it was shorter than the pipe's delay):
    // extra rounds, bounded, until one landed inside.
    const maxRounds = 8
    const acknowledged: string[] = []
    let compactions = 0
    let killsDuringCompaction = 0

    for (let round = 0; round < rounds || (killsDuringCompaction === 0 && round < maxRounds); round++) {
      const server = await startServerProcess(['--data', dataDir, ...SERVER_ARGS])
      const client = await connectWsPeer(server.url, 'big')
      await client.whenSynced(15_000)
      const map = client.peer.doc.getMap<string>('m')
      const missing = acknowledged.filter((key) => !map.has(key))
      expect(missing, `seed ${seed}, round ${round}`).toEqual([])

      const lastKeyOfCounter = new Map<number, number>()
      const keys: string[] = []
      let isStopped = false
      let closeCode = 0
      void client.closed.then((code) => {
        closeCode = code
        isStopped = true
      })
      const count = (pattern: RegExp): number => (server.output().match(pattern) ?? []).length
      const fraction = prng.real53(gen)
      let killNote = ''
      // The killer: bounded waits on the server's log, never a timer guessing where compaction is.
      const killer = (async () => {
        // Two finished: the first also starts the fold worker and takes longer than the rest, so a
        // kill scaled to it alone landed after the next one had ended (seed 34406, every round).
        await until(() => isStopped || count(/session compacted/g) > 1, 45_000, 'two compactions finished')
        const finished = count(/session compacted/g)
        await until(
          () => isStopped || count(/compacting session/g) > finished,
          15_000,
          'the next compaction started',
        )
        // Scaled to the shortest compaction seen (the first one also starts the fold worker), so
        // the kill lands inside this one; capped so that rounds stay short.
        const durations = [...server.output().matchAll(/"ms":(\d+)[^\n]*session compacted/g)]
        const shortestMs = Math.min(...durations.map((match) => Number(match[1])))
        const delayMs = Math.floor(fraction * 0.6 * Math.min(shortestMs, 1500))
        // A seeded point inside the compaction (not a synchronisation: where to cut).
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
        killNote = isStopped
          ? 'the socket closed before the kill'
          : `killed ${delayMs} ms into a compaction (the shortest took ${shortestMs} ms)`
      })()
        .catch((error: unknown) => {
          killNote = `killed without the signal: ${String(error)}`
        })
        .finally(() => server.child.kill('SIGKILL'))
      // Paced (about 2 updates per timer tick, near 1,000/s) so the stream lasts until the kill and
      // the log a compaction folds stays short on a loaded machine; bounded anyway.
      for (let i = 0; i < 200_000 && !isStopped; i++) {
        const key = `r${round}-${i}`
        // A few hundred bytes per update, so checkpoints and merges are not trivially small.
        map.set(key, `${key}:${'x'.repeat(prng.int32(gen, 50, 400))}`)
        keys.push(key)
        lastKeyOfCounter.set(client.peer.requestAck(), i)
        if (i % 2 === 0) await new Promise<void>((resolve) => setTimeout(resolve, 1))
      }
      await killer
      server.child.kill('SIGKILL')
      await server.exited
      await client.closed
      const roundCompactions = (server.output().match(/session compacted/g) ?? []).length
      const roundStarts = (server.output().match(/compacting session/g) ?? []).length
      compactions += roundCompactions
      // A start without its end: the kill landed inside a compaction.
      if (roundStarts > roundCompactions) killsDuringCompaction++
      const highestAcked = Math.max(0, ...client.peer.acks)
      const lastDurableIndex = lastKeyOfCounter.get(highestAcked) ?? -1
      acknowledged.push(...keys.slice(0, lastDurableIndex + 1))
      console.log(
        `round ${round}: ${killNote} (socket closed ${closeCode}), ${keys.length} sent, ${lastDurableIndex + 1} acked, ${roundStarts} compactions started, ${roundCompactions} finished`,
      )
    }

    console.log(`${compactions} compactions finished, ${killsDuringCompaction} kills inside one`)
    expect(compactions, 'compactions finished while updates streamed').toBeGreaterThan(0)
    expect(killsDuringCompaction, 'some kills landed inside a compaction').toBeGreaterThan(0)
    const server = await startServerProcess(['--data', dataDir, ...SERVER_ARGS])
    try {
      const client = await connectWsPeer(server.url, 'big')
      await client.whenSynced(15_000)
      const map = client.peer.doc.getMap<string>('m')
      expect(acknowledged.length).toBeGreaterThan(0)
      expect(
        acknowledged.filter((key) => !map.has(key)),
        `seed ${seed}`,
      ).toEqual([])
      client.close()
    } finally {
      server.child.kill('SIGKILL')
      await server.exited
    }
    // The store is consistent: meta counts match the log, the checkpoint is the latest.
    const store = await openLeveldbStore({ location: dataDir })
    try {
      const meta = await store.getMeta('big')
      const log = await store.readLog('big')
      expect(meta?.logCount).toBe(log.length)
      expect(meta?.logBytes).toBe(log.reduce((sum, entry) => sum + entry.update.byteLength, 0))
      const [latest] = await store.listCheckpoints('big', { reverse: true, limit: 1 })
      expect(meta?.checkpointSeq).toBe(latest?.seq ?? 0)
    } finally {
      await store.close()
    }
  }, 180_000)
})
