// Durable turns: each change is queued and written with the others of its moment in one synced
// batch of the server's one database (kind byte `T`, see persistence/STORAGE.md). Owns the batching
// and the retry of a failed batch; knows nothing of scheduling, leases or documents.

import type { Turn } from '../../shared/turns/turn.js'
import type { Logger } from '../observability/log.js'
import { decodeTurnKey, encodeTurnKey, turnKeyRange } from '../persistence/keys.js'
import type { RecordOp, RecordStore } from '../persistence/store.js'

/** A turn as stored: the API's turn plus its creation order (ties between equal arrival times). */
export interface StoredTurn extends Turn {
  readonly seq: number
}

/** The durable turns. */
export interface TurnStore {
  /** Queues `turn` for the next batch; resolves once it is durable. */
  save(turn: StoredTurn): Promise<void>
  /** Queues the deletion of a turn; resolves once it is durable. */
  delete(turnId: string): Promise<void>
  /** Every stored turn (at start), in id order; unreadable records are logged and skipped. */
  loadAll(): Promise<StoredTurn[]>
  /** Resolves once every change queued so far is durable. */
  flush(): Promise<void>
  /** Stops: changes not yet written are dropped (their callers' promises reject). */
  close(): Promise<void>
}

/** Options of {@link createTurnStore}. */
export interface TurnStoreOptions {
  readonly records: RecordStore
  readonly logger: Logger
  /** Waits before retrying a failed batch (ms; doubled up to 5 s). */
  readonly retryMs?: number
}

interface Waiter {
  resolve(): void
  reject(error: unknown): void
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Creates the turn store over `records` (the LevelDB store's, or the memory store's). */
export function createTurnStore(options: TurnStoreOptions): TurnStore {
  const { records, logger } = options
  const baseRetryMs = options.retryMs ?? 100
  /** The latest change of each turn not yet in a batch: a later change replaces an earlier one. */
  let pending = new Map<string, RecordOp>()
  let waiters: Waiter[] = []
  let writing: Promise<void> | undefined
  let isClosed = false

  async function writeLoop(): Promise<void> {
    let retryMs = baseRetryMs
    while (pending.size > 0 && !isClosed) {
      const ops = [...pending.values()]
      const batchWaiters = waiters
      pending = new Map()
      waiters = []
      for (;;) {
        try {
          // One synced batch: a turn's change is acknowledged only after it is on disk.
          await records.write(ops)
          for (const waiter of batchWaiters) waiter.resolve()
          retryMs = baseRetryMs
          break
        } catch (error) {
          if (isClosed) {
            for (const waiter of batchWaiters) waiter.reject(error)
            return
          }
          logger.error({ err: error, turns: ops.length, retryMs }, 'turn batch failed: retrying')
          await new Promise((resolve) => setTimeout(resolve, retryMs))
          retryMs = Math.min(retryMs * 2, 5_000)
        }
      }
    }
  }

  /** Starts the write loop unless it runs; a change queued after the loop's last look restarts it. */
  function start(): void {
    if (writing !== undefined || isClosed) return
    writing = writeLoop().finally(() => {
      writing = undefined
      if (pending.size > 0) start()
    })
  }

  function enqueue(turnId: string, op: RecordOp): Promise<void> {
    if (isClosed) return Promise.reject(new Error('turn store closed'))
    pending.set(turnId, op)
    const done = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }))
    start()
    return done
  }

  return {
    save(turn) {
      return enqueue(turn.id, {
        type: 'put',
        key: encodeTurnKey(turn.id),
        value: encoder.encode(JSON.stringify(turn)),
      })
    },

    delete(turnId) {
      return enqueue(turnId, { type: 'del', key: encodeTurnKey(turnId) })
    },

    async loadAll() {
      const found: StoredTurn[] = []
      for (const [key, value] of await records.scan(turnKeyRange())) {
        try {
          const turn = JSON.parse(decoder.decode(value)) as StoredTurn
          if (turn.id !== decodeTurnKey(key) || typeof turn.seq !== 'number')
            throw new Error('bad turn record')
          found.push(turn)
        } catch (error) {
          logger.error(
            { err: error, key: Buffer.from(key).toString('latin1') },
            'unreadable turn record skipped',
          )
        }
      }
      return found
    },

    async flush() {
      while (writing !== undefined) await writing
    },

    async close() {
      isClosed = true
      const dropped = waiters
      waiters = []
      pending = new Map()
      for (const waiter of dropped) waiter.reject(new Error('turn store closed'))
      await writing?.catch(() => undefined)
    },
  }
}
