// The per-session half of every client: one Y.Doc and its presence kept in sync with one session over
// whatever link carries its messages (a socket of its own, or a share of a multiplexed one), with the
// handshake, the acknowledgements that mean "on disk", events and waiters. It owns no socket, no
// timer and no encoding: the link's owner decodes frames into messages and encodes what it sends.

import * as encoding from 'lib0/encoding'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { ColloquyError } from '../shared/errors.js'
import { decodeSyncStatusCounter, type Message, type MessageBody } from '../shared/protocol/message.js'
import { createAckTracker } from './ack-tracker.js'
import type { OfflineCache } from './offline-cache.js'
import type { ConnectionStatus, StatusEvent } from './status.js'

/** How a session learns that its changes are durable. */
export const AckMode = {
  /** Colloquy's extension: a sync-status with a counter after each batch, echoed once durable. */
  Counter: 'counter',
  /** The Hocuspocus protocol: the server answers every update (and step 2) with one sync-status, in order, once durable. */
  PerUpdate: 'per-update',
  /** No acknowledgements: "flushed" means "sent". */
  Off: 'off',
} as const

export type AckMode = (typeof AckMode)[keyof typeof AckMode]

/** Events of a session ({@link SyncClient}, a multiplexed handle). */
export interface SyncClientEvents {
  /** The connection status changed (or a retry was scheduled). */
  status: (event: StatusEvent) => void
  /** The handshake of a connection finished: the document holds everything the server had. */
  synced: () => void
  /** Every local change is durable on the server ({@link SyncClient.hasLocalChanges} became false). */
  flushed: () => void
  /** The server refused a write (a read-only peer), or refused the session on a shared socket. */
  'permission-denied': (reason: string) => void
  /** A stateless message from another peer of the session (multiplexed connections only). */
  stateless: (payload: string) => void
}

/** A connected (or reconnecting) session. */
export interface SyncClient {
  readonly doc: Y.Doc
  /** Presence: set `awareness.setLocalState(...)`; others' states are in `awareness.getStates()`. */
  readonly awareness: awarenessProtocol.Awareness
  readonly sessionId: string
  readonly status: ConnectionStatus
  /** True once the handshake of the current connection finished; false while offline. */
  readonly isSynced: boolean
  /** True while some local change is not yet acknowledged as durable by the server. */
  readonly hasLocalChanges: boolean
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof SyncClientEvents>(event: E, listener: SyncClientEvents[E]): () => void
  /** Resolves once the offline cache (if any) is loaded into the document. */
  whenLoaded(): Promise<void>
  /** Resolves when the current or next connection has synced. Rejects if the client is destroyed. */
  whenSynced(): Promise<void>
  /**
   * Resolves once every local change made before the call is durable on the server.
   *
   * @remarks
   * Survives reconnects: after a new handshake the client uploads what the server misses and asks
   * again. Resolves at once when there is nothing to flush. Rejects if the client is destroyed
   * first, and at once when the client was created with `acks: false`.
   */
  whenFlushed(): Promise<void>
  /** Connects now (also cancels a scheduled retry). */
  connect(): void
  /** Clears our presence, closes the connection and stops reconnecting until {@link SyncClient.connect}. */
  disconnect(): void
  /** Clears presence, closes the socket and the offline cache, removes listeners; leaves no timer. */
  destroy(): Promise<void>
}

/** What carries one session's messages; the owner encodes them for its wire protocol. */
export interface SessionLink {
  send(message: MessageBody): void
}

/** Options of {@link createSessionCore}. */
export interface SessionCoreOptions {
  readonly sessionId: string
  readonly doc?: Y.Doc | undefined
  readonly ackMode: AckMode
  readonly offlineCache?: OfflineCache | undefined
  /** Called when a link's handshake finished (before the `synced` event). */
  readonly onSynced?: () => void
  /** The status before the first event (default `offline`). */
  readonly initialStatus?: ConnectionStatus
}

/** The lifecycle a {@link SyncClient} delegates to its link's owner. */
export interface SessionControls {
  connect(): void
  disconnect(): void
  /** Closes the link; called once, before the core is torn down. */
  destroy(): void
}

/** One session's state; see {@link createSessionCore}. */
export interface SessionCore {
  readonly doc: Y.Doc
  readonly awareness: awarenessProtocol.Awareness
  readonly sessionId: string
  readonly status: ConnectionStatus
  readonly isSynced: boolean
  readonly isDestroyed: boolean
  /** Resolves once the offline cache (if any) is in the document; never rejects. */
  readonly loaded: Promise<void>
  /** Records and emits a status change. */
  setStatus(event: StatusEvent): void
  /** Emits `permission-denied`. */
  denied(reason: string): void
  /** A link is open: sends step 1 and re-announces our presence. */
  linkOpened(link: SessionLink): void
  /** The link is gone: forgets its unacknowledged counters and everyone else's presence. */
  linkLost(): void
  /**
   * Handles one message of the link. Throws {@link ColloquyError} `invalid-update` when the server
   * sent an update that does not apply: the owner ends the link.
   */
  receive(message: Message): void
  /** Sends our presence as gone and remembers it for {@link SessionCore.restorePresence}. */
  clearPresence(): void
  restorePresence(): void
  /** The public client over this core and the owner's lifecycle. */
  toClient(controls: SessionControls): SyncClient
}

/** The transaction origin of updates that came from the server. */
const REMOTE = Symbol('colloquy-remote')
/** The awareness origin of our own presence being cleared by disconnect(). */
const DISCONNECT = Symbol('colloquy-disconnect')

/** Reports an error thrown by a user's listener without breaking the client's own state. */
function reportListenerError(error: unknown): void {
  queueMicrotask(() => {
    throw error
  })
}

/**
 * Creates the state of one session, not linked yet.
 *
 * @remarks
 * - Handshake per link: send our state vector (sync step 1) and presence; answer the server's
 *   step 1 with step 2 (what it misses, e.g. offline edits); synced when the server's step 2 arrives.
 * - Acks, {@link AckMode}: with `counter`, a sync-status with a new counter follows each batch of
 *   local updates (at most one per microtask) and the step 2; an echoed counter covers every change
 *   made before it was sent. With `per-update`, every step 2 and update sent is one entry of a
 *   queue, and each sync-status the server sends acknowledges the oldest entry: the counter taken
 *   when that message was sent.
 */
export function createSessionCore(options: SessionCoreOptions): SessionCore {
  const { sessionId, ackMode } = options
  const cache = options.offlineCache
  const doc = options.doc ?? new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  const tracker = createAckTracker()
  const listeners: { [E in keyof SyncClientEvents]: Set<SyncClientEvents[E]> } = {
    status: new Set(),
    synced: new Set(),
    flushed: new Set(),
    'permission-denied': new Set(),
    stateless: new Set(),
  }
  let status: ConnectionStatus = options.initialStatus ?? 'offline'
  let isDestroyed = false
  let link: SessionLink | undefined
  let isSynced = false
  let isStatusQueued = false
  /** Per-update acks: the counter each step 2 / update sent on this link covers (undefined: none). */
  let awaitedAcks: (number | undefined)[] = []
  let presenceBeforeDisconnect: Record<string, unknown> | undefined
  let syncWaiters: { resolve: () => void; reject: (error: Error) => void }[] = []
  let destroying: Promise<void> | undefined

  function emit<E extends keyof SyncClientEvents>(event: E, ...args: Parameters<SyncClientEvents[E]>): void {
    for (const listener of [...listeners[event]]) {
      try {
        ;(listener as (...a: Parameters<SyncClientEvents[E]>) => void)(...args)
      } catch (error) {
        reportListenerError(error)
      }
    }
  }

  function acknowledge(counter: number): void {
    if (tracker.acknowledge(counter)) emit('flushed')
  }

  /** Sends a step 2 or an update; in per-update mode, remembers which counter its ack will cover. */
  function sendUpdate(to: SessionLink, message: MessageBody): void {
    to.send(message)
    if (ackMode === AckMode.PerUpdate) awaitedAcks.push(tracker.takeCounter())
  }

  /** Counter mode: sends a sync-status if some local change is not covered by one sent on this link. */
  function sendStatusNow(to: SessionLink): void {
    if (ackMode === AckMode.PerUpdate) return
    const counter = tracker.takeCounter()
    if (counter === undefined) return
    if (ackMode === AckMode.Counter) {
      const payload = encoding.encode((e) => encoding.writeVarUint(e, counter))
      to.send({ type: 'sync-status', payload })
    } else {
      // Without acks "flushed" can only mean "sent".
      acknowledge(counter)
    }
  }

  function queueStatus(): void {
    if (isStatusQueued || ackMode === AckMode.PerUpdate) return
    isStatusQueued = true
    // Coalesce: every update of this synchronous run is covered by one sync-status.
    queueMicrotask(() => {
      isStatusQueued = false
      if (link !== undefined && !isDestroyed) sendStatusNow(link)
    })
  }

  const onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === REMOTE) return
    // Local edits and what the offline cache loaded: either may be missing on the server.
    tracker.markChange()
    if (link === undefined) return
    sendUpdate(link, { type: 'sync-update', update })
    queueStatus()
  }

  const onAwarenessUpdate = (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ): void => {
    if (origin === REMOTE || link === undefined) return
    const changed = [...changes.added, ...changes.updated, ...changes.removed]
    link.send({ type: 'awareness', update: awarenessProtocol.encodeAwarenessUpdate(awareness, changed) })
  }

  /** Forgets everyone else's presence: we cannot see them while offline. */
  function clearRemotePresence(): void {
    const others = [...awareness.getStates().keys()].filter((id) => id !== doc.clientID)
    if (others.length === 0) return
    awarenessProtocol.removeAwarenessStates(awareness, others, REMOTE)
    // Drop their clocks too, so the server's re-announcement after a reconnect (same clock) is taken.
    for (const id of others) awareness.meta.delete(id)
  }

  function applyRemote(update: Uint8Array): void {
    try {
      Y.applyUpdate(doc, update, REMOTE)
    } catch (error) {
      throw new ColloquyError('invalid-update', 'the server sent an update that does not apply', {
        cause: error,
      })
    }
  }

  function receive(message: Message): void {
    const to = link
    if (to === undefined || isDestroyed) return
    switch (message.type) {
      case 'sync-step1':
        sendUpdate(to, { type: 'sync-step2', update: Y.encodeStateAsUpdate(doc, message.stateVector) })
        // The step 2 just sent holds every local change the server misses: ask for its ack.
        sendStatusNow(to)
        return
      case 'sync-step2':
        applyRemote(message.update)
        if (!isSynced) {
          isSynced = true
          options.onSynced?.()
          const waiters = syncWaiters
          syncWaiters = []
          for (const waiter of waiters) waiter.resolve()
          emit('synced')
        }
        return
      case 'sync-update':
        applyRemote(message.update)
        return
      case 'awareness':
        awarenessProtocol.applyAwarenessUpdate(awareness, message.update, REMOTE)
        return
      case 'query-awareness':
        to.send({
          type: 'awareness',
          update: awarenessProtocol.encodeAwarenessUpdate(awareness, [...awareness.getStates().keys()]),
        })
        return
      case 'auth':
        emit('permission-denied', message.reason)
        return
      case 'stateless':
        emit('stateless', message.payload)
        return
      case 'auth-token':
      case 'authenticated':
      case 'close':
        // The link's owner handles a session's admission and closing; a client sends no token.
        return
      case 'sync-status': {
        const value = decodeSyncStatusCounter(message.payload)
        if (ackMode === AckMode.Counter) {
          if (value !== undefined) acknowledge(value)
        } else if (ackMode === AckMode.PerUpdate && awaitedAcks.length > 0) {
          // One answer per step 2 / update, in order; 1 = stored, 0 = refused (a read-only peer).
          const counter = awaitedAcks.shift()
          if (value === 1) {
            if (counter !== undefined) acknowledge(counter)
          } else {
            // What the classic protocol says with a permission-denied message.
            emit('permission-denied', 'the server refused a write (read-only access)')
          }
        }
        return
      }
    }
  }

  // Content the document already held may be missing on the server, like anything the cache loads.
  if (doc.store.clients.size > 0) tracker.markChange()
  doc.on('update', onDocUpdate)
  awareness.on('update', onAwarenessUpdate)

  const loaded = (async () => {
    if (cache === undefined) return
    try {
      await cache.attach(doc)
    } catch (error) {
      // Syncing still works without the cache; say why it is missing.
      const message = error instanceof Error ? error.message : String(error)
      if (!isDestroyed) {
        emit('status', { status, reason: `offline cache failed to load: ${message}` })
      }
    }
  })()

  function tearDown(): Promise<void> {
    destroying ??= (async () => {
      awareness.off('update', onAwarenessUpdate)
      doc.off('update', onDocUpdate)
      core.linkLost()
      const error = new Error('sync client destroyed')
      tracker.rejectAll(error)
      const waiters = syncWaiters
      syncWaiters = []
      for (const waiter of waiters) waiter.reject(error)
      if (status !== 'offline') core.setStatus({ status: 'offline', reason: 'destroyed' })
      for (const set of Object.values(listeners)) set.clear()
      await loaded
      await cache?.close()
    })()
    return destroying
  }

  const core: SessionCore = {
    doc,
    awareness,
    sessionId,
    loaded,
    get status() {
      return status
    },
    get isSynced() {
      return isSynced
    },
    get isDestroyed() {
      return isDestroyed
    },
    setStatus(event) {
      status = event.status
      emit('status', event)
    },
    denied(reason) {
      emit('permission-denied', reason)
    },
    linkOpened(next) {
      link = next
      isSynced = false
      awaitedAcks = []
      next.send({ type: 'sync-step1', stateVector: Y.encodeStateVector(doc) })
      const presence = awareness.getLocalState()
      // Re-announce with a new clock: peers that saw us leave keep our old clock and would ignore it.
      if (presence !== null) awareness.setLocalState(presence)
    },
    linkLost() {
      if (link === undefined) return
      link = undefined
      isSynced = false
      awaitedAcks = []
      tracker.connectionLost()
      clearRemotePresence()
    },
    receive,
    clearPresence() {
      const presence = awareness.getLocalState()
      if (presence === null) return
      presenceBeforeDisconnect = presence
      awarenessProtocol.removeAwarenessStates(awareness, [doc.clientID], DISCONNECT)
    },
    restorePresence() {
      if (presenceBeforeDisconnect !== undefined && awareness.getLocalState() === null) {
        awareness.setLocalState(presenceBeforeDisconnect)
      }
      presenceBeforeDisconnect = undefined
    },
    toClient(controls) {
      return {
        doc,
        awareness,
        sessionId,
        get status() {
          return status
        },
        get isSynced() {
          return isSynced
        },
        get hasLocalChanges() {
          return tracker.hasLocalChanges
        },
        on(event, listener) {
          const set = listeners[event] as Set<typeof listener>
          set.add(listener)
          return () => {
            set.delete(listener)
          }
        },
        whenLoaded() {
          return loaded
        },
        whenSynced() {
          if (isDestroyed) return Promise.reject(new Error('sync client destroyed'))
          if (isSynced) return Promise.resolve()
          return new Promise<void>((resolve, reject) => {
            syncWaiters.push({ resolve, reject })
          })
        },
        whenFlushed() {
          if (isDestroyed) return Promise.reject(new Error('sync client destroyed'))
          if (ackMode === AckMode.Off) {
            return Promise.reject(
              new Error('whenFlushed() needs acks: this client was created with acks: false'),
            )
          }
          return tracker.whenFlushed()
        },
        connect() {
          if (isDestroyed) return
          controls.connect()
        },
        disconnect() {
          if (isDestroyed) return
          controls.disconnect()
        },
        destroy() {
          if (destroying !== undefined) return destroying
          isDestroyed = true
          // Destroying the awareness clears our presence: it goes out while the link is still there.
          awareness.destroy()
          controls.destroy()
          return tearDown()
        },
      }
    },
  }
  return core
}
