// The node-local outbox of a cluster node: every update is fsync'd into a small LevelDB on this
// node's disk before its ack, beside its publish to JetStream, and kept until JetStream's own copy
// is safe; a node that restarts re-publishes what it still holds (Yjs updates are idempotent).

import { mkdir } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import { assertSessionId, readUint64BE, writeUint64BE } from '../persistence/keys.js'
import { type DirectorySync, openDirectorySync } from '../persistence/leveldb-store.js'
import type { AppendEntry, Store } from '../persistence/store.js'

type Db = ClassicLevel<Uint8Array, Uint8Array>

/** Options of {@link openOutbox}. */
export interface OutboxOptions {
  /** A directory of its own (e.g. `<data dir>/outbox`). */
  readonly location: string
  /**
   * How long an entry stays after its append settled (default 150 s). Why keep it at all once
   * JetStream acked: nats-server before 2.10 (and later ones without `sync_interval: always`)
   * fsyncs its files every 2 minutes, so a cluster-wide power cut may lose what all replicas
   * acked; the outbox re-publishes it on restart. 0 removes entries as soon as JetStream acked.
   */
  readonly retainMs?: number
  readonly now?: () => number
}

/** Durable local copies of the updates this node is publishing. */
export interface Outbox {
  /** Writes `entries` durably (one fsync'd batch); resolves with their first key. */
  add(entries: readonly AppendEntry[]): Promise<number>
  /** The append of the `count` entries from `firstKey` settled: they may go after the retention. */
  settled(firstKey: number, count: number): void
  /** Every entry held, oldest first, with its key (what a restart re-publishes). */
  held(): Promise<{ key: number; entry: AppendEntry }[]>
  /** Removes entries by key (after a re-publish). */
  remove(keys: readonly number[]): Promise<void>
  /** Entries held now (approximate: counted since open). */
  readonly size: number
  close(): Promise<void>
}

const KEY_BYTES = 8

function encodeKey(key: number): Uint8Array {
  const bytes = new Uint8Array(KEY_BYTES)
  writeUint64BE(bytes, 0, key)
  return bytes
}

/** `time (8) · id length (1) · id (ASCII) · update`. */
function encodeEntry(entry: AppendEntry): Uint8Array {
  const id = new TextEncoder().encode(entry.sessionId)
  const value = new Uint8Array(8 + 1 + id.byteLength + entry.update.byteLength)
  writeUint64BE(value, 0, entry.time)
  value[8] = id.byteLength
  value.set(id, 9)
  value.set(entry.update, 9 + id.byteLength)
  return value
}

function decodeEntry(value: Uint8Array): AppendEntry {
  const time = readUint64BE(value, 0)
  const length = value[8]!
  const sessionId = new TextDecoder().decode(value.subarray(9, 9 + length))
  assertSessionId(sessionId)
  return { sessionId, time, update: value.slice(9 + length) }
}

/** Opens (creating when missing) the outbox at `options.location`. */
export async function openOutbox(options: OutboxOptions): Promise<Outbox> {
  await mkdir(options.location, { recursive: true })
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(options.location, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  })
  await db.open()
  let directory: DirectorySync
  try {
    directory = await openDirectorySync(options.location)
  } catch (error) {
    await db.close()
    throw error
  }
  const retainMs = options.retainMs ?? 150_000
  const now = options.now ?? Date.now
  const [lastKey] = await db.keys({ reverse: true, limit: 1 }).all()
  let nextKey = lastKey === undefined ? 0 : readUint64BE(lastKey, 0) + 1
  let size = (await db.keys().all()).length
  /** Settled ranges waiting out the retention, oldest first. */
  let expiring: { firstKey: number; count: number; at: number }[] = []
  let timer: NodeJS.Timeout | undefined

  async function expire(): Promise<void> {
    timer = undefined
    const due = now() - retainMs
    const ready = expiring.filter((range) => range.at <= due)
    expiring = expiring.filter((range) => range.at > due)
    if (ready.length > 0) {
      const batch = db.batch()
      for (const range of ready) {
        for (let key = range.firstKey; key < range.firstKey + range.count; key++) batch.del(encodeKey(key))
        size -= range.count
      }
      // No fsync needed: a delete lost in a crash only means one harmless re-publish.
      await batch.write()
    }
    arm()
  }

  function arm(): void {
    if (timer !== undefined || expiring.length === 0) return
    const wait = Math.max(0, expiring[0]!.at + retainMs - now())
    timer = setTimeout(() => {
      void expire()
    }, wait)
    timer.unref()
  }

  return {
    async add(entries) {
      const firstKey = nextKey
      nextKey += entries.length
      const batch = db.batch()
      entries.forEach((entry, i) => {
        batch.put(encodeKey(firstKey + i), encodeEntry(entry))
      })
      // Durable before the ack this append leads to: fsync'd, with the directory entry.
      await batch.write({ sync: true })
      await directory.afterWrite()
      size += entries.length
      return firstKey
    },
    settled(firstKey, count) {
      expiring.push({ firstKey, count, at: now() })
      if (retainMs === 0) void expire()
      else arm()
    },
    async held() {
      const rows = await db.iterator().all()
      return rows.map(([key, value]) => ({ key: readUint64BE(key, 0), entry: decodeEntry(value) }))
    },
    async remove(keys) {
      const batch = db.batch()
      for (const key of keys) batch.del(encodeKey(key))
      await batch.write()
      size -= keys.length
    },
    get size() {
      return size
    },
    async close() {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      await db.close()
      await directory.close()
    },
  }
}

/**
 * Wraps a cluster store so that every append is also fsync'd to `outbox`: the append resolves only
 * once both JetStream acked it and the outbox holds it on this node's disk.
 *
 * @remarks Both run at once (the publish does not wait for the fsync): the ack waits for the later
 * of the two. An entry whose append failed stays in the outbox for the retention too; the write
 * queue retries it meanwhile, and a crash before that retry succeeds leaves it to the re-publish.
 */
export function withOutbox(store: Store, outbox: Outbox): Store {
  const append: Store['append'] = async (entries) => {
    if (entries.length === 0) return store.append(entries)
    const [firstKey, seqs] = await Promise.allSettled([outbox.add(entries), store.append(entries)])
    if (firstKey.status === 'fulfilled') outbox.settled(firstKey.value, entries.length)
    if (firstKey.status === 'rejected') throw firstKey.reason
    if (seqs.status === 'rejected') throw seqs.reason
    return seqs.value
  }
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'append') return append
      const value: unknown = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/**
 * Re-publishes what the outbox still holds (after a restart), in order, in batches, then removes
 * it; resolves with the count. Safe to repeat: Yjs updates are idempotent.
 */
export async function republishOutbox(store: Store, outbox: Outbox, batchSize = 500): Promise<number> {
  const held = await outbox.held()
  for (let start = 0; start < held.length; start += batchSize) {
    const slice = held.slice(start, start + batchSize)
    await store.append(slice.map((row) => row.entry))
    await outbox.remove(slice.map((row) => row.key))
  }
  return held.length
}
