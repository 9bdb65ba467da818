// Durable turns: each change is queued and written with the others of its moment in one synced
// batch of the server's one database (kind byte `T`, see persistence/STORAGE.md); the batching and
// the retry of a failed batch are keyed-write-queue.ts'. Knows nothing of scheduling, leases or documents.

import type { Turn } from '../../shared/turns/turn.js'
import type { Logger } from '../observability/log.js'
import { decodeTurnKey, encodeTurnKey, turnKeyRange } from '../persistence/keys.js'
import type { RecordOp, RecordStore } from '../persistence/store.js'
import { createKeyedWriteQueue } from './keyed-write-queue.js'

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

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Creates the turn store over `records` (the LevelDB store's, or the memory store's). */
export function createTurnStore(options: TurnStoreOptions): TurnStore {
  const { records, logger } = options
  // The latest change of each turn not yet in a batch (a later change replaces an earlier one),
  // all of them written in one synced batch: a turn's change is acknowledged only once on disk.
  const queue = createKeyedWriteQueue<RecordOp>({
    async write(round) {
      await records.write([...round.values()])
      return undefined
    },
    closedError: () => new Error('turn store closed'),
    retryMs: options.retryMs ?? 100,
    onRetry(error, turns, retryMs) {
      logger.error({ err: error, turns, retryMs }, 'turn batch failed: retrying')
    },
  })

  return {
    save(turn) {
      return queue.enqueue(turn.id, {
        type: 'put',
        key: encodeTurnKey(turn.id),
        value: encoder.encode(JSON.stringify(turn)),
      })
    },

    delete(turnId) {
      return queue.enqueue(turnId, { type: 'del', key: encodeTurnKey(turnId) })
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

    flush: () => queue.flush(),
    close: () => queue.close(),
  }
}
