// The cluster's Distribution over core NATS: every update a node's clients make is relayed at once
// to the other nodes that have the session loaded (one core subject per session, subscribed while
// loaded; no JetStream consumer per session), awareness crosses nodes the same way, and node
// heartbeats let everyone drop a dead node's presence. Core NATS may drop messages, so each update
// carries a per-sender counter and every commit announces the log seqs its updates got: a node
// that sees a counter it never received, or a seq it never heard of, reads those entries back from
// the log (Store.readLog) and applies them; Yjs makes repeats harmless. Whole-session requests
// (deletes, imports) go over the same connection: session-control.ts. How a node's own updates
// and announcements are batched on the wire: relay-sender.ts.

import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import {
  type AwarenessEntry,
  decodeAwarenessUpdate,
  encodeAwarenessUpdate,
} from '../../shared/protocol/awareness-validate.js'
import type { Logger } from '../observability/log.js'
import type { AppendEntry, Store } from '../persistence/store.js'
import type { Distribution, DistributionSink } from '../session/distribution.js'
import { createRelaySender, DEFAULT_ANNOUNCE_DELAY_MS, Kind } from './relay-sender.js'
import { createSessionControl } from './session-control.js'

/** What the relay reads from the log to repair a gap. */
export type RepairLog = Pick<Store, 'getMeta' | 'readLog' | 'load'> & {
  /**
   * The seq of the session's last log entry, cheaply (the JetStream store: one leader request).
   * Without it the relay reads `getMeta().lastSeq`, which costs more, and checks less often.
   */
  lastLogSeq?(sessionId: string): Promise<number>
}

/** Options of {@link createNatsDistribution}. */
export interface NatsDistributionOptions {
  /** The connection the relay publishes and subscribes on (its own; closed by the caller). */
  readonly connection: NatsConnection
  /** This node's name in the cluster (`--node-id`): unique among live nodes. */
  readonly nodeId: string
  /** The log, read to repair gaps (the cluster's JetStream store). */
  readonly log: RepairLog
  readonly logger: Logger
  /** Subject prefix (default `colloquy`). */
  readonly prefix?: string
  /** How often a node announces itself and checks its sessions for gaps (ms, default 1000). */
  readonly heartbeatMs?: number
  /** A node silent this long is dead: its clients leave everyone's presence (ms, default 3500). */
  readonly deadAfterMs?: number
  /**
   * How often each loaded session's log is compared with what was announced (ms; 0: at every
   * heartbeat). Default: every heartbeat when the log has `lastLogSeq` (one cheap request per
   * session), else every 15 s (a `getMeta`, which on JetStream lists KV keys and scans headers).
   * The other checks catch every loss that leaves a trace; this one also catches a node that stored
   * and lost both its announcement and the heartbeats that repeat it.
   */
  readonly logCheckMs?: number
  /**
   * How long {@link Distribution.retireEverywhere} and {@link Distribution.openElsewhere} wait for
   * every live node to answer (ms, default 10,000); a node keeps a session retired twice this long
   * for a deleter that never released it (it died mid-delete). See session-control.ts.
   */
  readonly retireTimeoutMs?: number
  readonly now?: () => number
  /** What the relay reports (metrics); every callback optional. */
  readonly observer?: NatsDistributionObserver
  /**
   * How long commit announcements wait to be sent together (ms, default 20; 0: one message per
   * origin per commit, at once). The announcements of every commit within this window go as one
   * message per origin. They only reveal losses (the updates themselves crossed at once), so a
   * receiver learns of a lost update this much later, and no update is delayed.
   */
  readonly announceDelayMs?: number
  /**
   * Tests only: return false to drop an outgoing message of `kind` (`update`, `stored`,
   * `heartbeat`, `awareness`) as a congested core NATS would.
   */
  readonly sendFilter?: (kind: MessageKind) => boolean
}

/** What the relay reports as it works. */
export interface NatsDistributionObserver {
  /** Updates received from other nodes over core NATS. */
  relayed?(count: number): void
  /** A message published (not dropped by `sendFilter`), and the updates it holds (kind `update`). */
  sent?(kind: MessageKind, updates: number): void
  /** Log entries read back to fill a gap, and why. */
  repaired?(entries: number, reason: RepairReason): void
  /** A node stopped sending heartbeats (or restarted): its presence was removed. */
  nodeLost?(node: string): void
}

export type MessageKind = 'update' | 'stored' | 'heartbeat' | 'awareness' | 'control'
export type RepairReason = 'counter-gap' | 'stored-gap' | 'heartbeat' | 'log-ahead' | 'node-lost'

/** The relay's own view, for `/readyz`, metrics and tests. */
export interface NatsDistribution extends Distribution {
  readonly nodeId: string
  /** Nodes heard from within `deadAfterMs` (this one excluded). */
  liveNodes(): string[]
  /** Runs one heartbeat and gap check now (tests; the timer does it every `heartbeatMs`). */
  tick(): Promise<void>
}

/** When a node that loaded a session asks the others for their presence a second time (ms). */
const JOIN_REQUERY_MS = 1_000

/** How many heartbeats repeat an origin's last announcement after it. */
const RECENT_HEARTBEATS = 3

/** How many checks of watermark history a session keeps. */
const HISTORY_TICKS = 4

/** A repair that keeps failing is retried after 1, 2, 4… heartbeats, at most this many apart. */
const MAX_RETRY_TICKS = 30

/** What this node sends for one session: its updates under one "origin" per join. */
interface Outgoing {
  readonly origin: string
  /** Updates queued (and relayed) under this origin so far: the last counter used. */
  queued: number
  /** This node's connections' awareness states, by client id: sent to nodes that ask. */
  readonly presence: Map<number, AwarenessEntry>
}

/** The origin and counter an update was relayed under (found again when it commits). */
interface QueuedTag {
  readonly origin: string
  readonly counter: number
}

/** What this node heard from one origin (another node's join of a session). */
interface Incoming {
  readonly node: string
  /** Every counter ≤ this was received. */
  contiguous: number
  /** Counters above `contiguous` received out of order. */
  readonly ahead: Set<number>
  /** Commit announcements received so far, and the highest seq they named. */
  announced: number
  lastSeq: number
}

/** One session this node has loaded. */
interface Joined {
  readonly sessionId: string
  readonly sink: DistributionSink
  readonly subscriptions: Subscription[]
  readonly incoming: Map<string, Incoming>
  /** Remote nodes' presence here, by node then client id: the clock last seen. */
  readonly remotePresence: Map<string, Map<number, number>>
  /** Every log seq ≤ this is in the document. */
  watermark: number
  /** Seqs above the watermark that reached the document (relayed with their seq, or read). */
  readonly seen: Set<number>
  /** The log's last seq at the previous check, if it was ahead of the watermark then. */
  lagging: number | undefined
  /** The watermark at the last few checks, oldest first. */
  readonly history: number[]
  /**
   * Seq ranges to read back (exclusive low, inclusive high): at most one, every request merged
   * into it (a repair reads them as one anyway). A range is here or being read, never both.
   */
  readonly pending: Array<[number, number]>
  repairing: Promise<void> | undefined
  /** Repairs that failed in a row; while above 0 only the heartbeat retries (backoff). */
  failures: number
  /** Heartbeats to wait before the next retry of a failed repair. */
  retryIn: number
  /** Why the range that failed was asked for (the retry counts its entries under it). */
  retryReason: RepairReason
}

/** A node as its heartbeats (and its other messages) describe it. */
interface NodeState {
  /** Its process incarnation, from its heartbeats; empty until one arrives. */
  incarnation: string
  lastSeenAt: number
}

/** '.' splits subject tokens: escaped so every session id is one token (ids never hold '%'). */
export function subjectToken(sessionId: string): string {
  return sessionId.replaceAll('.', '%2E')
}

/** Creates the relay of one node. Call `close()` before closing the connection. */
export function createNatsDistribution(options: NatsDistributionOptions): NatsDistribution {
  const { connection: nc, nodeId, log, logger } = options
  const prefix = options.prefix ?? 'colloquy'
  const heartbeatMs = options.heartbeatMs ?? 1000
  const deadAfterMs = options.deadAfterMs ?? 3500
  const logCheckMs = options.logCheckMs ?? (log.lastLogSeq === undefined ? 15_000 : 0)
  /** The log's last seq for a session, by the cheapest means the log offers. */
  const lastSeqOf = async (sessionId: string): Promise<number> =>
    log.lastLogSeq === undefined ? ((await log.getMeta(sessionId))?.lastSeq ?? 0) : log.lastLogSeq(sessionId)
  const now = options.now ?? Date.now
  let lastLogCheckAt = now()
  const observer = options.observer ?? {}
  const allow = options.sendFilter ?? (() => true)
  const incarnation = `${nodeId}~${now().toString(36)}~${Math.random().toString(36).slice(2, 8)}`
  const relaySubject = (sessionId: string): string => `${prefix}.relay.${subjectToken(sessionId)}`
  const presenceSubject = (sessionId: string): string => `${prefix}.presence.${subjectToken(sessionId)}`
  const nodesSubject = `${prefix}.nodes`

  const joined = new Map<string, Joined>()
  const outgoing = new Map<string, Outgoing>()
  /** Each relayed update's tag, by the update's bytes: the write queue stores those very bytes. */
  const tags = new WeakMap<Uint8Array, QueuedTag>()
  const nodes = new Map<string, NodeState>()
  let joins = 0
  let isClosed = false

  const publish = (kind: MessageKind, subject: string, payload: Uint8Array, updates = 0): void => {
    if (isClosed || !allow(kind)) return
    try {
      nc.publish(subject, payload)
      observer.sent?.(kind, updates)
    } catch (error) {
      // A closed or draining connection: the gap checks of the other nodes cover what is lost.
      logger.debug({ err: error, subject }, 'relay publish failed')
    }
  }

  const sender = createRelaySender({
    nodeId,
    subjectOf: relaySubject,
    publish,
    announceDelayMs: options.announceDelayMs ?? DEFAULT_ANNOUNCE_DELAY_MS,
    now,
  })
  const { announcing } = sender

  const outgoingOf = (sessionId: string): Outgoing => {
    let out = outgoing.get(sessionId)
    if (out === undefined) {
      out = { origin: `${incarnation}~${++joins}`, queued: 0, presence: new Map() }
      outgoing.set(sessionId, out)
    }
    return out
  }

  // ---- receiving ------------------------------------------------------------------------------

  const markSeen = (session: Joined, seq: number): void => {
    if (seq <= session.watermark) return
    session.seen.add(seq)
  }

  const incomingOf = (session: Joined, node: string, origin: string): Incoming => {
    let state = session.incoming.get(origin)
    if (state === undefined) {
      state = { node, contiguous: 0, ahead: new Set(), announced: 0, lastSeq: oldWatermark(session) }
      session.incoming.set(origin, state)
    }
    return state
  }

  const hasCounter = (state: Incoming, counter: number): boolean =>
    counter <= state.contiguous || state.ahead.has(counter)

  const noteCounter = (state: Incoming, counter: number): void => {
    if (counter <= state.contiguous) return
    state.ahead.add(counter)
    while (state.ahead.delete(state.contiguous + 1)) state.contiguous++
  }

  /** Adds (after, through] to the session's one pending range. */
  const addPending = (session: Joined, after: number, through: number): void => {
    const held = session.pending[0]
    if (held === undefined) session.pending.push([after, through])
    else {
      held[0] = Math.min(held[0], after)
      held[1] = Math.max(held[1], through)
    }
  }

  const requestRepair = (session: Joined, after: number, through: number, reason: RepairReason): void => {
    if (through <= after) return
    addPending(session, after, through)
    // After a failed read the heartbeat retries, backing off: the log is slow or unreachable.
    if (session.failures === 0) void repair(session, reason)
  }

  /**
   * Any message of `node` proves it alive, not its heartbeats only. A node that held presence here
   * but whose heartbeats never reached this one (it died within a heartbeat of this node
   * subscribing: its last heartbeat went out before) would otherwise never be known, so never
   * lost, and its clients would stay in presence for ever.
   */
  const noteAlive = (node: string): void => {
    const known = nodes.get(node)
    if (known !== undefined) known.lastSeenAt = now()
    else nodes.set(node, { incarnation: '', lastSeenAt: now() })
  }

  const onRelay = (session: Joined, data: Uint8Array): void => {
    const decoder = decoding.createDecoder(data)
    const kind = decoding.readUint8(decoder)
    const node = decoding.readVarString(decoder)
    if (node === nodeId) return
    noteAlive(node)
    const origin = decoding.readVarString(decoder)
    const state = incomingOf(session, node, origin)
    if (kind === Kind.update) {
      const counter = decoding.readVarUint(decoder)
      const update = decoding.readTailAsUint8Array(decoder)
      noteCounter(state, counter)
      observer.relayed?.(1)
      session.sink.applyRemoteUpdate(update, undefined)
      return
    }
    if (kind === Kind.updates) {
      const first = decoding.readVarUint(decoder)
      const count = decoding.readVarUint(decoder)
      for (let i = 0; i < count; i++) {
        const update = decoding.readVarUint8Array(decoder)
        noteCounter(state, first + i)
        session.sink.applyRemoteUpdate(update, undefined)
      }
      observer.relayed?.(count)
      return
    }
    if (kind !== Kind.stored) return
    const announcement = decoding.readVarUint(decoder)
    const count = decoding.readVarUint(decoder)
    if (announcement > state.announced + 1 && count > 0) {
      // Announcements were lost: what they named lies between the last seq heard and this one.
      const peek = decoding.clone(decoder)
      decoding.readVarUint(peek) // the first pair's counter
      const firstSeq = decoding.readVarUint(peek)
      requestRepair(session, state.lastSeq, firstSeq - 1, 'stored-gap')
    }
    let lowMissing = Number.POSITIVE_INFINITY
    let highMissing = 0
    let highCounter = 0
    for (let i = 0; i < count; i++) {
      const counter = decoding.readVarUint(decoder)
      const seq = decoding.readVarUint(decoder)
      if (hasCounter(state, counter)) markSeen(session, seq)
      else {
        lowMissing = Math.min(lowMissing, seq)
        highMissing = Math.max(highMissing, seq)
      }
      highCounter = Math.max(highCounter, counter)
      state.lastSeq = Math.max(state.lastSeq, seq)
    }
    state.announced = Math.max(state.announced, announcement)
    if (highMissing > 0) requestRepair(session, lowMissing - 1, highMissing, 'counter-gap')
    // Commits follow queue order: every counter up to the highest committed is settled (received,
    // being repaired, or dropped by a session that failed).
    if (state.contiguous < highCounter) {
      for (const counter of state.ahead) if (counter <= highCounter) state.ahead.delete(counter)
      state.contiguous = highCounter
      while (state.ahead.delete(state.contiguous + 1)) state.contiguous++
    }
  }

  const onPresence = (session: Joined, data: Uint8Array): void => {
    const decoder = decoding.createDecoder(data)
    const kind = decoding.readUint8(decoder)
    const node = decoding.readVarString(decoder)
    if (node === nodeId) return
    noteAlive(node)
    if (kind === Kind.query) {
      const out = outgoing.get(session.sessionId)
      if (out !== undefined && out.presence.size > 0)
        sendPresence(session.sessionId, [...out.presence.values()])
      return
    }
    if (kind !== Kind.awareness) return
    const update = decoding.readTailAsUint8Array(decoder)
    let entries: AwarenessEntry[]
    try {
      entries = decodeAwarenessUpdate(update)
    } catch (error) {
      logger.warn({ session: session.sessionId, node, err: error }, 'relayed awareness dropped: malformed')
      return
    }
    let clocks = session.remotePresence.get(node)
    if (clocks === undefined) {
      clocks = new Map()
      session.remotePresence.set(node, clocks)
    }
    for (const entry of entries) {
      if (entry.isRemoval) clocks.delete(entry.clientId)
      else clocks.set(entry.clientId, entry.clock)
    }
    session.sink.applyRemoteAwareness(update)
  }

  const sendPresence = (sessionId: string, entries: readonly AwarenessEntry[]): void => {
    const encoder = encoding.createEncoder()
    encoding.writeUint8(encoder, Kind.awareness)
    encoding.writeVarString(encoder, nodeId)
    encoding.writeUint8Array(encoder, encodeAwarenessUpdate(entries))
    publish('awareness', presenceSubject(sessionId), encoding.toUint8Array(encoder))
  }

  /** Removes `node`'s clients from the presence of every session here. */
  const dropPresenceOf = (node: string): void => {
    for (const session of joined.values()) {
      const clocks = session.remotePresence.get(node)
      session.remotePresence.delete(node)
      if (clocks === undefined || clocks.size === 0) continue
      const removals = [...clocks].map(([clientId, clock]) => ({
        clientId,
        clock: clock + 1,
        stateJson: 'null',
        isRemoval: true,
      }))
      session.sink.applyRemoteAwareness(encodeAwarenessUpdate(removals))
    }
  }

  /** A node died or restarted: its presence goes, and what it stored may never have been announced. */
  const loseNode = (node: string): void => {
    logger.warn({ node }, 'cluster node lost: its clients leave presence')
    observer.nodeLost?.(node)
    dropPresenceOf(node)
    for (const session of joined.values()) {
      let from = Number.POSITIVE_INFINITY
      for (const [origin, state] of session.incoming) {
        if (state.node !== node) continue
        from = Math.min(from, state.lastSeq)
        session.incoming.delete(origin)
      }
      // Its last announcements may be lost, and so may all of a join we never heard of.
      from = Math.min(from, oldWatermark(session))
      void readAhead(session, from, 'node-lost').catch((error: unknown) => {
        logger.warn({ session: session.sessionId, err: error }, 'read after a lost node failed')
      })
    }
  }

  const onNodes = (data: Uint8Array): void => {
    const decoder = decoding.createDecoder(data)
    const kind = decoding.readUint8(decoder)
    const node = decoding.readVarString(decoder)
    if (node === nodeId) return
    const nodeIncarnation = decoding.readVarString(decoder)
    if (kind === Kind.leave) {
      if (nodes.delete(node)) dropPresenceOf(node)
      return
    }
    if (kind !== Kind.heartbeat) return
    const known = nodes.get(node)
    // A node known only from its other messages (incarnation '') is the same process.
    if (known !== undefined && known.incarnation !== '' && known.incarnation !== nodeIncarnation)
      loseNode(node)
    if (known === undefined || known.incarnation !== nodeIncarnation)
      logger.info({ node, incarnation: nodeIncarnation }, 'cluster node heard')
    nodes.set(node, { incarnation: nodeIncarnation, lastSeenAt: now() })
    // Recently active sessions: the sender's last counters, in case their last messages were lost.
    const count = decoding.readVarUint(decoder)
    for (let i = 0; i < count; i++) {
      const sessionId = decoding.readVarString(decoder)
      const origin = decoding.readVarString(decoder)
      const announced = decoding.readVarUint(decoder)
      const lastSeq = decoding.readVarUint(decoder)
      const session = joined.get(sessionId)
      if (session === undefined) continue
      const state = incomingOf(session, node, origin)
      if (announced <= state.announced) continue
      // Announcements we never got: read what they named.
      const after = state.lastSeq
      state.announced = announced
      state.lastSeq = Math.max(state.lastSeq, lastSeq)
      requestRepair(session, after, lastSeq, 'heartbeat')
    }
  }

  // ---- repair -----------------------------------------------------------------------------------

  /**
   * Reads the pending ranges of `session` from the log and applies them, one repair at a time.
   * A range whose read fails goes back to pending (regression, issue 15: dropped, the next log
   * check moved the watermark over it and the node lacked acked updates until it unloaded the
   * session); the heartbeat retries it after 1, 2, 4… heartbeats (at most {@link MAX_RETRY_TICKS}).
   */
  const repair = (session: Joined, reason: RepairReason): Promise<void> => {
    session.repairing ??= (async () => {
      let reading: [number, number] | undefined
      try {
        while (session.pending.length > 0 && joined.get(session.sessionId) === session) {
          const ranges = session.pending.splice(0)
          reading = [Math.min(...ranges.map(([low]) => low)), Math.max(...ranges.map(([, high]) => high))]
          await readBack(session, reading[0], reading[1], reason)
          reading = undefined
          session.failures = 0
        }
      } catch (error) {
        const [after, through] = reading ?? [0, 0]
        // Kept for the retry: dropped, the next log check would move the watermark over it.
        if (reading !== undefined) addPending(session, after, through)
        session.failures++
        session.retryIn = Math.min(2 ** (session.failures - 1), MAX_RETRY_TICKS)
        session.retryReason = reason
        logger.warn(
          {
            session: session.sessionId,
            after,
            through,
            failures: session.failures,
            retryInMs: session.retryIn * heartbeatMs,
            err: error,
          },
          'gap repair failed: the range stays pending and is read again later',
        )
      } finally {
        session.repairing = undefined
      }
    })()
    return session.repairing
  }

  /** At each heartbeat: retries the failed repairs whose backoff is over. */
  const retryRepairs = (): void => {
    for (const session of joined.values()) {
      if (session.failures === 0 || session.repairing !== undefined || session.pending.length === 0) continue
      if (--session.retryIn > 0) continue
      void repair(session, session.retryReason)
    }
  }

  const readBack = async (session: Joined, after: number, through: number, reason: RepairReason) => {
    const meta = await log.getMeta(session.sessionId)
    const trimmed = meta?.trimmedThrough ?? meta?.checkpointSeq ?? 0
    let applied = 0
    if (after < trimmed) {
      // Part of the range was folded into a checkpoint: apply the checkpoint and the log after it.
      const stored = await log.load(session.sessionId)
      if (stored.checkpoint !== undefined) {
        session.sink.applyRemoteUpdate(stored.checkpoint.state, stored.checkpoint.seq)
        applied++
      }
      for (const entry of stored.log) {
        if (entry.seq > through) break
        session.sink.applyRemoteUpdate(entry.update, entry.seq)
        applied++
      }
    } else {
      const entries = await log.readLog(session.sessionId, { fromSeq: after + 1, toSeq: through })
      for (const entry of entries) {
        if (entry.seq <= session.watermark || session.seen.has(entry.seq)) continue
        session.sink.applyRemoteUpdate(entry.update, entry.seq)
        markSeen(session, entry.seq)
        applied++
      }
    }
    // Everything in (after, through] is in the document now.
    if (after <= session.watermark) advanceWatermark(session, through)
    if (applied > 0) observer.repaired?.(applied, reason)
    logger.debug({ session: session.sessionId, after, through, applied, reason }, 'gap repaired from the log')
  }

  const advanceWatermark = (session: Joined, to: number): void => {
    if (to <= session.watermark) return
    session.watermark = to
    for (const seq of session.seen) if (seq <= to) session.seen.delete(seq)
  }

  /**
   * Compares the log's last seq with what this node knows it applied. The last seq seen at the
   * previous check, if it was ahead: by now every node that stored up to it announced it (or its
   * heartbeat, or its loss, asked for a repair). If that very seq was never announced, the entries
   * after the watermark are read back; else the watermark moves up to it without reading. While
   * a repair is reading, neither: the range it reads may hold that seq (a second request would
   * read it twice), and a read that fails keeps its range pending; the next check decides.
   */
  const checkLog = async (session: Joined): Promise<void> => {
    const last = await lastSeqOf(session.sessionId)
    const previous = session.lagging
    if (previous !== undefined && previous > session.watermark && session.repairing === undefined) {
      if (!session.seen.has(previous)) requestRepair(session, session.watermark, previous, 'log-ahead')
      else if (session.pending.length === 0) advanceWatermark(session, previous)
    }
    session.lagging = last > session.watermark ? last : undefined
    session.history.push(session.watermark)
    if (session.history.length > HISTORY_TICKS) session.history.shift()
  }

  /** Reads whatever the log holds after `from` (a join, a lost node). */
  const readAhead = async (session: Joined, from: number, reason: RepairReason): Promise<void> => {
    requestRepair(session, from, await lastSeqOf(session.sessionId), reason)
  }

  /** A watermark from a few checks ago: where a read for an origin heard of only now starts. */
  const oldWatermark = (session: Joined): number => session.history[0] ?? session.watermark

  // ---- heartbeats -------------------------------------------------------------------------------

  const sendHeartbeat = (): void => {
    // What the heartbeat repeats is then all sent.
    sender.flushAnnouncements()
    const encoder = encoding.createEncoder()
    encoding.writeUint8(encoder, Kind.heartbeat)
    encoding.writeVarString(encoder, nodeId)
    encoding.writeVarString(encoder, incarnation)
    // Origins that announced lately: a receiver that missed their last announcement learns of it.
    for (const [origin, state] of announcing)
      if (now() - state.activeAt > RECENT_HEARTBEATS * heartbeatMs) announcing.delete(origin)
    encoding.writeVarUint(encoder, announcing.size)
    for (const state of announcing.values()) {
      encoding.writeVarString(encoder, state.sessionId)
      encoding.writeVarString(encoder, state.origin)
      encoding.writeVarUint(encoder, state.announced)
      encoding.writeVarUint(encoder, state.lastSeq)
    }
    publish('heartbeat', nodesSubject, encoding.toUint8Array(encoder))
  }

  /** The log checks of the last tick, while they run: a slow log (no quorum) must not pile them up. */
  let checking: Promise<unknown> | undefined
  const tick = async (): Promise<void> => {
    if (isClosed) return
    sendHeartbeat()
    const cutoff = now() - deadAfterMs
    for (const [node, state] of nodes) {
      if (state.lastSeenAt >= cutoff) continue
      nodes.delete(node)
      loseNode(node)
    }
    retryRepairs()
    if (checking !== undefined || now() - lastLogCheckAt < logCheckMs) return
    lastLogCheckAt = now()
    checking = Promise.all(
      [...joined.values()].map((session) =>
        checkLog(session).catch((error: unknown) => {
          logger.debug({ session: session.sessionId, err: error }, 'log check failed')
        }),
      ),
    )
    try {
      await checking
    } finally {
      checking = undefined
    }
  }

  const subscribeNodes = (): Subscription =>
    nc.subscribe(nodesSubject, {
      callback: (error, message) => {
        if (error === null) guard(() => onNodes(message.data))
      },
    })
  const subscribeSession = (session: Joined): Subscription[] => [
    nc.subscribe(relaySubject(session.sessionId), {
      callback: (error, message) => {
        if (error === null) guard(() => onRelay(session, message.data))
      },
    }),
    nc.subscribe(presenceSubject(session.sessionId), {
      callback: (error, message) => {
        if (error === null) guard(() => onPresence(session, message.data))
      },
    }),
  ]
  const nodesSubscription = subscribeNodes()
  const control = createSessionControl({
    nc,
    nodeId,
    incarnation,
    prefix,
    liveNodes: () => nodes.keys(),
    isLive: (node) => nodes.has(node),
    timeoutMs: options.retireTimeoutMs ?? 10_000,
    logger,
    publish: (subject, payload) => publish('control', subject, payload),
  })
  const timer = setInterval(() => void tick(), heartbeatMs)
  timer.unref()
  sendHeartbeat()

  /** Runs a handler of received bytes; a malformed message is logged and dropped. */
  function guard(handle: () => void): void {
    try {
      handle()
    } catch (error) {
      logger.warn({ err: error }, 'relay message dropped: malformed')
    }
  }

  return {
    mode: 'nats',
    nodeId,
    liveNodes: () => [...nodes.keys()],
    tick,

    join(sessionId, sink) {
      if (isClosed) return
      const previous = joined.get(sessionId)
      if (previous !== undefined)
        for (const subscription of previous.subscriptions) subscription.unsubscribe()
      const session: Joined = {
        sessionId,
        sink,
        subscriptions: [],
        incoming: new Map(),
        remotePresence: new Map(),
        watermark: sink.knownSeq,
        seen: new Set(),
        lagging: undefined,
        history: [],
        pending: [],
        repairing: undefined,
        failures: 0,
        retryIn: 0,
        retryReason: 'log-ahead',
      }
      joined.set(sessionId, session)
      session.subscriptions.push(...subscribeSession(session))
      // Ask the other nodes for their clients' presence (they answer on the presence subject),
      // and read whatever was stored between our load and our subscription. Our subscription
      // reaches the other nats-servers a moment after it reaches ours: what they published in that
      // moment is lost to us, so the query is asked again once it surely arrived (the log's side
      // is covered by the announcements and heartbeats).
      const query = (): void => {
        if (joined.get(sessionId) !== session) return
        const encoder = encoding.createEncoder()
        encoding.writeUint8(encoder, Kind.query)
        encoding.writeVarString(encoder, nodeId)
        publish('awareness', presenceSubject(sessionId), encoding.toUint8Array(encoder))
      }
      query()
      setTimeout(query, JOIN_REQUERY_MS).unref()
      void nc
        .flush()
        .then(() => readAhead(session, session.watermark, 'log-ahead'))
        .catch((error: unknown) => logger.debug({ session: sessionId, err: error }, 'join check failed'))
    },

    leave(sessionId, sink) {
      const session = joined.get(sessionId)
      if (session === undefined || session.sink !== sink) return
      joined.delete(sessionId)
      for (const subscription of session.subscriptions) subscription.unsubscribe()
      sender.flushUpdates()
      const out = outgoing.get(sessionId)
      if (out !== undefined && out.presence.size > 0) {
        // This node's clients of the session are gone (their sockets closed before the unload).
        const removals = [...out.presence.values()].map((entry) => ({
          ...entry,
          clock: entry.clock + 1,
          stateJson: 'null',
          isRemoval: true,
        }))
        sendPresence(sessionId, removals)
      }
      // A later join relays under a new origin; this one's late commits still announce (tags).
      outgoing.delete(sessionId)
    },

    updateQueued(sessionId, update) {
      const out = outgoingOf(sessionId)
      out.queued++
      tags.set(update, { origin: out.origin, counter: out.queued })
      // Regression (issue 15, bench [C2]): one NATS message per update cost every nats-server and
      // every receiving node a message each; the updates of one turn now go as one message.
      // Adaptive: at low rates a turn holds one update, sent at the turn's end as before.
      sender.queue(sessionId, out.origin, out.queued, update)
    },

    updatesStored(entries, seqs) {
      // Regression (issue 15, bench [C1]): one announcement per origin per commit was about one
      // NATS message per update at 1,000/s over 10 sessions (a commit every few ms, holding a few
      // sessions' updates). Those of a window now go together.
      entries.forEach((entry: AppendEntry, i) => {
        const tag = tags.get(entry.update)
        if (tag === undefined) return // never relayed: the log check of the others finds it
        const seq = seqs[i]!
        sender.stored(entry.sessionId, tag.origin, tag.counter, seq)
        const session = joined.get(entry.sessionId)
        if (session !== undefined) markSeen(session, seq)
      })
      sender.committed()
    },

    awarenessChanged(sessionId, update) {
      let entries: AwarenessEntry[]
      try {
        entries = decodeAwarenessUpdate(update)
      } catch {
        return // the session validated it; nothing else reaches here
      }
      const out = outgoingOf(sessionId)
      for (const entry of entries) {
        if (entry.isRemoval) out.presence.delete(entry.clientId)
        else out.presence.set(entry.clientId, entry)
      }
      const encoder = encoding.createEncoder()
      encoding.writeUint8(encoder, Kind.awareness)
      encoding.writeVarString(encoder, nodeId)
      encoding.writeUint8Array(encoder, update)
      publish('awareness', presenceSubject(sessionId), encoding.toUint8Array(encoder))
    },

    bindHost: (host) => control.bindHost(host),
    retireEverywhere: (sessionId, code, reason) => control.retireEverywhere(sessionId, code, reason),
    openElsewhere: (sessionId) => control.openElsewhere(sessionId),

    async close() {
      if (isClosed) return
      sender.flushAnnouncements()
      sender.flushUpdates()
      const encoder = encoding.createEncoder()
      encoding.writeUint8(encoder, Kind.leave)
      encoding.writeVarString(encoder, nodeId)
      encoding.writeVarString(encoder, incarnation)
      publish('heartbeat', nodesSubject, encoding.toUint8Array(encoder))
      isClosed = true
      clearInterval(timer)
      nodesSubscription.unsubscribe()
      control.close()
      for (const session of joined.values())
        for (const subscription of session.subscriptions) subscription.unsubscribe()
      joined.clear()
      await nc.flush().catch(() => undefined)
    },
  }
}

/** Options of {@link connectNatsDistribution}: the relay's own options, with servers to dial. */
export interface ConnectNatsDistributionOptions extends Omit<NatsDistributionOptions, 'connection'> {
  /** NATS URLs (`nats://h1:4222,…` split): any of them; the client fails over between them. */
  readonly servers: readonly string[]
}

/**
 * Opens the relay's own NATS connection (reconnecting forever) and starts the relay on it; its
 * `close()` also closes the connection.
 *
 * @remarks A connection of its own keeps relay traffic out of the store's request/reply flow. While
 * it is reconnecting, core messages are lost: the gap checks (announcements, heartbeats, the log's
 * last seq) read back whatever it missed once it is back.
 */
export async function connectNatsDistribution(
  options: ConnectNatsDistributionOptions,
): Promise<NatsDistribution> {
  const connection = await connect({
    servers: [...options.servers],
    name: `colloquy-relay-${options.nodeId}`,
    // The relay ignores its own messages: without this the server sent each of them back (every
    // update this node relays, read, parsed and dropped again).
    noEcho: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  })
  options.logger.info({ node: options.nodeId, server: connection.getServer() }, 'relay connected')
  const relay = createNatsDistribution({ ...options, connection })
  void (async () => {
    for await (const status of connection.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect')
        options.logger.warn({ status: status.type, node: options.nodeId }, `relay connection ${status.type}`)
    }
  })().catch(() => undefined)
  return {
    ...relay,
    async close() {
      await relay.close()
      await connection.close()
    },
  }
}
