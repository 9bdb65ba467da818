// The stores compared by the store benchmark, behind one `submit` that resolves on the ack:
// our write queue over the LevelDB store, and y-leveldb's LeveldbPersistence#storeUpdate.

import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import { createWriteQueue } from '../../server/persistence/write-queue.js'
import type { BenchTarget } from './driver.js'

/** The part of y-leveldb 0.2.0 the benchmark uses (its typings are not reachable through its `exports`). */
interface YLeveldbModule {
  readonly LeveldbPersistence: new (location: string) => YLeveldbPersistence
  getCurrentUpdateClock(db: unknown, docName: string): Promise<number>
}

interface YLeveldbPersistence {
  storeUpdate(docName: string, update: Uint8Array): Promise<number>
  destroy(): Promise<void>
  _transact<T>(run: (db: unknown) => Promise<T>): Promise<T>
}

async function importYLeveldb(): Promise<YLeveldbModule> {
  // Why a variable specifier: a literal one makes tsc reject the untyped import (TS7016); the
  // module is described by the interface above instead.
  const specifier = 'y-leveldb'
  return (await import(specifier)) as YLeveldbModule
}

/** A target plus how to check what it stored and how to shut it down. */
export interface OpenTarget extends BenchTarget {
  /** Waits for everything submitted, closes, reopens and returns the number of stored updates. */
  closeAndCount(): Promise<number>
  /** Batches written, when the target batches (ours). */
  readonly batches?: () => number
}

/** Our write queue in front of our LevelDB store, acked by the queue's onCommit. */
export async function openColloquyTarget(
  location: string,
  sessions: number,
  sync: boolean,
): Promise<OpenTarget> {
  const store = await openLeveldbStore({ location, sync })
  const sessionIds = Array.from({ length: sessions }, (_, i) => `bench-${i}`)
  // Per session, in queue order: the queue ordinal and the resolver of each update not yet acked.
  const waiting = sessionIds.map(() => [] as { ordinal: number; resolve: () => void }[])
  const indexOf = new Map(sessionIds.map((id, i) => [id, i]))
  let batches = 0
  const queue = createWriteQueue({
    store,
    onCommit(durable) {
      batches++
      for (const [sessionId, { ordinal }] of durable) {
        const pending = waiting[indexOf.get(sessionId)!]!
        let count = 0
        while (count < pending.length && pending[count]!.ordinal <= ordinal) pending[count++]!.resolve()
        pending.splice(0, count)
      }
    },
    onError(error, attempt) {
      console.error(`write queue: batch failed (attempt ${attempt})`, error)
    },
  })
  return {
    submit(session, update) {
      return new Promise<void>((resolve) => {
        const ordinal = queue.enqueue({ sessionId: sessionIds[session]!, time: Date.now(), update })
        waiting[session]!.push({ ordinal, resolve })
      })
    },
    batches: () => batches,
    async closeAndCount() {
      await queue.close()
      await store.close()
      const reopened = await openLeveldbStore({ location })
      try {
        const metas = await reopened.listSessions()
        return metas.reduce((sum, meta) => sum + meta.logCount, 0)
      } finally {
        await reopened.close()
      }
    },
  }
}

/** y-leveldb: every update is one `storeUpdate`, acked when its promise resolves. */
export async function openYLeveldbTarget(location: string, sessions: number): Promise<OpenTarget> {
  const { LeveldbPersistence, getCurrentUpdateClock } = await importYLeveldb()
  const names = Array.from({ length: sessions }, (_, i) => `bench-${i}`)
  let persistence = new LeveldbPersistence(location)
  return {
    async submit(session, update) {
      await persistence.storeUpdate(names[session]!, update)
    },
    async closeAndCount() {
      await persistence.destroy()
      persistence = new LeveldbPersistence(location)
      let total = 0
      for (const name of names) {
        // The highest update clock of a document is its update count minus one (-1 when empty).
        const clock = await persistence._transact((db) => getCurrentUpdateClock(db, name))
        total += clock + 1
      }
      await persistence.destroy()
      return total
    },
  }
}
