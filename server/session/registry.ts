// The sessions held in memory: loads a session on its first connection, routes durable commits to
// it, unloads it when idle (never with writes in flight) and ends them all at shutdown.

import type * as Y from 'yjs'
import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import type { Store } from '../persistence/store.js'
import type { DurableMark } from '../persistence/write-queue.js'
import type { ColdWork } from './cold-work.js'
import type { Connection, ConnectionPolicy } from './connection.js'
import type { Distribution } from './distribution.js'
import type { Peer, TopicFactory } from './peer.js'
import { Session, type SessionLimits, type SessionObserver, type WriteSink } from './session.js'

/** Options of {@link createSessionRegistry}. */
export interface SessionRegistryOptions {
  readonly store: Store
  readonly writes: WriteSink
  readonly topics: TopicFactory
  /** What other processes must see of each session (default: none, a single node). */
  readonly distribution?: Distribution
  readonly logger: Logger
  readonly limits: SessionLimits
  /** How long a session without connections stays loaded (ms). */
  readonly idleUnloadMs: number
  /** See SessionContext.replyGraceMs. */
  readonly replyGraceMs?: number
  readonly writeRefusal: () => ColloquyError | undefined
  readonly now?: () => number
  readonly observer?: SessionObserver
  /** Connections one session may have at once (default unlimited). */
  readonly maxConnectionsPerSession?: number
  /** Sessions held in memory; past it idle sessions are unloaded, least recently active first. */
  readonly maxSessionsInMemory?: number
  /** See SessionContext.onReady. */
  readonly onSessionReady?: (sessionId: string, doc: Y.Doc) => (() => void) | undefined
  /**
   * Where cold work waits behind the frames of loaded sessions: the end of each session's load and
   * each {@link SessionRegistry.changeAsServer}. Absent: both run as soon as they can.
   */
  readonly coldWork?: ColdWork
}

/** The loaded sessions. */
export interface SessionRegistry {
  /**
   * Attaches a peer to a session, loading the session if needed.
   *
   * @throws ColloquyError `too-many-connections` when the session is full, or when no idle session
   * can be unloaded to make room for a new one.
   */
  connect(
    sessionId: string,
    peer: Peer,
    policy?: ConnectionPolicy,
  ): { session: Session; connection: Connection }
  /** Why a new connection to `sessionId` would be refused now, if it would (checked before the upgrade). */
  admission(sessionId: string): ColloquyError | undefined
  /**
   * Refuses new connections to `sessionId` (while it is being deleted) until the returned function
   * is called. Blocks nest: the session opens again once every block is lifted.
   */
  block(sessionId: string): () => void
  get(sessionId: string): Session | undefined
  /**
   * Makes a change of the server's own in a session's document, loading the session first if it is
   * not in memory (it unloads again when idle). False when the session is being deleted, is not
   * stored (never written, or deleted), cannot be loaded or refuses writes now.
   */
  changeAsServer(sessionId: string, apply: (doc: Y.Doc, origin: unknown) => void): Promise<boolean>
  /** Every loaded (or loading) session. */
  sessions(): IterableIterator<Session>
  readonly size: number
  /** Routes a group commit's result (session id → where its durable entries reached) to the sessions. */
  handleCommit(durable: ReadonlyMap<string, DurableMark>): void
  /** Closes every connection of every session with `code` and ends all sessions. */
  endAll(code: number, reason: string): void
}

/** Creates the registry of loaded sessions. */
export function createSessionRegistry(options: SessionRegistryOptions): SessionRegistry {
  const sessions = new Map<string, Session>()
  const idleTimers = new Map<Session, NodeJS.Timeout>()
  const now = options.now ?? Date.now

  const clearIdleTimer = (session: Session): void => {
    const timer = idleTimers.get(session)
    if (timer !== undefined) {
      clearTimeout(timer)
      idleTimers.delete(session)
    }
  }

  const onIdle = (session: Session): void => {
    clearIdleTimer(session)
    const timer = setTimeout(() => {
      idleTimers.delete(session)
      // Unloads now if nothing is in flight, else as soon as the last write is durable.
      if (session.connections.size === 0) session.requestUnload()
    }, options.idleUnloadMs)
    // An idle timer alone must not keep the process alive.
    timer.unref()
    idleTimers.set(session, timer)
  }

  const onEnded = (session: Session): void => {
    clearIdleTimer(session)
    if (sessions.get(session.id) === session) sessions.delete(session.id)
    options.store.release(session.id)
  }

  const create = (sessionId: string): Session => {
    const session = new Session(sessionId, {
      store: options.store,
      writes: options.writes,
      topic: options.topics(sessionId),
      ...(options.distribution === undefined ? {} : { distribution: options.distribution }),
      logger: options.logger,
      limits: options.limits,
      ...(options.observer === undefined ? {} : { observer: options.observer }),
      writeRefusal: options.writeRefusal,
      onIdle,
      onEnded,
      now,
      ...(options.replyGraceMs === undefined ? {} : { replyGraceMs: options.replyGraceMs }),
      ...(options.onSessionReady === undefined ? {} : { onReady: options.onSessionReady }),
      ...(options.coldWork === undefined ? {} : { coldWork: options.coldWork }),
    })
    sessions.set(sessionId, session)
    return session
  }

  const maxConnections = options.maxConnectionsPerSession ?? 0
  const maxSessions = options.maxSessionsInMemory ?? 0

  /**
   * At the cap, how many places one eviction frees: a hundredth of the cap. Finding the least
   * recently active sessions means sorting the idle ones among every loaded session (3 ms for
   * 10,000, the default cap, measured here), which a burst of new sessions at the cap would
   * otherwise pay on every open; a batch pays it once per hundredth of the cap.
   */
  const evictionBatch = Math.max(1, Math.floor(maxSessions / 100))

  /**
   * Unloads idle, flushed sessions, least recently active first, until there is room for one more
   * and, at the cap, for a batch more (idle sessions unloaded a little before their idle timer).
   */
  const makeRoom = (): boolean => {
    if (maxSessions <= 0 || sessions.size < maxSessions) return true
    const idle: Session[] = []
    for (const session of sessions.values()) if (session.isIdle) idle.push(session)
    if (idle.length === 0) return false
    idle.sort((a, b) => a.lastActiveAt - b.lastActiveAt)
    const target = maxSessions - evictionBatch
    for (const session of idle) {
      if (sessions.size <= target) break
      session.requestUnload()
    }
    return sessions.size < maxSessions
  }

  /** Sessions refused to new connections, with how many blocks each holds. */
  const blocked = new Map<string, number>()

  const admission = (sessionId: string): ColloquyError | undefined => {
    if (blocked.has(sessionId)) return new ColloquyError('session-load-failed', 'session is being deleted')
    const session = sessions.get(sessionId)
    if (session !== undefined) {
      return maxConnections > 0 && session.connections.size >= maxConnections
        ? new ColloquyError('too-many-connections', 'too many connections to this session')
        : undefined
    }
    return makeRoom() ? undefined : new ColloquyError('too-many-connections', 'too many sessions in memory')
  }

  return {
    connect(sessionId, peer, policy) {
      const refusal = admission(sessionId)
      if (refusal !== undefined) throw refusal
      const session = sessions.get(sessionId) ?? create(sessionId)
      clearIdleTimer(session)
      return { session, connection: session.attach(peer, policy) }
    },
    admission,
    block(sessionId) {
      blocked.set(sessionId, (blocked.get(sessionId) ?? 0) + 1)
      let isLifted = false
      return () => {
        if (isLifted) return
        isLifted = true
        const count = (blocked.get(sessionId) ?? 1) - 1
        if (count > 0) blocked.set(sessionId, count)
        else blocked.delete(sessionId)
      }
    },
    get: (sessionId) => sessions.get(sessionId),
    async changeAsServer(sessionId, apply) {
      if (blocked.has(sessionId)) return false
      let session = sessions.get(sessionId)
      if (session === undefined) {
        // Never bring back (or invent) a session that is not stored: a deleted one stays deleted.
        if ((await options.store.getMeta(sessionId)) === undefined) return false
        session = sessions.get(sessionId)
      }
      if (session === undefined) {
        if (blocked.has(sessionId) || !makeRoom()) return false
        session = create(sessionId)
      }
      await session.whenLoaded
      const coldWork = options.coldWork
      if (coldWork === undefined) return session.changeAsServer(apply)
      // The server's own bookkeeping (turn entries, queue positions) waits behind peers' frames,
      // the session held loaded meanwhile: unloaded by its idle timer or to make room, it would
      // refuse the change when its turn comes.
      const target = session
      const release = target.holdLoaded()
      return new Promise<boolean>((resolve, reject) =>
        coldWork.defer(() => {
          try {
            resolve(target.changeAsServer(apply))
          } catch (error) {
            reject(error)
          } finally {
            release()
          }
        }),
      )
    },
    sessions: () => sessions.values(),
    get size() {
      return sessions.size
    },
    handleCommit(durable) {
      for (const [sessionId, mark] of durable) sessions.get(sessionId)?.markDurable(mark)
    },
    endAll(code, reason) {
      for (const session of [...sessions.values()]) session.end(code, reason)
    },
  }
}
