// What a node sends about its own updates on a session's relay subject: the updates, one message
// per session per event-loop turn (issue 15: one message per update cost every nats-server and
// every receiving node a message each), and the commit announcements that pair their counters
// with log seqs, one per origin per window of commits. The message kinds of the whole relay live
// here too. The receiving side, gap repair and heartbeats are nats-distribution.ts.

import * as encoding from 'lib0/encoding'

/** The first byte of every relay message (docs/cluster.md "Wire format"). */
export const Kind = {
  update: 1,
  stored: 2,
  awareness: 3,
  query: 4,
  heartbeat: 5,
  leave: 6,
  /** Several updates of one origin, consecutive counters: relayed together at the end of a loop turn. */
  updates: 7,
} as const

/** See {@link RelaySenderOptions.announceDelayMs}. */
export const DEFAULT_ANNOUNCE_DELAY_MS = 20

/**
 * A batch is sent before it grows past this many update bytes (well under NATS' 1 MiB default
 * `max_payload`); an update this large or larger goes alone, as before batching.
 */
const BATCH_BYTES = 64 * 1024

/** The commit announcements of one origin (it may outlive its join: late commits still announce). */
export interface Announcing {
  readonly sessionId: string
  readonly origin: string
  /** Announcements sent so far. */
  announced: number
  /** The highest seq announced. */
  lastSeq: number
  /** When it last announced (heartbeats repeat recently active origins). */
  activeAt: number
}

/**
 * Updates of one session queued during the current event-loop turn, not yet relayed: they go out
 * as one message when the turn ends (consecutive counters from `first`).
 */
interface Batch {
  readonly origin: string
  readonly first: number
  readonly updates: Uint8Array[]
  bytes: number
}

/** Options of {@link createRelaySender}. */
export interface RelaySenderOptions {
  /** This node's name, written in every message. */
  readonly nodeId: string
  /** The relay subject of a session. */
  readonly subjectOf: (sessionId: string) => string
  /** Publishes one message (the relay's own publish: filters, errors, metrics). */
  readonly publish: (kind: 'update' | 'stored', subject: string, payload: Uint8Array, updates: number) => void
  /**
   * How long commit announcements wait to be sent together (ms; 0: one message per origin per
   * commit, at once). See `NatsDistributionOptions.announceDelayMs`.
   */
  readonly announceDelayMs: number
  readonly now: () => number
}

/** Sends a node's updates and commit announcements; see the module comment. */
export interface RelaySender {
  /** Origins that announced, with their count and last seq (heartbeats repeat the recent ones). */
  readonly announcing: Map<string, Announcing>
  /** Relays `update` under `origin` at the end of this turn; `counter` follows the previous one. */
  queue(sessionId: string, origin: string, counter: number, update: Uint8Array): void
  /** Adds one stored update (its counter and seq) to the origin's next announcement. */
  stored(sessionId: string, origin: string, counter: number, seq: number): void
  /** A commit's updates were all added by {@link stored}: announces now, or schedules it. */
  committed(): void
  /** Sends every pending batch now. */
  flushUpdates(): void
  /** Sends every pending announcement now, after the batches (it names their counters). */
  flushAnnouncements(): void
}

/** Creates the sending half of one node's relay. */
export function createRelaySender(options: RelaySenderOptions): RelaySender {
  const { nodeId, subjectOf, publish, announceDelayMs, now } = options
  const announcing = new Map<string, Announcing>()
  /** Updates queued this turn, by session, not yet relayed. */
  const batches = new Map<string, Batch>()
  /** The pending end-of-turn flush, if one is scheduled. */
  let flushing: NodeJS.Immediate | undefined
  /** Commit announcements not sent yet, by origin: its counter and seq pairs, in commit order. */
  const unannounced = new Map<string, { sessionId: string; pairs: number[] }>()
  /** The pending send of {@link unannounced}, if one is scheduled. */
  let announceTimer: NodeJS.Timeout | undefined

  /**
   * Relays one batch: a single update as `Kind.update` (its bytes the message's tail), several as
   * `Kind.updates` (the first counter, the count, then each update length-prefixed).
   */
  const sendBatch = (sessionId: string, batch: Batch): void => {
    const encoder = encoding.createEncoder()
    const single = batch.updates.length === 1
    encoding.writeUint8(encoder, single ? Kind.update : Kind.updates)
    encoding.writeVarString(encoder, nodeId)
    encoding.writeVarString(encoder, batch.origin)
    encoding.writeVarUint(encoder, batch.first)
    if (single) encoding.writeUint8Array(encoder, batch.updates[0]!)
    else {
      encoding.writeVarUint(encoder, batch.updates.length)
      for (const update of batch.updates) encoding.writeVarUint8Array(encoder, update)
    }
    publish('update', subjectOf(sessionId), encoding.toUint8Array(encoder), batch.updates.length)
  }

  /**
   * Relays every batch now. Runs at the end of the loop turn (setImmediate: after every socket
   * read of this turn), and before anything that must follow the updates on the wire: an
   * announcement (a receiver that saw an announced counter missing would read it from the log),
   * a leave, the close.
   */
  const flushUpdates = (): void => {
    if (flushing !== undefined) {
      clearImmediate(flushing)
      flushing = undefined
    }
    if (batches.size === 0) return
    for (const [sessionId, batch] of batches) sendBatch(sessionId, batch)
    batches.clear()
  }

  /**
   * Sends one announcement per origin for every commit since the last send: the counters of its
   * updates and the seqs they got.
   */
  const flushAnnouncements = (): void => {
    if (announceTimer !== undefined) {
      clearTimeout(announceTimer)
      announceTimer = undefined
    }
    if (unannounced.size === 0) return
    flushUpdates()
    for (const [origin, { sessionId, pairs }] of unannounced) {
      let state = announcing.get(origin)
      if (state === undefined) {
        state = { sessionId, origin, announced: 0, lastSeq: 0, activeAt: 0 }
        announcing.set(origin, state)
      }
      state.announced++
      state.activeAt = now()
      const encoder = encoding.createEncoder()
      encoding.writeUint8(encoder, Kind.stored)
      encoding.writeVarString(encoder, nodeId)
      encoding.writeVarString(encoder, origin)
      encoding.writeVarUint(encoder, state.announced)
      encoding.writeVarUint(encoder, pairs.length / 2)
      for (let k = 0; k < pairs.length; k += 2) {
        const seq = pairs[k + 1]!
        encoding.writeVarUint(encoder, pairs[k]!)
        encoding.writeVarUint(encoder, seq)
        state.lastSeq = Math.max(state.lastSeq, seq)
      }
      publish('stored', subjectOf(sessionId), encoding.toUint8Array(encoder), 0)
    }
    unannounced.clear()
  }

  return {
    announcing,
    queue(sessionId, origin, counter, update) {
      let batch = batches.get(sessionId)
      if (batch !== undefined && (batch.origin !== origin || batch.bytes + update.length > BATCH_BYTES)) {
        sendBatch(sessionId, batch)
        batch = undefined
      }
      if (batch === undefined) {
        batch = { origin, first: counter, updates: [], bytes: 0 }
        batches.set(sessionId, batch)
      }
      batch.updates.push(update)
      batch.bytes += update.length
      flushing ??= setImmediate(flushUpdates)
    },
    stored(sessionId, origin, counter, seq) {
      let group = unannounced.get(origin)
      if (group === undefined) {
        group = { sessionId, pairs: [] }
        unannounced.set(origin, group)
      }
      group.pairs.push(counter, seq)
    },
    committed() {
      if (announceDelayMs === 0) flushAnnouncements()
      else if (unannounced.size > 0 && announceTimer === undefined) {
        announceTimer = setTimeout(flushAnnouncements, announceDelayMs)
        announceTimer.unref()
      }
    },
    flushUpdates,
    flushAnnouncements,
  }
}
