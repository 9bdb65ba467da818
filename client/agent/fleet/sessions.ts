// How a worker opens the sessions of the turns it answers. One interface, two ways behind it: a sync
// client per session (today's client, one socket each) or, once the multiplexed connection exists,
// one socket for every session. A session is shared by the turns that need it at the same time and
// closed when the last one lets go.

import type * as Y from 'yjs'
import type { Connection } from '../../connection.js'
import { createSyncClient, type SyncClientOptions } from '../../sync-client.js'

/** What the worker needs of an open session. */
export interface TurnSession {
  readonly doc: Y.Doc
  /** Resolves once the document holds the server's state. */
  whenSynced(): Promise<void>
  /** Resolves once every local change is durable on the server (its ack). */
  whenFlushed(): Promise<void>
}

/** A session held for one turn: call `release` once the turn is done with it. */
export interface SessionLease {
  readonly session: TurnSession
  release(): Promise<void>
}

/** Opens sessions for a worker. */
export interface SessionOpener {
  /** Opens `sessionId`, or shares it if another turn holds it open (or it is still lingering). */
  acquire(sessionId: string): Promise<SessionLease>
  /** Sessions open now (held or lingering). */
  readonly openCount: number
  /** Closes every session. */
  close(): Promise<void>
}

/** The handle a session source gives: a document, its sync waits and a close. */
export interface SessionHandle extends TurnSession {
  close(): Promise<void>
}

/** Options of {@link createSharedSessions}. */
export interface SharedSessionsOptions {
  /** How long a session nobody holds stays open for the next turn in it (default 1,000 ms; 0 closes at once). */
  readonly lingerMs?: number
  /** Told when closing a session fails (it is dropped either way; default: ignored). */
  readonly onError?: (error: unknown, sessionId: string) => void
}

/**
 * A {@link SessionOpener} over any way of opening one session (`open`): shares a session between
 * the turns that hold it, keeps it open `lingerMs` after the last lets go (a follow-up question in
 * the same session reuses it), and never opens a session again before its last close finished.
 */
export function createSharedSessions(
  open: (sessionId: string) => SessionHandle,
  options: SharedSessionsOptions = {},
): SessionOpener {
  const lingerMs = options.lingerMs ?? 1_000
  const onError = options.onError ?? (() => {})
  interface Entry {
    readonly handle: SessionHandle
    holders: number
    timer?: ReturnType<typeof setTimeout> | undefined
  }
  const entries = new Map<string, Entry>()
  const closing = new Map<string, Promise<void>>()
  let isClosed = false

  const closeEntry = (sessionId: string, entry: Entry): Promise<void> => {
    clearTimeout(entry.timer)
    if (entries.get(sessionId) === entry) entries.delete(sessionId)
    const done = entry.handle
      .close()
      .catch((error: unknown) => onError(error, sessionId))
      .finally(() => {
        if (closing.get(sessionId) === done) closing.delete(sessionId)
      })
    closing.set(sessionId, done)
    return done
  }

  return {
    async acquire(sessionId) {
      for (let pending = closing.get(sessionId); pending !== undefined; pending = closing.get(sessionId)) {
        await pending
      }
      if (isClosed) throw new Error('the worker sessions are closed')
      let entry = entries.get(sessionId)
      if (entry === undefined) {
        entry = { handle: open(sessionId), holders: 0 }
        entries.set(sessionId, entry)
      }
      clearTimeout(entry.timer)
      entry.timer = undefined
      entry.holders++
      const held = entry
      let isReleased = false
      return {
        session: held.handle,
        async release() {
          if (isReleased) return
          isReleased = true
          held.holders--
          if (held.holders > 0 || entries.get(sessionId) !== held) return
          if (lingerMs <= 0) {
            await closeEntry(sessionId, held)
            return
          }
          held.timer = setTimeout(() => {
            if (held.holders === 0) void closeEntry(sessionId, held)
          }, lingerMs)
        },
      }
    },
    get openCount() {
      return entries.size
    },
    async close() {
      isClosed = true
      await Promise.all([...entries].map(([sessionId, entry]) => closeEntry(sessionId, entry)))
      await Promise.all([...closing.values()])
    },
  }
}

/** Options of {@link createClientSessions}: the sync client's, without the session. */
export type ClientSessionsOptions = Omit<SyncClientOptions, 'sessionId' | 'doc'>

/** A {@link SessionOpener} that opens one sync client (one socket) per session. */
export function createClientSessions(
  options: ClientSessionsOptions,
  shared: SharedSessionsOptions = {},
): SessionOpener {
  return createSharedSessions((sessionId) => {
    const client = createSyncClient({ ...options, sessionId })
    return {
      doc: client.doc,
      whenSynced: () => client.whenSynced(),
      whenFlushed: () => client.whenFlushed(),
      close: () => client.destroy(),
    }
  }, shared)
}

/**
 * A {@link SessionOpener} over one multiplexed connection (client/connection.ts): every session
 * of every turn on one socket. The connection is the caller's; {@link SessionOpener.close} closes
 * the sessions, not the connection.
 */
export function createConnectionSessions(
  connection: Pick<Connection, 'open'>,
  shared: SharedSessionsOptions = {},
): SessionOpener {
  return createSharedSessions((sessionId) => {
    const handle = connection.open(sessionId)
    return {
      doc: handle.doc,
      whenSynced: () => handle.whenSynced(),
      whenFlushed: () => handle.whenFlushed(),
      close: () => handle.close(),
    }
  }, shared)
}
