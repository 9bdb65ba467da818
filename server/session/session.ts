// One loaded session: its Y.Doc, its awareness, its connections and its place in the write path.
// It decides what is stored, relayed and acknowledged; sockets and disk stay behind Peer, Topic and
// the write sink it is given.

import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import { decodeAwarenessUpdate, encodeAwarenessUpdate } from '../../shared/protocol/awareness-validate.js'
import { AuthMessageType, type Message, messageByteLength } from '../../shared/protocol/message.js'
import { decodeStateVectorStrict, validateUpdate } from '../../shared/protocol/yjs-validate.js'
import type { Logger } from '../observability/log.js'
import type { AppendEntry, Store, StoredSession } from '../persistence/store.js'
import type { DurableMark } from '../persistence/write-queue.js'
import { type AwarenessView, sortAwarenessEntries } from './awareness-gate.js'
import type { ColdWork } from './cold-work.js'
import { Connection, type ConnectionPolicy } from './connection.js'
import type { Distribution, DistributionSink } from './distribution.js'
import type { Peer, Topic } from './peer.js'
import { createReplyWatch, type ReplyWatch } from './reply-watch.js'

/** The part of the write queue a session uses. */
export interface WriteSink {
  /** Queues an update; returns its ordinal (see WriteQueue.enqueue). The log gives it its seq. */
  enqueue(entry: AppendEntry): number
  pendingFor(sessionId: string): number
  flush(): Promise<void>
  /** A peer waits for what is queued: commit it soon rather than lazily. */
  expedite(): void
}

/** Limits a session enforces on its own. */
export interface SessionLimits {
  /** Frames a connection may send before the session has loaded (0: no count limit). */
  readonly maxLoadingQueueMessages: number
  /** Bytes a connection may send before the session has loaded. */
  readonly maxLoadingQueueBytes: number
  /** Largest awareness message (bytes); undefined or 0: no limit. */
  readonly maxAwarenessBytes?: number
  /** Awareness client ids one connection may own; undefined or 0: no limit. */
  readonly maxAwarenessClientsPerConnection?: number
  /** Stored bytes past which the session refuses writes (reads still served); undefined: no quota. */
  readonly sessionQuotaBytes?: number
}

/** What a session reports as it works (metrics); every callback optional. */
export interface SessionObserver {
  /** An update changed the document and was queued: its size in bytes. */
  updateStored?(bytes: number): void
  /** An update was relayed to the session's other connections. */
  updateRelayed?(bytes: number, recipients: number): void
  /** An ack was released `ms` after its sync-status arrived. */
  ackReleased?(ms: number): void
  /** A connection was closed or a write refused for `code`. */
  rejected?(code: string): void
  /** Awareness entries were dropped because they changed a state another connection owns. */
  awarenessForged?(entries: number): void
  /** A frame of a message type the server does not know was ignored. */
  unknownMessage?(): void
  /** A stateless message was relayed (frame size in bytes; 0 when no peer's protocol carries it). */
  statelessRelayed?(bytes: number): void
}

/** What a session is given by its registry. */
export interface SessionContext {
  readonly store: Store
  readonly writes: WriteSink
  readonly topic: Topic
  /** What other processes must see of this session (default: none, a single node). */
  readonly distribution?: Distribution
  readonly logger: Logger
  readonly limits: SessionLimits
  readonly observer?: SessionObserver
  /** When set, updates are refused with this error (storage failing, backlog too large, shutdown). */
  readonly writeRefusal: () => ColloquyError | undefined
  /** Called when the session has no connections left, to schedule its unload. */
  readonly onIdle: (session: Session) => void
  /** Called once the session can no longer serve (load failed, poisoned, unloaded). */
  readonly onEnded: (session: Session) => void
  readonly now: () => number
  /**
   * How long an agent must be gone from presence before the server marks its `streaming` replies
   * interrupted (reply-watch.ts); undefined or 0: the server leaves that to the agents.
   */
  readonly replyGraceMs?: number
  /**
   * Called once the session's document is loaded; the function it returns (if any) is called when
   * the session ends. The turn service watches new user messages this way (server/turns/auto-turns.ts).
   */
  readonly onReady?: (sessionId: string, doc: Y.Doc) => (() => void) | undefined
  /**
   * Where the end of a cold load waits (its document built, its queued frames replayed): behind
   * the frames of loaded sessions (cold-work.ts). Absent: it runs as soon as the store answers.
   */
  readonly coldWork?: ColdWork
}

export type SessionState = 'loading' | 'ready' | 'ended'

/** The peer id of every connection on a server without a secret (see ConnectionPolicy.peerId). */
const ANONYMOUS_PEER_ID = 'anonymous'

/** The origin of transactions that rebuild a session from storage. */
export const LOAD_ORIGIN = Symbol('colloquy-load')

/** The origin of changes the server makes itself (marking a dead agent's reply interrupted). */
export const SERVER_ORIGIN = Symbol('colloquy-server')

/** The origin of updates another process applied and sent through the distribution. */
export const REMOTE_ORIGIN = Symbol('colloquy-remote')

interface AckWaiter {
  readonly connection: Connection
  /** The write-queue ordinal of the session's last queued update when the sync-status arrived. */
  readonly ordinal: number
  /** The sync-status message, echoed as received (the classic codec sends its very frame). */
  readonly message: Message
  /** When the sync-status arrived (ms, the context's clock). */
  readonly receivedAt: number
}

/**
 * A loaded session's document as one update, standing for every seq up to the seq the log gives its
 * last update (see Session.snapshot).
 */
export interface LiveSnapshot {
  /** When the last update it holds arrived (ms). */
  readonly time: number
  readonly state: Uint8Array
  /**
   * Resolves with the seq the snapshot stands for once that seq is durable (at once when it already
   * is); rejects if the session ends first.
   */
  durable(): Promise<number>
}

function sessionEndedError(): ColloquyError {
  return new ColloquyError('internal', 'session ended before its snapshot was durable')
}

/** A document with more structs than this is checkpointed by a fold in the worker, not a live snapshot. */
export const LIVE_SNAPSHOT_MAX_STRUCTS = 20_000

/**
 * A session in memory.
 *
 * @remarks
 * A session handles decoded, protocol-neutral messages ({@link Message}); frames are decoded at the
 * transport's edge with the peer's codec, and what the session sends or publishes is encoded there
 * (once per wire protocol for a publish). Write path: an incoming update is validated, applied,
 * and — only if it changed the document or its pending structs — given the next seq, queued for the
 * group commit and published to the session's topic (never to its sender). The update stored is the
 * one received, and the message relayed is the one received, so the classic codec sends its very
 * frame: the server never re-encodes an update, and its cost stays flat however long the document
 * grows. A sync-status message is echoed once every seq queued before it is durable.
 */
export class Session implements DistributionSink {
  readonly id: string
  readonly connections = new Set<Connection>()
  state: SessionState = 'loading'
  /**
   * The highest log seq the document is known to include: what it loaded, raised as the log gives
   * its own updates their seqs (at commit) and by remote updates that came with one.
   */
  lastSeq = 0
  /** Updates this session queued for the log since it loaded (durable or not). */
  updatesQueued = 0
  /** The write-queue ordinal of the last update this session queued (-1: none). */
  private queuedOrdinal = -1
  /** The write-queue ordinal of the last of its updates known durable (-1: none). */
  private durableOrdinal = -1
  /** When the last update the document holds arrived (ms), if known (see {@link snapshot}). */
  private lastTime: number | undefined
  /** Bytes stored for this session (log and checkpoint at load, plus every update queued since). */
  storedBytes = 0
  /** When the session last had a connection or a frame (ms): idle sessions are unloaded oldest first. */
  lastActiveAt = 0
  /** Resolves when loading ended, successfully or not. */
  readonly whenLoaded: Promise<void>

  private readonly ctx: SessionContext
  private doc: Y.Doc | undefined
  private awareness: awarenessProtocol.Awareness | undefined
  private replyWatch: ReplyWatch | undefined
  /** The live connection that owns each awareness client id (the one that introduced it). */
  private readonly awarenessOwners = new Map<number, Connection>()
  private ackWaiters: AckWaiter[] = []
  private durableWaiters: {
    ordinal: number
    resolve: (seq: number) => void
    reject: (error: unknown) => void
  }[] = []
  private isUnloadWanted = false
  /** Holds taken with {@link holdLoaded} and not yet released. */
  private loadedHolds = 0
  /** Undoes what {@link SessionContext.onReady} set up. */
  private stopWatching: (() => void) | undefined
  /** Whether the distribution delivers to this session (joined after load, left at end). */
  private isJoined = false
  /** Whether an update another process sent changed the document since load (see snapshot). */
  private hasRemoteChanges = false

  constructor(id: string, ctx: SessionContext) {
    this.id = id
    this.ctx = ctx
    this.whenLoaded = this.load()
  }

  /** The session's document; throws unless the session is ready. */
  get document(): Y.Doc {
    if (this.doc === undefined || this.state !== 'ready')
      throw new ColloquyError('internal', 'session not ready')
    return this.doc
  }

  /** Attaches a peer. Until the session is loaded its frames are queued; then it gets sync step 1. */
  attach(peer: Peer, policy?: ConnectionPolicy): Connection {
    const connection = new Connection(peer, policy)
    this.lastActiveAt = this.ctx.now()
    this.connections.add(connection)
    this.isUnloadWanted = false
    if (this.state === 'ready') this.open(connection)
    else if (this.state === 'ended') connection.close(...closeArgs(new ColloquyError('session-load-failed')))
    return connection
  }

  /**
   * Handles one decoded message from a connection. Never throws: a bad message closes that
   * connection.
   */
  receive(connection: Connection, message: Message): void {
    if (connection.isClosed) return
    this.lastActiveAt = this.ctx.now()
    if (this.state === 'loading') {
      this.queueWhileLoading(connection, message)
      return
    }
    if (this.state !== 'ready') return
    try {
      this.handle(connection, message)
    } catch (error) {
      this.refuse(connection, error)
    }
  }

  /**
   * Answers a frame the connection's codec could not decode, or a message the session could not
   * handle: an `unknown-message-type` is ignored (counted, logged at debug) as y-protocols peers do;
   * anything else closes that connection with the error's close code, a log line and a metric.
   */
  refuse(connection: Connection, error: unknown): void {
    if (connection.isClosed) return
    if (error instanceof ColloquyError && error.code === 'unknown-message-type')
      this.ignore(connection, error)
    else this.reject(connection, error)
  }

  /** Detaches a connection whose socket closed: its awareness states are removed for everyone. */
  detach(connection: Connection): void {
    if (!this.connections.delete(connection)) return
    connection.isClosed = true
    this.ctx.topic.unsubscribe(connection.peer)
    const awareness = this.awareness
    if (connection.awarenessClientIds.size > 0) {
      // Only the ids this connection owns: an id it merely echoed or tried to forge stays its owner's.
      const owned = [...connection.awarenessClientIds]
      connection.awarenessClientIds.clear()
      for (const id of owned) if (this.awarenessOwners.get(id) === connection) this.awarenessOwners.delete(id)
      const present = awareness === undefined ? [] : owned.filter((id) => awareness.states.has(id))
      if (awareness !== undefined && present.length > 0) {
        awarenessProtocol.removeAwarenessStates(awareness, present, connection)
        const update = awarenessProtocol.encodeAwarenessUpdate(awareness, present)
        this.ctx.topic.publish({ type: 'awareness', update })
        if (this.isJoined) this.ctx.distribution?.awarenessChanged(this.id, update)
      }
    }
    if (this.connections.size === 0 && this.state === 'ready') this.ctx.onIdle(this)
  }

  /**
   * Records that this session's queued updates up to `mark.ordinal` are durable (the last at
   * `mark.seq`), and releases the acks waiting for them.
   */
  markDurable(mark: DurableMark): void {
    const { ordinal } = mark
    if (ordinal <= this.durableOrdinal) return
    this.durableOrdinal = ordinal
    if (mark.seq > this.lastSeq) this.lastSeq = mark.seq
    let released = 0
    while (released < this.ackWaiters.length && this.ackWaiters[released]!.ordinal <= ordinal) {
      const waiter = this.ackWaiters[released]!
      if (!waiter.connection.isClosed) {
        waiter.connection.send(waiter.message)
        this.ctx.observer?.ackReleased?.(this.ctx.now() - waiter.receivedAt)
      }
      released++
    }
    if (released > 0) this.ackWaiters = this.ackWaiters.slice(released)
    if (this.durableWaiters.length > 0) {
      const waiting = this.durableWaiters
      this.durableWaiters = waiting.filter((waiter) => waiter.ordinal > ordinal)
      for (const waiter of waiting) {
        if (waiter.ordinal > ordinal) continue
        // The seq the log gave exactly that update: a later one of the same commit would claim
        // updates the waiter's snapshot does not hold.
        const index = mark.ordinals.lastIndexOf(waiter.ordinal)
        if (index >= 0) waiter.resolve(mark.seqs[index]!)
        else waiter.reject(new ColloquyError('internal', 'a snapshot lost track of its seq'))
      }
    }
    if (this.isUnloadWanted) this.tryUnload()
  }

  /**
   * The document's state as one update, with the seq and time it stands for, or `undefined` when the
   * session is not ready, the time of its last seq is unknown, or the document holds more than
   * {@link LIVE_SNAPSHOT_MAX_STRUCTS} structs.
   *
   * @remarks The compactor checkpoints from this instead of replaying the log: every change of the
   * document got the next seq and was queued in order, so the document is exactly the replay of
   * seqs ≤ `seq` (pending structs included: Yjs encodes them with the state). The caller must wait
   * until `seq` is durable before writing a checkpoint at it. Encoding costs time in proportion to
   * the structs, not to the history; the bound keeps it to a few ms of the event loop, and larger
   * documents are folded in the worker as before.
   */
  snapshot(afterSeq = 0): LiveSnapshot | undefined {
    const doc = this.doc
    if (this.state !== 'ready' || doc === undefined || this.lastTime === undefined) return undefined
    // Other processes' updates interleave with ours in the log: the document is then no replay of
    // a seq prefix, and only a fold of the log can make a checkpoint.
    if (this.hasRemoteChanges) return undefined
    const hasPending = this.queuedOrdinal > this.durableOrdinal
    if (!hasPending && this.lastSeq <= afterSeq) return undefined
    let structs = 0
    for (const list of doc.store.clients.values()) structs += list.length
    if (structs > LIVE_SNAPSHOT_MAX_STRUCTS) return undefined
    const seq = this.lastSeq
    const ordinal = this.queuedOrdinal
    return {
      time: this.lastTime,
      state: Y.encodeStateAsUpdate(doc),
      durable: () => (hasPending ? this.whenDurable(ordinal) : Promise.resolve(seq)),
    }
  }

  /**
   * Resolves with the seq the log gave this session's update at `ordinal` once it is durable,
   * without hurrying the group commit; rejects if the session ends first.
   */
  private whenDurable(ordinal: number): Promise<number> {
    if (this.state === 'ended') return Promise.reject(sessionEndedError())
    return new Promise((resolve, reject) => this.durableWaiters.push({ ordinal, resolve, reject }))
  }

  /**
   * Resolves once every change queued so far is durable (at once when none waits), without
   * hurrying the group commit; rejects if the session ends first.
   */
  whenStored(): Promise<void> {
    if (this.durableOrdinal >= this.queuedOrdinal) return Promise.resolve()
    return this.whenDurable(this.queuedOrdinal).then(() => undefined)
  }

  /** See {@link DistributionSink.knownSeq}. */
  get knownSeq(): number {
    return this.lastSeq
  }

  /** See {@link DistributionSink.applyRemoteUpdate}: applied and relayed here, never stored again. */
  applyRemoteUpdate(update: Uint8Array, seq: number | undefined): void {
    const doc = this.doc
    if (this.state !== 'ready' || doc === undefined) return
    let isChanged: boolean
    try {
      isChanged = integrate(doc, update, REMOTE_ORIGIN)
    } catch (error) {
      // Another node stored what this one cannot integrate: reload from the log rather than serve a
      // document that may hold part of it.
      this.ctx.logger.error({ session: this.id, err: error }, 'remote update failed to integrate: resetting')
      this.end(...closeArgs(new ColloquyError('internal', 'session reset after a failed remote update')))
      return
    }
    if (seq !== undefined && seq > this.lastSeq) this.lastSeq = seq
    if (!isChanged) return
    this.hasRemoteChanges = true
    this.storedBytes += update.length
    const bytes = this.ctx.topic.publish({ type: 'sync-update', update })
    this.ctx.observer?.updateRelayed?.(bytes, this.connections.size)
  }

  /** See {@link DistributionSink.applyRemoteAwareness}: applied and relayed to this process's peers. */
  applyRemoteAwareness(update: Uint8Array): void {
    const awareness = this.awareness
    if (this.state !== 'ready' || awareness === undefined) return
    try {
      awarenessProtocol.applyAwarenessUpdate(awareness, update, REMOTE_ORIGIN)
    } catch (error) {
      this.ctx.logger.warn({ session: this.id, err: error }, 'remote awareness update ignored: malformed')
      return
    }
    this.ctx.topic.publish({ type: 'awareness', update })
  }

  /** Asks the session to unload once it has no connections and nothing left to write. */
  requestUnload(): void {
    this.isUnloadWanted = true
    this.tryUnload()
  }

  /**
   * Keeps the session loaded until the returned function is called: an unload asked meanwhile (idle
   * timer, room for another session) happens after it, once the session is flushed.
   *
   * @remarks Only unloading waits: {@link end} (a delete, a shutdown, a failure) still ends it.
   */
  holdLoaded(): () => void {
    this.loadedHolds++
    let isReleased = false
    return () => {
      if (isReleased) return
      isReleased = true
      this.loadedHolds--
      if (this.isUnloadWanted) this.tryUnload()
    }
  }

  /** Ready, with no connection and nothing waiting for the disk: what unloading it needs, besides no hold. */
  get isIdle(): boolean {
    return this.state === 'ready' && this.connections.size === 0 && this.isFlushed
  }

  /** True when nothing this session queued is still waiting for the disk. */
  get isFlushed(): boolean {
    return this.durableOrdinal >= this.queuedOrdinal && this.ctx.writes.pendingFor(this.id) === 0
  }

  /** Closes every connection with `code` (shutdown, poisoning) without unloading. */
  closeAll(code: number, reason: string): void {
    for (const connection of [...this.connections]) connection.close(code, reason)
  }

  /** Ends the session now: connections closed, document freed. Only for shutdown or after failure. */
  end(code: number, reason: string): void {
    if (this.state === 'ended') return
    this.state = 'ended'
    if (this.isJoined) {
      this.isJoined = false
      this.ctx.distribution?.leave(this.id, this)
    }
    this.closeAll(code, reason)
    this.ackWaiters = []
    const waiting = this.durableWaiters
    this.durableWaiters = []
    for (const waiter of waiting) waiter.reject(sessionEndedError())
    this.replyWatch?.stop()
    this.stopWatching?.()
    this.stopWatching = undefined
    this.awareness?.destroy()
    this.doc?.destroy()
    this.awareness = undefined
    this.doc = undefined
    this.ctx.onEnded(this)
  }

  private tryUnload(): void {
    if (this.loadedHolds > 0 || !this.isIdle) return
    this.ctx.logger.debug({ session: this.id, seq: this.lastSeq }, 'session unloaded')
    this.end(1001, 'session unloaded')
  }

  private async load(): Promise<void> {
    let stored: StoredSession
    try {
      // A session unloaded or reset a moment ago may still have writes in the queue: read after them.
      if (this.ctx.writes.pendingFor(this.id) > 0) await this.ctx.writes.flush()
      stored = await this.ctx.store.load(this.id)
    } catch (error) {
      this.failLoad(error)
      return
    }
    const coldWork = this.ctx.coldWork
    if (coldWork === undefined) {
      this.finishLoad(stored)
      return
    }
    // Synchronous, in a slice of the cold-work queue: loaded sessions' frames go first.
    await new Promise<void>((resolve) =>
      coldWork.defer(() => {
        try {
          this.finishLoad(stored)
        } finally {
          resolve()
        }
      }),
    )
  }

  private failLoad(error: unknown): void {
    this.ctx.logger.error({ session: this.id, err: error }, 'session load failed')
    this.end(...closeArgs(new ColloquyError('session-load-failed', undefined, { cause: error })))
  }

  /** Builds the document from what the store returned and serves the connections that waited. */
  private finishLoad(stored: StoredSession): void {
    if (this.state !== 'loading') return
    try {
      // The session id as the document's guid: Yjs would otherwise draw a random uuid (31 calls to
      // the system's random source), measured at 1.2 s of server CPU for issue 17's 10,000-session
      // burst. The guid names subdocuments only; our sessions have none.
      const doc = new Y.Doc({ gc: true, guid: this.id })
      let lastSeq = stored.meta?.lastSeq ?? 0
      doc.transact(() => {
        if (stored.checkpoint !== undefined) {
          Y.applyUpdate(doc, stored.checkpoint.state)
          lastSeq = Math.max(lastSeq, stored.checkpoint.seq)
        }
        for (const entry of stored.log) {
          Y.applyUpdate(doc, entry.update)
          lastSeq = Math.max(lastSeq, entry.seq)
        }
      }, LOAD_ORIGIN)
      // The newest stored seq is the last log entry (the log is in seq order), or the checkpoint
      // when no log follows it.
      const newest = stored.log.at(-1) ?? stored.checkpoint
      const awareness = new awarenessProtocol.Awareness(doc)
      // The server is no participant: it announces no presence of its own.
      awareness.setLocalState(null)
      awareness.on('update', this.trackAwareness)
      awareness.on('update', this.watchPresence)
      this.doc = doc
      this.awareness = awareness
      this.storedBytes = (stored.meta?.logBytes ?? 0) + (stored.meta?.checkpointBytes ?? 0)
      this.lastSeq = lastSeq
      this.lastTime = newest?.seq === lastSeq ? newest.time : undefined
      this.state = 'ready'
      this.stopWatching = this.ctx.onReady?.(this.id, doc)
      if (this.ctx.distribution !== undefined) {
        this.isJoined = true
        this.ctx.distribution.join(this.id, this)
      }
      if (this.ctx.replyGraceMs !== undefined && this.ctx.replyGraceMs > 0) {
        this.replyWatch = createReplyWatch(this.replyWatchTarget, this.ctx.replyGraceMs, this.ctx.now)
        // A reply left `streaming` by an agent that died while the session was unloaded.
        this.replyWatch.poke()
      }
      this.ctx.logger.debug(
        { session: this.id, seq: lastSeq, entries: stored.log.length, checkpoint: stored.checkpoint?.seq },
        'session loaded',
      )
    } catch (error) {
      this.failLoad(error)
      return
    }
    for (const connection of [...this.connections]) {
      if (connection.isClosed) continue
      this.open(connection)
      const queue = connection.loadingQueue
      connection.loadingQueue = []
      connection.loadingQueueBytes = 0
      for (const message of queue) this.receive(connection, message)
    }
    if (this.connections.size === 0) this.ctx.onIdle(this)
  }

  private open(connection: Connection): void {
    const doc = this.doc!
    const awareness = this.awareness!
    // Subscribe before the first step 2 is computed: nothing published after it can be missed.
    this.ctx.topic.subscribe(connection.peer)
    connection.isOpen = true
    connection.send({ type: 'sync-step1', stateVector: Y.encodeStateVector(doc) })
    if (awareness.states.size > 0) {
      connection.send({
        type: 'awareness',
        update: awarenessProtocol.encodeAwarenessUpdate(awareness, [...awareness.states.keys()]),
      })
    }
  }

  private queueWhileLoading(connection: Connection, message: Message): void {
    const { maxLoadingQueueMessages, maxLoadingQueueBytes } = this.ctx.limits
    // The bytes a queued message holds on to (its frame, with the classic codec): what it costs.
    const bytes = messageByteLength(message)
    if (
      (maxLoadingQueueMessages > 0 && connection.loadingQueue.length >= maxLoadingQueueMessages) ||
      connection.loadingQueueBytes + bytes > maxLoadingQueueBytes
    ) {
      this.reject(connection, new ColloquyError('loading-queue-full'))
      return
    }
    connection.loadingQueue.push(message)
    connection.loadingQueueBytes += bytes
  }

  private handle(connection: Connection, message: Message): void {
    const doc = this.doc!
    switch (message.type) {
      case 'sync-step1': {
        decodeStateVectorStrict(message.stateVector)
        connection.send({ type: 'sync-step2', update: Y.encodeStateAsUpdate(doc, message.stateVector) })
        return
      }
      case 'sync-step2':
        // Relayed as a sync-update: a new message, encoded once per protocol.
        this.applyUpdate(connection, message.update, undefined)
        return
      case 'sync-update':
        this.applyUpdate(connection, message.update, message)
        return
      case 'awareness':
        this.receiveAwareness(connection, message)
        return
      case 'query-awareness': {
        const awareness = this.awareness!
        connection.send({
          type: 'awareness',
          update: awarenessProtocol.encodeAwarenessUpdate(awareness, [...awareness.states.keys()]),
        })
        return
      }
      case 'auth':
        // Only servers send auth messages (permission denied); one from a client means nothing.
        return
      case 'sync-status':
        this.acknowledge(connection, message)
        return
      case 'stateless':
        this.relayStateless(connection, message)
        return
      case 'auth-token':
      case 'authenticated':
      case 'close':
        // Per-document auth and close are the business of the protocol's edge (hocuspocus-mux.ts).
        return
    }
  }

  /**
   * Relays a stateless message to the session's other peers whose protocol carries it (Hocuspocus'),
   * never stored. It is an ephemeral signal like presence: the awareness size and rate limits apply.
   */
  private relayStateless(connection: Connection, message: Message & { readonly type: 'stateless' }): void {
    const { maxAwarenessBytes } = this.ctx.limits
    const bytes = message.payload.length
    if (maxAwarenessBytes !== undefined && maxAwarenessBytes > 0 && bytes > maxAwarenessBytes) {
      throw new ColloquyError('awareness-limit', `stateless message of ${bytes} characters`)
    }
    if (connection.policy?.awareness.take(1, this.ctx.now()) === false) {
      throw new ColloquyError('awareness-limit', 'stateless message rate exceeded')
    }
    const size = this.ctx.topic.publish(message, connection.peer)
    this.ctx.observer?.statelessRelayed?.(size)
  }

  /**
   * Applies and relays the awareness entries a connection may change.
   *
   * @remarks
   * The sender's own ids and the ids it introduces are applied and relayed; echoes of states the
   * server already has (stock providers re-broadcast every state they receive) pass silently and
   * cost nothing; changes to an id another live connection owns are dropped, logged and counted.
   * Size, rate and the own-id count limit apply to what the connection really sends of its own.
   */
  private receiveAwareness(connection: Connection, message: Message & { readonly type: 'awareness' }): void {
    const { update } = message
    const { maxAwarenessBytes, maxAwarenessClientsPerConnection } = this.ctx.limits
    if (maxAwarenessBytes !== undefined && maxAwarenessBytes > 0 && update.length > maxAwarenessBytes) {
      throw new ColloquyError('awareness-limit', `awareness message of ${update.length} bytes`)
    }
    const awareness = this.awareness!
    const verdict = sortAwarenessEntries(decodeAwarenessUpdate(update), connection, this.awarenessView)
    if (verdict.accepted.length === 0 && verdict.forged.length === 0) return
    if (connection.policy?.awareness.take(1, this.ctx.now()) === false) {
      throw new ColloquyError('awareness-limit', 'awareness rate exceeded')
    }
    if (
      maxAwarenessClientsPerConnection !== undefined &&
      maxAwarenessClientsPerConnection > 0 &&
      connection.awarenessClientIds.size + verdict.introduced > maxAwarenessClientsPerConnection
    ) {
      const ids = connection.awarenessClientIds.size + verdict.introduced
      throw new ColloquyError('awareness-limit', `${ids} awareness client ids on one connection`)
    }
    if (verdict.forged.length > 0) this.refuseForgedAwareness(connection, verdict.forged)
    if (verdict.accepted.length === 0) return
    const accepted = verdict.isWhole ? update : encodeAwarenessUpdate(verdict.accepted)
    awarenessProtocol.applyAwarenessUpdate(awareness, accepted, connection)
    // A whole update is relayed as the message received (its frame, for classic peers).
    this.ctx.topic.publish(
      verdict.isWhole ? message : { type: 'awareness', update: accepted },
      connection.peer,
    )
    if (this.isJoined) this.ctx.distribution?.awarenessChanged(this.id, accepted)
  }

  private refuseForgedAwareness(connection: Connection, forged: readonly { clientId: number }[]): void {
    this.ctx.observer?.awarenessForged?.(forged.length)
    // Logged once per connection at warn (the rate limit bounds the rest): enough to find the peer.
    const log = connection.forgedAwarenessEntries === 0 ? this.ctx.logger.warn : this.ctx.logger.debug
    connection.forgedAwarenessEntries += forged.length
    log.call(
      this.ctx.logger,
      {
        session: this.id,
        peer: connection.peer.id,
        peerId: connection.policy?.peerId,
        remote: connection.peer.remote,
        clientIds: forged.slice(0, 8).map((entry) => entry.clientId),
        entries: forged.length,
      },
      'awareness entries dropped: client ids owned by another connection',
    )
  }

  private readonly awarenessView: AwarenessView<Connection> = {
    ownerOf: (clientId) => this.awarenessOwners.get(clientId),
    clockOf: (clientId) => this.awareness?.meta.get(clientId)?.clock ?? 0,
    hasState: (clientId) => this.awareness?.states.has(clientId) === true,
    // Anonymous peers all share one id: none of them may take another's presence over.
    isSamePeer: (owner, sender) =>
      owner.policy !== undefined &&
      owner.policy.peerId !== ANONYMOUS_PEER_ID &&
      owner.policy.peerId === sender.policy?.peerId,
  }

  /**
   * Applies a peer's update; stores and relays it only if it changed something.
   *
   * @param relay the received message when it is already a sync-update (relayed as is)
   */
  private applyUpdate(connection: Connection, update: Uint8Array, relay: Message | undefined): void {
    const policy = connection.policy
    if (policy !== undefined) {
      const now = this.ctx.now()
      if (!policy.updates.take(1, now) || !policy.updateBytes.take(update.length, now)) {
        throw new ColloquyError('rate-limited', 'update rate exceeded')
      }
    }
    validateUpdate(update)
    const doc = this.doc!
    // A read-only peer, or a session over its quota: new content is refused with the y-protocols
    // permission-denied message and never applied; the connection stays open for reading. (A step 2
    // without new structs is a reconnecting reader's and passes silently.)
    const quota = this.ctx.limits.sessionQuotaBytes
    const denial =
      policy?.canWrite === false
        ? new ColloquyError('read-only')
        : quota !== undefined && this.storedBytes + update.length > quota
          ? new ColloquyError('session-quota')
          : undefined
    if (denial !== undefined) {
      if (carriesNewStructs(doc, update)) {
        this.ctx.observer?.rejected?.(denial.code)
        connection.send({
          type: 'auth',
          authType: AuthMessageType.PermissionDenied,
          reason: denial.info.reason,
        })
      }
      return
    }
    // While writes are refused, an update bringing new content is turned away (its sender keeps it
    // and re-sends on reconnect). One that only repeats what the server has — the step 2 of a
    // reconnecting reader — still passes, so reads keep working.
    const refusal = this.ctx.writeRefusal()
    if (refusal !== undefined && carriesNewStructs(doc, update)) throw refusal
    let isChanged: boolean
    try {
      isChanged = integrate(doc, update, connection)
    } catch (error) {
      // The update decoded but Yjs failed while integrating it: the document may hold part of it.
      // Nothing of it is stored, so drop the document and let the session reload from disk.
      this.ctx.logger.error({ session: this.id, err: error }, 'update failed to integrate: resetting session')
      this.end(...closeArgs(new ColloquyError('internal', 'session reset after a failed update')))
      throw new ColloquyError('invalid-update', 'update failed to integrate', { cause: error })
    }
    // Yjs integrates only new content: a duplicate or retried update changes nothing and costs nothing.
    if (isChanged) this.record(update, connection, relay)
  }

  /**
   * Queues a change for the group commit (the log gives it its seq when it commits) and relays it
   * to every connection but its sender's, and to the other processes.
   *
   * @param relay the received message when it is already a sync-update (relayed as is)
   */
  private record(update: Uint8Array, sender: Connection | undefined, relay: Message | undefined): void {
    const time = this.ctx.now()
    let ordinal: number
    try {
      ordinal = this.ctx.writes.enqueue({ sessionId: this.id, time, update })
    } catch (error) {
      // The document holds a change that no seq will replay: it must not outlive this (as after a
      // failed integration, the session reloads from disk on the next connect).
      this.end(...closeArgs(toColloquyError(error)))
      throw error
    }
    this.queuedOrdinal = ordinal
    this.updatesQueued++
    this.lastTime = time
    this.storedBytes += update.length
    this.ctx.observer?.updateStored?.(update.length)
    const bytes = this.ctx.topic.publish(relay ?? { type: 'sync-update', update }, sender?.peer)
    this.ctx.observer?.updateRelayed?.(bytes, this.connections.size - (sender === undefined ? 0 : 1))
    if (this.isJoined) this.ctx.distribution?.updateQueued(this.id, update)
  }

  /**
   * Makes a change of the server's own in one transaction, stored and relayed like a peer's update
   * (the turn service shows turn states this way). False (and nothing changed) when the session is
   * not ready or writes are refused now.
   */
  changeAsServer(apply: (doc: Y.Doc, origin: unknown) => void): boolean {
    return this.changeDocument(apply)
  }

  /** See {@link changeAsServer}. */
  private changeDocument(apply: (doc: Y.Doc, origin: unknown) => void): boolean {
    const doc = this.doc
    if (this.state !== 'ready' || doc === undefined || this.ctx.writeRefusal() !== undefined) return false
    let update: Uint8Array | undefined
    const capture = (bytes: Uint8Array, origin: unknown): void => {
      if (origin === SERVER_ORIGIN) update = bytes
    }
    doc.on('update', capture)
    try {
      doc.transact(() => apply(doc, SERVER_ORIGIN), SERVER_ORIGIN)
    } finally {
      doc.off('update', capture)
    }
    if (update !== undefined) {
      try {
        this.record(update, undefined, undefined)
      } catch {
        // record() ended the session: a change no seq will replay must not outlive the document.
        return false
      }
    }
    return true
  }

  private readonly replyWatchTarget = {
    document: (): Y.Doc | undefined => (this.state === 'ready' ? this.doc : undefined),
    presence: (): Iterable<[number, unknown]> => this.awareness?.getStates() ?? [],
    change: (apply: (doc: Y.Doc, origin: unknown) => void): boolean => this.changeDocument(apply),
    marked: (count: number): void => {
      this.ctx.logger.info(
        { session: this.id, replies: count },
        'replies of a departed agent marked interrupted',
      )
    },
  }

  /** Presence lost someone: a reply of theirs may be left `streaming`. */
  private readonly watchPresence = (changes: { removed: number[] }): void => {
    if (changes.removed.length > 0) this.replyWatch?.poke()
  }

  private acknowledge(connection: Connection, message: Message): void {
    // Everything this connection sent before the sync-status was queued at or before the session's
    // last ordinal (or duplicated content already queued, or already in the log): once that ordinal
    // is durable, so is all of it.
    if (this.durableOrdinal >= this.queuedOrdinal) connection.send(message)
    else {
      this.ackWaiters.push({ connection, ordinal: this.queuedOrdinal, message, receivedAt: this.ctx.now() })
      this.ctx.writes.expedite()
    }
  }

  /**
   * A message type (or sync type) this server does not know: ignored, as y-protocols peers do, so
   * the protocol can grow; counted and logged at debug.
   */
  private ignore(connection: Connection, error: ColloquyError): void {
    this.ctx.observer?.unknownMessage?.()
    this.ctx.logger.debug(
      { session: this.id, peer: connection.peer.id, remote: connection.peer.remote, code: error.code },
      'message ignored: %s',
      error.message,
    )
  }

  private reject(connection: Connection, error: unknown): void {
    const err = toColloquyError(error)
    this.ctx.observer?.rejected?.(err.code)
    const log = err.code === 'internal' ? this.ctx.logger.error : this.ctx.logger.warn
    log.call(
      this.ctx.logger,
      { session: this.id, peer: connection.peer.id, remote: connection.peer.remote, code: err.code, err },
      'connection closed: %s',
      err.message,
    )
    connection.close(...closeArgs(err))
  }

  private readonly trackAwareness = (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (!(origin instanceof Connection)) return
    // Only what the gate accepted reaches here with a Connection origin: the ids it owns.
    for (const id of changes.added) this.claimAwareness(origin, id)
    for (const id of changes.updated) this.claimAwareness(origin, id)
    for (const id of changes.removed) {
      if (this.awarenessOwners.get(id) === origin) this.awarenessOwners.delete(id)
      origin.awarenessClientIds.delete(id)
    }
  }

  private claimAwareness(connection: Connection, clientId: number): void {
    const previous = this.awarenessOwners.get(clientId)
    if (previous === connection) return
    previous?.awarenessClientIds.delete(clientId)
    this.awarenessOwners.set(clientId, connection)
    connection.awarenessClientIds.add(clientId)
  }
}

/** The close code and reason a peer is told for `error`. */
export function closeArgs(error: ColloquyError): [number, string] {
  return [error.info.closeCode, error.info.reason]
}

/** True when `update` holds structs beyond the document's state vector (new or pending content). */
function carriesNewStructs(doc: Y.Doc, update: Uint8Array): boolean {
  const { to } = Y.parseUpdateMeta(update)
  for (const [client, clock] of to) {
    if (clock > Y.getState(doc.store, client)) return true
  }
  return false
}

/** True when a transaction integrated new structs or deleted something. */
function hasTransactionChanges(transaction: Y.Transaction): boolean {
  if (transaction.deleteSet.clients.size > 0) return true
  const { beforeState, afterState } = transaction
  if (afterState.size !== beforeState.size) return true
  for (const [client, clock] of afterState) {
    if (beforeState.get(client) !== clock) return true
  }
  return false
}

/**
 * Applies `update` to `doc` in one transaction with `origin`, and says whether it changed anything:
 * the document, or the structs and deletes Yjs holds pending until what they depend on arrives (a
 * duplicate or retried update changes neither). Throws what Yjs throws while integrating.
 */
function integrate(doc: Y.Doc, update: Uint8Array, origin: unknown): boolean {
  const pendingStructsBefore = doc.store.pendingStructs?.update
  const pendingDsBefore = doc.store.pendingDs
  let transaction: Y.Transaction | undefined
  doc.transact((tr) => {
    transaction = tr
    Y.applyUpdate(doc, update, origin)
  }, origin)
  return (
    (transaction !== undefined && hasTransactionChanges(transaction)) ||
    doc.store.pendingStructs?.update !== pendingStructsBefore ||
    doc.store.pendingDs !== pendingDsBefore
  )
}
