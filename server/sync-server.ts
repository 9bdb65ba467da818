// Wiring: store → write queue → session registry → uWS transport, plus health routes and an
// orderly shutdown. Reads no environment: everything comes in through options.

import path from 'node:path'
import { ColloquyError } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol/close-codes.js'
import type { ServerConfig } from './config.js'
import type { Logger } from './observability/log.js'
import { createSilentLogger } from './observability/log.js'
import { openLeveldbStore } from './persistence/leveldb-store.js'
import { createMemoryStore } from './persistence/memory-store.js'
import type { Store } from './persistence/store.js'
import { createWriteQueue, type WriteQueue } from './persistence/write-queue.js'
import { createSessionRegistry, type SessionRegistry } from './session/registry.js'
import { loadNativeUws } from './transport/uws.js'
import { createUwsTransport } from './transport/uws-transport.js'

/** Options of {@link startSyncServer}. */
export interface SyncServerOptions {
  readonly config: ServerConfig
  readonly logger?: Logger
  /** Use this store instead of the one the config names (tests inject fault-injecting stores). */
  readonly store?: Store
}

/** A running server. */
export interface SyncServer {
  readonly host: string
  readonly port: number
  readonly store: Store
  readonly writeQueue: WriteQueue
  readonly registry: SessionRegistry
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
  const store =
    options.store ??
    (config.store === 'memory'
      ? createMemoryStore()
      : await openLeveldbStore({ location: path.resolve(config.dataDir), sync: config.fsync }))

  let isClosing = false
  // The registry is created after the queue (it needs the queue), but commits are routed to it.
  let registry: SessionRegistry | undefined
  const writeQueue = createWriteQueue({
    store,
    flushDelayMs: config.commitDelayMs,
    onCommit: (durable) => registry?.handleCommit(durable),
    onError: (error, attempt) => {
      logger.error(
        { err: error, attempt, queuedBytes: writeQueue.queuedBytes },
        'group commit failed: retrying',
      )
    },
    onRecover: () => logger.warn('group commit recovered'),
  })

  const writeRefusal = (): ColloquyError | undefined => {
    if (isClosing) return new ColloquyError('shutting-down')
    if (writeQueue.isFailing) return new ColloquyError('storage-unavailable')
    if (writeQueue.queuedBytes > config.maxQueuedWriteBytes) {
      return new ColloquyError('storage-unavailable', 'write backlog over its bound')
    }
    return undefined
  }

  let transport: Awaited<ReturnType<typeof createUwsTransport>> | undefined
  registry = createSessionRegistry({
    store,
    writes: writeQueue,
    topics: (sessionId) => {
      if (transport === undefined) throw new Error('transport not started')
      return transport.topic(sessionId)
    },
    logger,
    limits: {
      maxLoadingQueueMessages: config.maxLoadingQueueMessages,
      maxLoadingQueueBytes: config.maxLoadingQueueBytes,
    },
    idleUnloadMs: config.idleUnloadMs,
    writeRefusal,
  })
  const sessions = registry

  const isReady = (): boolean => !isClosing && !writeQueue.isFailing

  transport = await createUwsTransport({
    uws,
    host: config.host,
    port: config.port,
    maxMessageBytes: config.maxMessageBytes,
    maxBackpressureBytes: config.maxBackpressureBytes,
    logger,
    refuseUpgrade: () => (isClosing ? new ColloquyError('shutting-down') : undefined),
    accept(sessionId, peer) {
      const { session, connection } = sessions.connect(sessionId, peer)
      logger.debug({ session: sessionId, peer: peer.id, remote: peer.remote }, 'connection opened')
      return {
        receive: (frame) => session.receive(connection, frame),
        closed: (code) => {
          logger.debug({ session: sessionId, peer: peer.id, code }, 'connection closed')
          session.detach(connection)
        },
      }
    },
    routes: {
      '/healthz': () => ({ status: 200, body: JSON.stringify({ status: 'ok' }) }),
      '/readyz': () =>
        isReady()
          ? { status: 200, body: JSON.stringify({ status: 'ready' }) }
          : {
              status: 503,
              body: JSON.stringify({ status: isClosing ? 'shutting-down' : 'storage-failing' }),
            },
    },
  })
  const listening = transport

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      isClosing = true
      listening.stopListening()
      // Flush first, so every update received so far is durable and its ack delivered …
      await writeQueue.close()
      // … then close the sockets: clients reconnect elsewhere or later and sync by state vector.
      sessions.endAll(CloseCode.GoingAway, 'server shutting down')
      await store.close()
      logger.info('server stopped')
    })()
    return closing
  }

  logger.info(
    {
      host: config.host,
      port: listening.port,
      store: config.store,
      dataDir: config.dataDir,
      fsync: config.fsync,
    },
    'colloquy listening',
  )

  return {
    host: config.host,
    port: listening.port,
    store,
    writeQueue,
    registry: sessions,
    get isReady() {
      return isReady()
    },
    close,
  }
}
