// Proof (a) of "an ack means on disk": every write the LevelDB store makes reaches the native
// binding with `sync: true`, and a group commit is reported durable (what releases acks) only after
// the synced write holding its entries completed. Observed at classic-level's private write methods,
// the last JavaScript the options pass through before LevelDB's WriteOptions.sync. Also: the
// directory is fsync'd at open and after LevelDB switched log files (see STORAGE.md).

import { mkdtemp, open as openFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ClassicLevel } from 'classic-level'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { decodeLogKey, encodeLogKey } from '../../server/persistence/keys.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import type { Store } from '../../server/persistence/store.js'
import { createWriteQueue } from '../../server/persistence/write-queue.js'

/** One write that reached classic-level's binding. */
interface ObservedWrite {
  readonly kind: 'batch' | 'chained-batch' | 'put' | 'del'
  readonly isSync: boolean
  /** Log keys (session, seq) the write held, for chained batches. */
  readonly logKeys: readonly string[]
  /** Set once the native write resolved. */
  isDone: boolean
}

interface WriteObserver {
  readonly writes: ObservedWrite[]
  restore(): void
}

type AnyMethod = (this: object, ...args: unknown[]) => Promise<unknown>

/** Wraps classic-level's private write methods (prototype-wide) to record each write's options. */
async function observeLevelWrites(probeLocation: string): Promise<WriteObserver> {
  // The chained batch class is not exported: take its prototype from a probe database's batch.
  const probe = new ClassicLevel<Uint8Array, Uint8Array>(probeLocation, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  })
  await probe.open()
  const probeBatch = probe.batch()
  const chainedProto = Object.getPrototypeOf(probeBatch) as Record<string, AnyMethod>
  await probeBatch.close()
  await probe.close()

  const writes: ObservedWrite[] = []
  const keysOfBatch = new WeakMap<object, string[]>()
  const restores: (() => void)[] = []
  const wrap = (
    proto: Record<string, AnyMethod>,
    name: string,
    around: (original: AnyMethod) => AnyMethod,
  ) => {
    const original = proto[name]
    if (original === undefined) throw new Error(`classic-level has no ${name} any more: update this test`)
    proto[name] = around(original)
    restores.push(() => {
      proto[name] = original
    })
  }
  const record = (kind: ObservedWrite['kind'], options: unknown, logKeys: readonly string[]) => {
    const write: ObservedWrite = {
      kind,
      isSync: (options as { sync?: unknown } | undefined)?.sync === true,
      logKeys,
      isDone: false,
    }
    writes.push(write)
    return write
  }
  const levelProto = ClassicLevel.prototype as unknown as Record<string, AnyMethod>
  for (const [name, kind, optionsAt] of [
    ['_put', 'put', 2],
    ['_del', 'del', 1],
    ['_batch', 'batch', 1],
  ] as const) {
    wrap(
      levelProto,
      name,
      (original) =>
        async function (this: object, ...args: unknown[]) {
          const write = record(kind, args[optionsAt], [])
          const result = await original.apply(this, args)
          write.isDone = true
          return result
        },
    )
  }
  wrap(
    chainedProto,
    '_put',
    (original) =>
      function (this: object, ...args: unknown[]) {
        const key = args[0] as Uint8Array
        if (key[0] === encodeLogKey('a', 1)[0]) {
          try {
            const { sessionId, seq } = decodeLogKey(key)
            const keys = keysOfBatch.get(this) ?? []
            keys.push(`${sessionId}#${seq}`)
            keysOfBatch.set(this, keys)
          } catch {
            // Not a log key (another kind sharing the first byte): nothing to record.
          }
        }
        return original.apply(this, args)
      },
  )
  wrap(
    chainedProto,
    '_write',
    (original) =>
      async function (this: object, ...args: unknown[]) {
        const write = record('chained-batch', args[0], keysOfBatch.get(this) ?? [])
        const result = await original.apply(this, args)
        write.isDone = true
        return result
      },
  )
  return {
    writes,
    restore() {
      for (const restore of restores.reverse()) restore()
    },
  }
}

/** Counts FileHandle syncs (prototype-wide); the store's directory handle is the only user here. */
async function observeHandleSyncs(anyPath: string): Promise<{ done: () => number; restore: () => void }> {
  const handle = await openFile(anyPath, 'r')
  const proto = Object.getPrototypeOf(handle) as { sync: (this: unknown) => Promise<void> }
  await handle.close()
  const original = proto.sync
  let done = 0
  proto.sync = async function (this: unknown) {
    await original.call(this)
    done++
  }
  return {
    done: () => done,
    restore: () => {
      proto.sync = original
    },
  }
}

async function logFiles(location: string): Promise<string> {
  return (await readdir(location))
    .filter((name) => name.endsWith('.log'))
    .sort()
    .join(',')
}

const encoder = new TextEncoder()

describe('LevelDB store fsync', () => {
  let location: string
  let observer: WriteObserver
  let store: Store | undefined

  beforeEach(async () => {
    location = await mkdtemp(path.join(tmpdir(), 'colloquy-sync-'))
    observer = await observeLevelWrites(path.join(location, 'probe'))
  })

  afterEach(async () => {
    await store?.close()
    store = undefined
    observer.restore()
    await rm(location, { recursive: true, force: true })
  })

  it('writes the format key, appends, checkpoints and deletes with sync, by default', async () => {
    store = await openLeveldbStore({ location: path.join(location, 'db') })
    await store.append([{ sessionId: 's', time: 1, update: encoder.encode('one') }])
    await store.putCheckpoint('s', { seq: 1, time: 1, state: encoder.encode('state') }, { trimLogThrough: 1 })
    await store.append([{ sessionId: 's', time: 2, update: encoder.encode('two') }])
    await store.deleteSession('s')

    const kinds = observer.writes.map((write) => write.kind)
    // format key, append, checkpoint, append, delete
    expect(kinds).toEqual(['put', 'chained-batch', 'chained-batch', 'chained-batch', 'chained-batch'])
    expect(observer.writes.filter((write) => !write.isSync)).toEqual([])
    expect(observer.writes.every((write) => write.isDone)).toBe(true)
  })

  it('resolves an append only after its synced write completed', async () => {
    store = await openLeveldbStore({ location: path.join(location, 'db') })
    const appended = store.append([{ sessionId: 's', time: 1, update: encoder.encode('one') }])
    await appended
    const write = observer.writes.find((w) => w.logKeys.includes('s#1'))
    expect(write?.isSync).toBe(true)
    expect(write?.isDone).toBe(true)
  })

  it('reports a group commit durable, which releases acks, only after a synced write holding it completed', async () => {
    store = await openLeveldbStore({ location: path.join(location, 'db') })
    const notSyncedAtCommit: string[] = []
    const queue = createWriteQueue({
      store,
      flushDelayMs: 0,
      onCommit: (durable) => {
        for (const [sessionId, { seq }] of durable) {
          for (let s = 1; s <= seq; s++) {
            const key = `${sessionId}#${s}`
            const holder = observer.writes.find((w) => w.logKeys.includes(key) && w.isSync && w.isDone)
            if (holder === undefined) notSyncedAtCommit.push(key)
          }
        }
      },
    })
    // Bounded: 3 sessions × 40 updates, some expedited, in several group commits.
    for (let seq = 1; seq <= 40; seq++) {
      for (const sessionId of ['a', 'b', 'c']) {
        queue.enqueue({ sessionId, time: seq, update: encoder.encode(`${sessionId}${seq}`) })
      }
      if (seq % 7 === 0) queue.expedite()
      if (seq % 10 === 0) await queue.flush()
    }
    await queue.close()
    expect(observer.writes.filter((w) => w.kind === 'chained-batch').length).toBeGreaterThan(1)
    expect(notSyncedAtCommit).toEqual([])
  })

  it('writes without sync only when asked to (the benchmarks’ --fsync false), which this test can see', async () => {
    store = await openLeveldbStore({ location: path.join(location, 'db'), sync: false })
    await store.append([{ sessionId: 's', time: 1, update: encoder.encode('one') }])
    const write = observer.writes.find((w) => w.logKeys.includes('s#1'))
    expect(write?.isSync).toBe(false)
  })

  it('fsyncs the directory at open, and before resolving an append that LevelDB wrote into a new log file', async () => {
    const location2 = path.join(location, 'db')
    const syncs = await observeHandleSyncs(location)
    try {
      store = await openLeveldbStore({ location: location2 })
      // LevelDB renamed CURRENT and created a log and a MANIFEST while opening.
      expect(syncs.done()).toBeGreaterThan(0)
      // Bounded: 40 appends of 256 KB (10 MB) fill the 4 MB memtable, so LevelDB switches logs.
      const update = new Uint8Array(256 * 1024).fill(7)
      let switches = 0
      for (let seq = 1; seq <= 40 && switches < 2; seq++) {
        const logsBefore = await logFiles(location2)
        const syncsBefore = syncs.done()
        await store.append([{ sessionId: 's', time: seq, update }])
        if ((await logFiles(location2)) !== logsBefore) {
          switches++
          expect(syncs.done(), `a directory sync before append ${seq} resolved`).toBeGreaterThan(syncsBefore)
        }
      }
      expect(switches, 'LevelDB switched logs').toBeGreaterThan(0)
    } finally {
      syncs.restore()
    }
  })
})
