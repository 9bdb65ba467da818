// A server's session layer wired in memory (memory topics, any store, the real write queue), with
// protocol peers attached through MemoryPeers. Frames travel as microtasks, never re-entrantly, and
// are decoded at this edge with the peer's codec, as a transport does.

import { createSilentLogger } from '../../server/observability/log.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import type { Store } from '../../server/persistence/store.js'
import { createWriteQueue, type WriteQueue } from '../../server/persistence/write-queue.js'
import type { ColdWork } from '../../server/session/cold-work.js'
import type { Connection } from '../../server/session/connection.js'
import type { Distribution } from '../../server/session/distribution.js'
import { receiveFrame } from '../../server/session/peer.js'
import { createSessionRegistry, type SessionRegistry } from '../../server/session/registry.js'
import type { Session } from '../../server/session/session.js'
import { createMemoryTopics, MemoryPeer } from '../../server/transport/memory-transport.js'
import { ColloquyError } from '../../shared/errors.js'
import { ProtocolPeer, type ProtocolPeerOptions } from './protocol-peer.js'

export interface TestClient {
  readonly peer: ProtocolPeer
  readonly transport: MemoryPeer
  readonly session: Session
  readonly connection: Connection
  /** The client closes its side (as a socket close would). */
  disconnect(): void
}

export interface MemoryHarness {
  readonly store: Store
  readonly writeQueue: WriteQueue
  readonly registry: SessionRegistry
  connect(sessionId: string, options?: ProtocolPeerOptions & { start?: boolean }): TestClient
  /** Lets queued frames travel and waits until every queued write is durable. */
  settle(): Promise<void>
  /** Refuse writes with this error (undefined: accept). */
  setWriteRefusal(error: ColloquyError | undefined): void
  close(): Promise<void>
}

/** Lets every pending microtask and immediate run, a few rounds deep. */
export async function drainTasks(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

export function createMemoryHarness(
  options: {
    store?: Store
    idleUnloadMs?: number
    maxLoadingQueueMessages?: number
    /** What other processes must see (default: none); told of stored updates before the acks. */
    distribution?: Distribution
    /** Where cold loads end and server changes wait (default: none, at once). */
    coldWork?: ColdWork
    /** Sessions in memory at most (default: no bound). */
    maxSessionsInMemory?: number
  } = {},
): MemoryHarness {
  const store = options.store ?? createMemoryStore()
  let registry: SessionRegistry | undefined
  let refusal: ColloquyError | undefined
  const writeQueue = createWriteQueue({
    store,
    flushDelayMs: 1,
    retryMinMs: 1,
    retryMaxMs: 5,
    onCommit: (durable, entries, seqs) => {
      options.distribution?.updatesStored(entries, seqs)
      registry?.handleCommit(durable)
    },
  })
  const sessions = createSessionRegistry({
    store,
    writes: writeQueue,
    ...(options.distribution === undefined ? {} : { distribution: options.distribution }),
    ...(options.coldWork === undefined ? {} : { coldWork: options.coldWork }),
    ...(options.maxSessionsInMemory === undefined
      ? {}
      : { maxSessionsInMemory: options.maxSessionsInMemory }),
    topics: createMemoryTopics(),
    logger: createSilentLogger(),
    limits: {
      maxLoadingQueueMessages: options.maxLoadingQueueMessages ?? 1_000,
      maxLoadingQueueBytes: 32 << 20,
    },
    idleUnloadMs: options.idleUnloadMs ?? 60_000,
    writeRefusal: () =>
      refusal ?? (writeQueue.isFailing ? new ColloquyError('storage-unavailable') : undefined),
  })
  registry = sessions

  return {
    store,
    writeQueue,
    registry: sessions,
    connect(sessionId, peerOptions = {}) {
      let transport: MemoryPeer | undefined
      let session: Session | undefined
      let connection: Connection | undefined
      const peer = new ProtocolPeer((frame) => {
        queueMicrotask(() => {
          if (transport?.isClosed === false && session !== undefined && connection !== undefined) {
            // The edge: decoded with the peer's codec, as a transport does.
            const target = { session, connection }
            receiveFrame(transport.codec, frame, {
              receive: (message) => target.session.receive(target.connection, message),
              refuse: (error) => target.session.refuse(target.connection, error),
            })
          }
        })
      }, peerOptions)
      transport = new MemoryPeer((frame) => queueMicrotask(() => peer.handle(frame)), {
        sessionId,
        // A close from the server ends the connection as a socket close would.
        onClose: () => queueMicrotask(() => session?.detach(connection!)),
      })
      const attached = sessions.connect(sessionId, transport)
      session = attached.session
      connection = attached.connection
      if (peerOptions.start ?? true) peer.start()
      const memoryPeer = transport
      return {
        peer,
        transport: memoryPeer,
        session,
        connection,
        disconnect() {
          memoryPeer.isClosed = true
          attached.session.detach(attached.connection)
        },
      }
    },
    async settle() {
      await drainTasks()
      await writeQueue.flush()
      await drainTasks()
    },
    setWriteRefusal(error) {
      refusal = error
    },
    async close() {
      await writeQueue.close()
      sessions.endAll(1001, 'test over')
      await store.close()
    },
  }
}
