// Wiring: store → write queue → session registry → uWS transport, plus health routes and an
// orderly shutdown. Reads no environment: everything comes in through options.

import os from 'node:os'
import path from 'node:path'
import { ColloquyError } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol/close-codes.js'
import { AuthScope } from '../shared/protocol/message.js'
import { turnIdOf } from '../shared/turns/turn.js'
import { type AccessClaims, anonymousClaims, createTokenVerifier, hasRole, isInScope } from './auth/tokens.js'
import { turnScopeOf } from './auth/turn-scope.js'
import { describeAckDurability, openClusterStore } from './cluster/cluster-store.js'
import { connectNatsDistribution, type NatsDistributionObserver } from './cluster/nats-distribution.js'
import { createRelayMetrics } from './cluster/relay-metrics.js'
import { openClusterTurns } from './cluster/turn-cluster.js'
import { createInlineMerger, type Merger } from './compaction/merge.js'
import { type CompactionScheduler, createCompactionScheduler } from './compaction/scheduler.js'
import { createWorkerMerger } from './compaction/worker-merger.js'
import type { ServerConfig } from './config.js'
import { createClientAddressOf } from './http/client-address.js'
import { historyRoutes } from './http/history-routes.js'
import { createMetricsAccess, type MetricsAccess } from './http/metrics-access.js'
import { createOriginPolicy } from './http/origin-policy.js'
import { type Authorize, createRouter, type HttpRequest, type Route } from './http/router.js'
import { webRoutes } from './http/static-routes.js'
import { turnRoutes } from './http/turn-routes.js'
import { createAttemptLimiter, createTokenBucket } from './limits/token-bucket.js'
import type { Logger } from './observability/log.js'
import { createSilentLogger } from './observability/log.js'
import { createMetrics, type Metrics } from './observability/metrics.js'
import { openLeveldbStore } from './persistence/leveldb-store.js'
import { createMemoryStore } from './persistence/memory-store.js'
import { hasSparseSeqs, type Store } from './persistence/store.js'
import { createWriteQueue, type WriteQueue } from './persistence/write-queue.js'
import { createColdWork } from './session/cold-work.js'
import { Connection } from './session/connection.js'
import { createLocalDistribution, type Distribution } from './session/distribution.js'
import type { Peer } from './session/peer.js'
import { createSessionRegistry, type SessionRegistry } from './session/registry.js'
import { createSessionRetirer } from './session/retire.js'
import { AUTH_DEADLINE_MS, createHocuspocusMux } from './transport/hocuspocus-mux.js'
import { loadNativeUws } from './transport/uws.js'
import { type Admission, type ConnectionHandler, createUwsTransport } from './transport/uws-transport.js'
import { type AutoTurns, createAutoTurns, parseAutoTurnRules } from './turns/auto-turns.js'
import { parsePoolSpecs } from './turns/pool-spec.js'
import { createTurnDocuments } from './turns/turn-documents.js'
import { createTurnMetrics } from './turns/turn-metrics.js'
import { openTurnService, type TurnApi } from './turns/turn-service.js'
import { createTurnStore } from './turns/turn-store.js'

/** How long shutdown waits after closing sockets before the process may exit (ms). */
const SHUTDOWN_LINGER_MS = 200

/** Options of {@link startSyncServer}. */
export interface SyncServerOptions {
  readonly config: ServerConfig
  readonly logger?: Logger
  /** Use this store instead of the one the config names (tests inject fault-injecting stores). */
  readonly store?: Store
  /** Decides who may use the HTTP history API (default: loopback only; the seam for auth). */
  readonly authorize?: Authorize
  /** Folds updates for compaction and history reads (default: a worker thread). */
  readonly merger?: Merger
  /** What other processes must see of each session (default: none, a single node). */
  readonly distribution?: Distribution
}

/** A running server. */
export interface SyncServer {
  readonly host: string
  readonly port: number
  readonly store: Store
  readonly writeQueue: WriteQueue
  readonly registry: SessionRegistry
  /** The background compactor (always present; its timer runs only with `config.compaction`). */
  readonly compaction: CompactionScheduler
  readonly metrics: Metrics
  /**
   * Turns of the agent pools (docs/agents.md); no pool configured: every pool is unknown. In a
   * cluster, calls go to the node scheduling the turn's pool.
   */
  readonly turns: TurnApi
  /** True while the server accepts connections and its store is writing. */
  readonly isReady: boolean
  /** Stops accepting, flushes every queued update to disk, closes sockets with 1001, closes the store. */
  close(): Promise<void>
}

/** Opens the store, starts listening, and resolves once the server accepts connections. */
export async function startSyncServer(options: SyncServerOptions): Promise<SyncServer> {
  const { config } = options
  const logger = options.logger ?? createSilentLogger()
  const uws = loadNativeUws()
  const isClustered = config.nats !== undefined && config.nats.length > 0
  const nodeId = config.nodeId ?? `${os.hostname()}:${config.port}`
  // A cluster node persists in JetStream (with its outbox in dataDir); a single node in LevelDB.
  const cluster =
    options.store === undefined && isClustered
      ? await openClusterStore({
          urls: config.nats ?? [],
          nodeId,
          dataDir: path.resolve(config.dataDir),
          replicas: config.natsReplicas,
          outboxRetainMs: config.outboxRetainMs,
          logger,
        })
      : undefined
  const store =
    options.store ??
    cluster?.store ??
    (config.store === 'memory'
      ? createMemoryStore()
      : await openLeveldbStore({ location: path.resolve(config.dataDir), sync: config.fsync }))
  const ackDurability = describeAckDurability(config)

  // A cluster node relays its sessions' traffic to the other nodes over core NATS (docs/cluster.md,
  // "Relay and presence between nodes"); its metrics register once the registry exists below.
  let relayMetrics: NatsDistributionObserver | undefined
  const natsRelay =
    options.distribution === undefined && isClustered
      ? await connectNatsDistribution({
          servers: config.nats ?? [],
          nodeId,
          // The JetStream store itself (not behind the outbox): it has the cheap lastLogSeq.
          log: cluster?.log ?? store,
          logger,
          observer: {
            relayed: (count) => relayMetrics?.relayed?.(count),
            sent: (kind, updates) => relayMetrics?.sent?.(kind, updates),
            repaired: (entries, reason) => relayMetrics?.repaired?.(entries, reason),
            nodeLost: (node) => relayMetrics?.nodeLost?.(node),
          },
        })
      : undefined
  const distribution = options.distribution ?? natsRelay ?? createLocalDistribution()
  let isClosing = false
  // One worker thread folds updates for compaction and for history reads, off the event loop.
  const merger = options.merger ?? (config.store === 'memory' ? createInlineMerger() : createWorkerMerger())
  const compaction = createCompactionScheduler({
    store,
    merger,
    policy: {
      minUpdates: config.compactMinUpdates,
      maxUpdates: config.compactMaxUpdates,
      minIntervalMs: config.compactMinIntervalMs,
    },
    retention: {
      keepLogMs: config.retainLogMs,
      keepCheckpointsMs: config.retainCheckpointsMs,
      checkpointSpacingMs: config.checkpointSpacingMs,
    },
    intervalMs: config.compaction ? config.compactIntervalMs : 0,
    logger,
    // In a cluster every node may compact: one at a time per session, by KV lease.
    ...(cluster === undefined ? {} : { leases: cluster.leases }),
    // A loaded session is checkpointed from its document (no log replay); see Session.snapshot.
    // Only over a dense log written by this process alone: in a cluster other nodes' updates
    // interleave in the log, and a checkpoint must be a fold of the log itself.
    live: (sessionId, afterSeq) =>
      config.compactFromMemory && !hasSparseSeqs(store)
        ? registry?.get(sessionId)?.snapshot(afterSeq)
        : undefined,
    // Runs happen only after startup (timer, HTTP, close), when `metrics` below is initialised.
    onRun: (run) => {
      metrics.compactionRuns.inc({ result: run.result })
      if (run.result !== 'skipped') metrics.compactionSeconds.observe(run.durationMs / 1000)
    },
  })
  // The registry is created after the queue (it needs the queue), but commits are routed to it.
  let registry: SessionRegistry | undefined
  let transport: Awaited<ReturnType<typeof createUwsTransport>> | undefined
  const metrics = createMetrics({
    connections: () => transport?.connectionCount ?? 0,
    sessionsLoaded: () => registry?.size ?? 0,
    queuedWriteBytes: () => writeQueue.queuedBytes,
    storageFailing: () => writeQueue.isFailing,
    ackDurability,
  })
  if (natsRelay !== undefined) {
    relayMetrics = createRelayMetrics(metrics.registry, () => natsRelay.liveNodes().length)
  }
  const writeQueue = createWriteQueue({
    store: metrics.instrumentStore(store),
    flushDelayMs: config.commitDelayMs,
    lazyFlushDelayMs: config.lazyCommitDelayMs,
    onCommit: (durable, entries, seqs) => {
      // Other processes first: what is acked below is then already on its way to them.
      distribution.updatesStored(entries, seqs)
      registry?.handleCommit(durable)
      compaction.noteCommit(durable, entries)
    },
    onError: (error, attempt) => {
      logger.error(
        { err: error, attempt, queuedBytes: writeQueue.queuedBytes },
        'group commit failed: retrying',
      )
    },
    onRecover: () => logger.warn('group commit recovered'),
    // The store refused this session's updates for good (an entry it deems invalid): only this session
    // stops. Its document holds changes no seq will replay, so it ends (acks never sent, writers
    // closed with a retryable code) and reloads from disk on the next connect, where the writers'
    // state vectors bring their unstored edits back.
    onSessionFailed: (sessionId, error) => {
      logger.error(
        { session: sessionId, err: error },
        'group commit refused this session for good: its pending updates dropped, its connections closed',
      )
      const failure = new ColloquyError('internal', 'session writes refused by storage: reloading from disk')
      registry?.get(sessionId)?.end(failure.info.closeCode, failure.info.reason)
    },
  })

  const verifier =
    config.secret === undefined
      ? undefined
      : createTokenVerifier(config.secret, Date.now, {
          maxLifetimeMs: (config.maxTokenLifetimeS ?? 0) * 1000,
        })
  const originPolicy = createOriginPolicy({
    listenHost: config.host,
    isAnonymous: verifier === undefined,
    ...(config.allowedOrigins === undefined ? {} : { allowedOrigins: config.allowedOrigins }),
    ...(config.allowedHosts === undefined ? {} : { allowedHosts: config.allowedHosts }),
  })
  const clientAddressOf = createClientAddressOf(config.trustProxy ?? [])
  if (verifier === undefined) {
    logger.warn(
      { host: config.host },
      'no secret configured: anonymous access (the server listens on loopback only)',
    )
  }
  const attempts = createAttemptLimiter(config.maxConnectionAttemptsPerIp, config.connectionAttemptWindowMs)
  const authorize: Authorize | undefined =
    options.authorize ?? (verifier === undefined ? undefined : tokenAuthorize(verifier.verify))

  const writeRefusal = (): ColloquyError | undefined => {
    if (isClosing) return new ColloquyError('shutting-down')
    if (writeQueue.isFailing) return new ColloquyError('storage-unavailable')
    if (writeQueue.queuedBytes > config.maxQueuedWriteBytes) {
      return new ColloquyError('overloaded', 'write backlog over its bound')
    }
    return undefined
  }

  // Set once the turn service is open (it needs the registry); sessions load only after that.
  let autoTurns: AutoTurns | undefined
  // Cold opens and the server's own document changes wait behind loaded sessions' frames (issue 17).
  const coldWork = createColdWork({
    budgetMs: config.coldWorkBudgetMs,
    onError: (error) => logger.error({ err: error }, 'deferred session work failed'),
  })
  registry = createSessionRegistry({
    store,
    writes: writeQueue,
    distribution,
    topics: (sessionId) => {
      if (transport === undefined) throw new Error('transport not started')
      return transport.topic(sessionId)
    },
    logger,
    limits: {
      maxLoadingQueueMessages: config.maxLoadingQueueMessages,
      maxLoadingQueueBytes: config.maxLoadingQueueBytes,
      maxAwarenessBytes: config.maxAwarenessBytes,
      maxAwarenessClientsPerConnection: config.maxAwarenessClientsPerConnection,
      ...(config.sessionQuotaBytes > 0 ? { sessionQuotaBytes: config.sessionQuotaBytes } : {}),
    },
    idleUnloadMs: config.idleUnloadMs,
    replyGraceMs: config.replyGraceMs,
    writeRefusal,
    observer: metrics.sessionObserver,
    maxConnectionsPerSession: config.maxConnectionsPerSession,
    maxSessionsInMemory: config.maxSessionsInMemory,
    onSessionReady: (sessionId, doc) => autoTurns?.watch(sessionId, doc),
    coldWork,
  })
  const sessions = registry
  // Another node's delete ends the session here too (docs/history.md, "Deleting in a cluster").
  distribution.bindHost(createSessionRetirer({ sessions, writes: writeQueue, scheduler: compaction, store }))

  let turnSource: TurnApi | undefined
  /** Connections per session, kept by `accept` and `closed`: the turn service's watched sessions. */
  const openSessions = new Map<string, number>()
  const turnDocuments = createTurnDocuments({
    changer: {
      change: (sessionId, apply) => sessions.changeAsServer(sessionId, apply),
      // Queue positions go only into sessions open here; a cluster node cannot see the others' devices.
      ...(cluster === undefined
        ? {
            isWatched: (sessionId: string) => (sessions.get(sessionId)?.connections.size ?? 0) > 0,
            watchedSessions: () => openSessions.keys(),
          }
        : {}),
    },
    logger,
  })
  const turnServiceOptions = {
    leaseMs: config.turnLeaseMs,
    maxAttempts: config.turnMaxAttempts,
    starvationMs: config.turnStarvationMs,
    starvationShare: config.turnStarvationShare,
    retentionMs: config.turnRetentionMs,
    positionRefreshMs: config.turnPositionRefreshMs,
    documents: turnDocuments,
    observer: createTurnMetrics(metrics.registry, () => turnSource),
  }
  const turnPools = parsePoolSpecs(config.turnPools)
  let turns: TurnApi
  if (cluster !== undefined) {
    // A cluster node: each pool is scheduled by one node at a time, over the JetStream turn stream
    // (docs/agents.md "Turns in a cluster"); every node answers the API and forwards.
    turns = await openClusterTurns({
      nc: cluster.resources.nc,
      js: cluster.resources.js,
      jsm: cluster.resources.jsm,
      nodeId,
      replicas: config.natsReplicas,
      pools: turnPools,
      service: turnServiceOptions,
      logger,
    })
  } else {
    // Turns live in the same database as the sessions (kind byte T); a store without records (a
    // test's wrapper) keeps them in memory.
    const turnRecords = store.records ?? createMemoryStore().records
    if (store.records === undefined)
      logger.warn('this store keeps no records: turns will not survive a restart')
    turns = await openTurnService({
      ...turnServiceOptions,
      pools: turnPools,
      store: createTurnStore({ records: turnRecords!, logger }),
      logger,
    })
  }
  turnSource = turns
  // DELETE /sessions/:id ends the session's turns, before the stored session is removed: ended
  // after it (regression), a claim made while the removal ran was handed one. Again after it, for a
  // turn created meanwhile. A prototype-linked view of the store, so that every other method (and
  // `this` in a class-based store) is the store's.
  const historyStore: Store = Object.assign(Object.create(store) as Store, {
    async deleteSession(sessionId: string): Promise<void> {
      await turns.endSession(sessionId)
      await store.deleteSession(sessionId)
      await turns.endSession(sessionId)
    },
  })
  const autoRules = parseAutoTurnRules(config.turnAuto)
  if (autoRules.length > 0) {
    autoTurns = createAutoTurns({
      rules: autoRules,
      // Only once the message is stored. Regression (turns-cluster.test flake): the turn was created
      // as the message reached this node, before its write committed; the scheduling node, another,
      // found the session not stored yet, refused to write the turn's entry into it, and dropped it
      // after 5 tries (~0.1-0.3 s): the devices never saw the turn queued. A worker on a third node
      // could likewise load the session without the message and fail the turn (`message-missing`).
      // The message's update is queued right after the observer that calls this (same stack).
      create: async (request) => {
        await Promise.resolve()
        await sessions.get(request.sessionId)?.whenStored()
        return turns.create(request)
      },
      // The writer's token decides the tenant and class; a message from another node is that node's.
      scopeOf: (origin) =>
        origin instanceof Connection
          ? (origin.policy?.turnScope ?? turnScopeOf(anonymousClaims()))
          : undefined,
      // A full queue: the device sees the refusal where it would see the turn.
      refused: (request, error) =>
        turnDocuments.write(request.sessionId, request.messageId, {
          turnId: turnIdOf(request.sessionId, request.messageId, request.pool),
          pool: request.pool,
          state: 'failed',
          attempts: 0,
          reason: error.code,
          reasonText: error.message,
          updatedAt: Date.now(),
        }),
      logger,
    })
  }

  const isReady = (): boolean => !isClosing && !writeQueue.isFailing

  const refuse = (error: ColloquyError): { readonly error: ColloquyError } => {
    metrics.upgradesRefused.inc({ reason: error.code })
    return { error }
  }
  /** The checks every socket passes at its upgrade, whatever its protocol: origin, shutdown, attempts. */
  const admitSocket = (
    request: {
      readonly remote: string
      readonly host?: string | undefined
      readonly origin?: string | undefined
    },
    sessionId: string | undefined,
  ): ColloquyError | undefined => {
    const { remote, host, origin } = request
    const originRefusal = originPolicy.refusal({ host, origin })
    if (originRefusal !== undefined) {
      logger.warn({ remote, session: sessionId, host, origin, reason: originRefusal }, 'upgrade refused')
      return new ColloquyError('forbidden', originRefusal)
    }
    if (isClosing) return new ColloquyError('shutting-down')
    if (!attempts.attempt(remote, Date.now())) {
      return new ColloquyError('too-many-connections', 'too many connection attempts from this address')
    }
    return undefined
  }
  /** Verified `claims` on one session: admitted when they cover it and the session has room. */
  const admitClaims = (sessionId: string, claims: AccessClaims): Admission => {
    if (verifier !== undefined && !isInScope(claims, sessionId)) {
      return { error: new ColloquyError('forbidden', 'token not valid for this session') }
    }
    const full = sessions.admission(sessionId)
    return full === undefined ? { admitted: claims } : { error: full }
  }
  /**
   * A token's claims on one session (a classic socket's, or one document of a Hocuspocus socket),
   * decided synchronously: uWS then upgrades the socket inside its upgrade callback. Regression
   * (issue 17, token cache): an upgrade answered after its callback (`res.cork(() => res.upgrade())`
   * once WebCrypto had checked the token) was sometimes ended by uWS inside `res.upgrade`, 1006, a
   * uWS 20.30 bug (uWebSockets PR #1929) that the cache's mix of fast and slow answers made frequent.
   */
  const authorizeSession = (sessionId: string, token: string | undefined): Admission => {
    if (verifier === undefined) return admitClaims(sessionId, anonymousClaims())
    try {
      return admitClaims(sessionId, verifier.verifyNow(token))
    } catch (error) {
      return { error: error instanceof ColloquyError ? error : new ColloquyError('unauthorized') }
    }
  }
  /** Attaches an admitted peer (a classic socket, or one document of a Hocuspocus socket) to its session. */
  const accept = (sessionId: string, peer: Peer, admitted: unknown): ConnectionHandler => {
    const claims = admitted as AccessClaims
    const now = Date.now()
    const policy = {
      canWrite: hasRole(claims.role, 'write'),
      peerId: claims.peerId,
      updates: createTokenBucket(config.updatesPerSecond, config.updatesBurst, now),
      updateBytes: createTokenBucket(config.updateBytesPerSecond, config.updateBytesBurst, now),
      awareness: createTokenBucket(config.awarenessPerSecond, config.awarenessBurst, now),
      turnScope: turnScopeOf(claims),
    }
    const { session, connection } = sessions.connect(sessionId, peer, policy)
    openSessions.set(sessionId, (openSessions.get(sessionId) ?? 0) + 1)
    metrics.connectionsOpened.inc()
    logger.debug(
      { session: sessionId, peer: peer.id, peerId: claims.peerId, role: claims.role, remote: peer.remote },
      'connection opened',
    )
    // A token that expires mid-session ends the connection with a code the client answers by
    // refreshing its token and reconnecting.
    let expiry: NodeJS.Timeout | undefined
    if (Number.isFinite(claims.expiresAt)) {
      // The error (and its stack trace) only when it fires: every connection of a burst paid it.
      expiry = setTimeout(
        () => {
          const expired = new ColloquyError('token-expired')
          connection.close(expired.info.closeCode, expired.info.reason)
        },
        Math.min(Math.max(0, claims.expiresAt - now), 2 ** 31 - 1),
      )
    }
    return {
      receive: (message) => session.receive(connection, message),
      refuse: (error) => session.refuse(connection, error),
      closed: (code) => {
        clearTimeout(expiry)
        const open = (openSessions.get(sessionId) ?? 1) - 1
        if (open > 0) openSessions.set(sessionId, open)
        else openSessions.delete(sessionId)
        metrics.connectionsClosed.inc({ code: String(code) })
        logger.debug({ session: sessionId, peer: peer.id, code }, 'connection closed')
        session.detach(connection)
      },
    }
  }

  transport = await createUwsTransport({
    uws,
    host: config.host,
    port: config.port,
    maxMessageBytes: config.maxMessageBytes,
    maxBackpressureBytes: config.maxBackpressureBytes,
    logger,
    clientAddressOf,
    admit({ sessionId, query, remote, host, origin }) {
      const refusal = admitSocket({ remote, host, origin }, sessionId)
      if (refusal !== undefined) return refuse(refusal)
      const admission = authorizeSession(sessionId, query.get('token') ?? undefined)
      return 'error' in admission ? refuse(admission.error) : admission
    },
    hocuspocus: {
      // The socket passes the same origin, shutdown and attempt checks; tokens come per document.
      admit({ remote, host, origin }) {
        const refusal = admitSocket({ remote, host, origin }, undefined)
        return refusal === undefined ? { admitted: undefined } : refuse(refusal)
      },
      open: (socket) =>
        createHocuspocusMux(socket, {
          logger,
          authenticate: (sessionId, token) =>
            isClosing
              ? { error: new ColloquyError('shutting-down') }
              : authorizeSession(sessionId, token.length > 0 ? token : undefined),
          scopeOf: (admitted) =>
            hasRole((admitted as AccessClaims).role, 'write') ? AuthScope.ReadWrite : AuthScope.ReadOnly,
          accept,
          maxDocuments: config.maxDocumentsPerSocket,
          opensPerSecond: config.documentOpensPerSecond,
          maxQueuedMessages: config.maxLoadingQueueMessages,
          maxQueuedBytes: config.maxLoadingQueueBytes,
          authDeadlineMs: AUTH_DEADLINE_MS,
          observer: {
            documentRefused: (code) => metrics.upgradesRefused.inc({ reason: code }),
            unknownMessage: () => metrics.sessionObserver.unknownMessage?.(),
          },
        }),
    },
    accept,
    http: createRouter({
      routes: [
        ...healthRoutes(isReady, () => isClosing, { ack: ackDurability, node: nodeId }),
        metricsRoute(metrics, createMetricsAccess(config.metricsToken, verifier?.verify)),
        ...historyRoutes({
          store: historyStore,
          merger,
          scheduler: compaction,
          isLoaded: (sessionId) => sessions.get(sessionId) !== undefined,
          sessions,
          writes: writeQueue,
          distribution,
        }),
        ...turnRoutes(turns, logger),
        ...webRoutes({ dir: config.webDir }),
      ],
      ...(authorize === undefined ? {} : { authorize }),
      logger,
      maxBodyBytes: config.maxHttpBodyBytes,
      maxConcurrentUploads: config.maxConcurrentUploads ?? 0,
      originPolicy,
      clientAddressOf,
    }),
  })
  const listening = transport

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      isClosing = true
      listening.stopListening()
      // Stop compacting (a running fold is abandoned, nothing of it written) …
      await compaction.close()
      // … end the turns' long polls and timers (every turn change durable) …
      await turns.close()
      turnDocuments.close()
      // … flush, so every update received so far is durable and its ack delivered …
      await writeQueue.close()
      // … then close the sockets: clients reconnect elsewhere or later and sync by state vector.
      const hadConnections = listening.connectionCount > 0
      sessions.endAll(CloseCode.GoingAway, 'server shutting down')
      // Linger briefly so the close frames leave and the peers' close replies are read: a process
      // that exits with unread input makes the kernel send RST, and peers would see 1006, not 1001.
      if (hadConnections) await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_LINGER_MS))
      await distribution.close()
      await store.close()
      logger.info('server stopped')
    })()
    return closing
  }

  logger.info(
    {
      host: config.host,
      port: listening.port,
      store: isClustered ? 'jetstream' : config.store,
      dataDir: config.dataDir,
      fsync: config.fsync,
      node: nodeId,
      ack: ackDurability,
    },
    'colloquy listening',
  )

  return {
    host: config.host,
    port: listening.port,
    store,
    writeQueue,
    registry: sessions,
    compaction,
    metrics,
    turns,
    get isReady() {
      return isReady()
    },
    close,
  }
}

/** `GET /metrics`: Prometheus text format, behind {@link metricsAccess}. */
function metricsRoute(metrics: Metrics, access: MetricsAccess): Route {
  return {
    method: 'GET',
    pattern: '/metrics',
    access: 'none',
    handler: async (request) => {
      const refusal = await access(request)
      if (refusal !== undefined) throw refusal
      return {
        status: 200,
        headers: { 'content-type': metrics.registry.contentType },
        body: await metrics.registry.metrics(),
      }
    },
  }
}

/**
 * HTTP access with tokens: `Authorization: Bearer <token>` (or `?token=`), a role of at least the
 * route's access (`read` or `admin`), and a scope covering every session the request names (path,
 * query: a fork's target). Outside the scope the answer is 403 whether the session exists or not.
 * The grant returned lets listings keep only the sessions in scope.
 */
function tokenAuthorize(verify: (token: string | undefined) => Promise<AccessClaims>): Authorize {
  return async (request: HttpRequest, access, sessions) => {
    if (access === 'none') return undefined
    const header = request.headers.authorization
    const token = header?.startsWith('Bearer ') ? header.slice(7) : (request.query.get('token') ?? undefined)
    let claims: AccessClaims
    try {
      claims = await verify(token)
    } catch (error) {
      return error instanceof ColloquyError ? error : new ColloquyError('unauthorized')
    }
    if (!hasRole(claims.role, access)) return new ColloquyError('forbidden', `this needs the ${access} role`)
    for (const sessionId of sessions) {
      if (!isInScope(claims, sessionId))
        return new ColloquyError('forbidden', 'token not valid for this session')
    }
    return {
      inScope: (sessionId) => isInScope(claims, sessionId),
      caller: {
        peerId: claims.peerId,
        kind: claims.kind,
        role: claims.role,
        ...(claims.sessionPrefix === undefined ? {} : { sessionPrefix: claims.sessionPrefix }),
        ...(claims.tenant === undefined ? {} : { tenant: claims.tenant }),
        ...(claims.bestPriority === undefined ? {} : { bestPriority: claims.bestPriority }),
      },
    }
  }
}

/**
 * `/healthz` (the process answers) and `/readyz` (it accepts connections and its store writes;
 * its body also says what an ack means here and which node this is).
 */
function healthRoutes(
  isReady: () => boolean,
  isClosing: () => boolean,
  about: { readonly ack: string; readonly node: string },
): Route[] {
  const json = { 'content-type': 'application/json' }
  return [
    {
      method: 'GET',
      pattern: '/healthz',
      access: 'none',
      handler: () => ({ status: 200, headers: json, body: JSON.stringify({ status: 'ok' }) }),
    },
    {
      method: 'GET',
      pattern: '/readyz',
      access: 'none',
      handler: () =>
        isReady()
          ? { status: 200, headers: json, body: JSON.stringify({ status: 'ready', ...about }) }
          : {
              status: 503,
              headers: json,
              body: JSON.stringify({ status: isClosing() ? 'shutting-down' : 'storage-failing', ...about }),
            },
    },
  ]
}
