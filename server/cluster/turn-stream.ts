// Durable turns of a cluster: one JetStream stream, `COLLOQUY_TURNS`, with one subject per turn
// (`colloquy.turns.<pool>.<turn token>`) holding at most one message, the turn's latest record; a
// turn deleted after its retention has its subject purged. A TurnStore per pool over it, so the
// turn service (server/turns/turn-service.ts) runs unchanged on the node that schedules the pool.
// docs/decisions.md "Turns in a cluster" says why this is a limits stream and not a work queue.

import {
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream'
import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import { createKeyedWriteQueue } from '../turns/keyed-write-queue.js'
import type { StoredTurn, TurnStore } from '../turns/turn-store.js'
import { encodeSessionToken } from './session-token.js'

/** Names of the turn stream (a namespace, as for jetStreamNames, lets tests share a cluster). */
export interface TurnStreamNames {
  readonly stream: string
  /** Subjects are `<prefix>.<pool>.<turn token>`. */
  readonly subjectPrefix: string
  /** KV bucket of the pool scheduler leases. */
  readonly leaders: string
  /** Core NATS subjects `<prefix>.<pool>` on which a pool's scheduler answers the other nodes. */
  readonly rpcPrefix: string
}

/** The names of a deployment, optionally with a namespace (`[A-Za-z0-9]+`). */
export function turnStreamNames(namespace?: string): TurnStreamNames {
  if (namespace !== undefined && !/^[A-Za-z0-9]+$/.test(namespace)) {
    throw new TypeError(`namespace must match [A-Za-z0-9]+, got ${JSON.stringify(namespace)}`)
  }
  const suffix = namespace === undefined ? '' : `_${namespace}`
  const infix = namespace === undefined ? '' : `.${namespace}`
  return {
    stream: `COLLOQUY_TURNS${suffix}`,
    subjectPrefix: `colloquy${infix}.turns`,
    leaders: `COLLOQUY_TURN_LEADERS${suffix}`,
    // Outside the stream's subjects: a request there must never be stored (and acked) by JetStream.
    rpcPrefix: `colloquy${infix}.turnrpc`,
  }
}

/** The subject of a turn's record. */
export function turnSubject(names: TurnStreamNames, pool: string, turnId: string): string {
  return `${names.subjectPrefix}.${pool}.${encodeSessionToken(turnId)}`
}

/** Creates (or opens) the turn stream, idempotently; every node runs it at start. */
export async function openTurnStream(options: {
  readonly jsm: JetStreamManager
  readonly names: TurnStreamNames
  readonly replicas: number
}): Promise<void> {
  const { jsm, names } = options
  try {
    await jsm.streams.info(names.stream)
  } catch {
    await jsm.streams.add({
      name: names.stream,
      subjects: [`${names.subjectPrefix}.>`],
      num_replicas: options.replicas,
      storage: StorageType.File,
      // Limits, not WorkQueue: nats-server 2.9.10 refuses ordered (ack-none) consumers and
      // overlapping filters on a work-queue stream, and the queue is rebuilt by reading it.
      retention: RetentionPolicy.Limits,
      // A turn's latest record replaces the one before it.
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
    })
  }
}

/** Options of {@link createStreamTurnStore}. */
export interface StreamTurnStoreOptions {
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  readonly names: TurnStreamNames
  /** The pool whose turns this store holds. */
  readonly pool: string
  readonly logger: Logger
  /** How long a publish waits for its ack (default 5 s). */
  readonly publishTimeoutMs?: number
  /** Waits before retrying a failed write (ms; doubled up to 5 s; default 100). */
  readonly retryMs?: number
}

type TurnOp = { readonly type: 'put'; readonly turn: StoredTurn } | { readonly type: 'del' }

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * What a change not stored gets when the store closed (this node stopped scheduling the pool):
 * retryable, as any JetStream failure (503), the next scheduler answers it.
 */
function closedError(): ColloquyError {
  return new ColloquyError('storage-unavailable', 'turn store closed: this node no longer schedules the pool')
}

/** A write's failure as the API reports it: transient (503), whatever JetStream said. */
function notStored(error: unknown): ColloquyError {
  return error instanceof ColloquyError
    ? error
    : new ColloquyError('storage-unavailable', 'turn record not stored in JetStream', { cause: error })
}

/**
 * Creates the store of one pool's turns on the turn stream.
 *
 * @remarks A save resolves once JetStream acked the record (stored by a majority of the replicas).
 * Changes of one moment are written together, each turn at most once per round and a round only
 * after the one before: a turn's records reach the stream in the order they were made, a later one
 * replacing an earlier one not yet written. A failed write is retried (with backoff) unless a
 * newer change of the same turn replaced it.
 */
export function createStreamTurnStore(options: StreamTurnStoreOptions): TurnStore {
  const { js, jsm, names, pool, logger } = options
  const timeout = options.publishTimeoutMs ?? 5_000

  async function writeOne(turnId: string, op: TurnOp): Promise<void> {
    const subject = turnSubject(names, pool, turnId)
    if (op.type === 'put') {
      await js.publish(subject, encoder.encode(JSON.stringify(op.turn)), { timeout })
    } else {
      await jsm.streams.purge(names.stream, { filter: subject })
    }
  }

  // Each turn's record on its own subject, all of a round at once; a failure is the turn's alone.
  const queue = createKeyedWriteQueue<TurnOp>({
    async write(round) {
      const failed: [string, unknown][] = []
      await Promise.all(
        [...round].map(async ([turnId, op]) => {
          try {
            await writeOne(turnId, op)
          } catch (error) {
            // Regression (issue 17, no quorum): a publish that timed out while the store closed
            // reached the caller as a raw NATS error, answered 500 `internal` instead of a 503.
            failed.push([turnId, notStored(error)])
          }
        }),
      )
      return failed
    },
    closedError,
    retryMs: options.retryMs ?? 100,
    onRetry(error, turns, retryMs) {
      logger.error({ err: error, turns, pool, retryMs }, 'turn records not stored in JetStream: retrying')
    },
  })

  return {
    save: (turn) => queue.enqueue(turn.id, { type: 'put', turn }),
    delete: (turnId) => queue.enqueue(turnId, { type: 'del' }),

    async loadAll() {
      const filter = `${names.subjectPrefix}.${pool}.>`
      // An ordered consumer (no state on the servers): one record per subject, so every message is
      // a turn's latest record.
      const consumer = await js.consumers.get(names.stream, {
        filter_subjects: filter,
        deliver_policy: DeliverPolicy.LastPerSubject,
      })
      const expected = (await consumer.info(true)).num_pending
      const found = new Map<string, StoredTurn>()
      let received = 0
      while (received < expected) {
        const messages = await consumer.fetch({
          max_messages: Math.min(512, expected - received),
          expires: 5_000,
        })
        let got = 0
        for await (const message of messages) {
          got++
          received++
          try {
            const turn = JSON.parse(decoder.decode(message.data)) as StoredTurn
            if (typeof turn.id !== 'string' || typeof turn.seq !== 'number' || turn.pool !== pool)
              throw new Error('bad turn record')
            found.set(turn.id, turn)
          } catch (error) {
            logger.error({ err: error, subject: message.subject }, 'unreadable turn record skipped')
          }
          if (message.info.pending === 0) received = Math.max(received, expected)
          if (received >= expected) break
        }
        // A record purged since the count: nothing more to read.
        if (got === 0) break
      }
      return [...found.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    },

    flush: () => queue.flush(),
    close: () => queue.close(),
  }
}
