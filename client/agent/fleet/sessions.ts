// How a worker opens the sessions of the turns it answers. One interface, two ways behind it: a sync
// client per session (today's client, one socket each) or, once the multiplexed connection exists,
// one socket for every session. A session is shared by the turns that need it at the same time and
// closed when the last one lets go.

import type * as Y from 'yjs'
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
  /** Opens `sessionId`, or shares it if another turn holds it open. */
  acquire(sessionId: string): SessionLease
  /** Sessions open now. */
  readonly openCount: number
  /** Closes every session. */
  close(): Promise<void>
}

/** The handle a session source gives: a document, its sync waits and a close. */
export interface SessionHandle extends TurnSession {
  close(): Promise<void>
}

/**
 * A {@link SessionOpener} over any way of opening one session (`open`): shares a session between
 * the turns that hold it and closes it when the last releases it.
 */
export function createSharedSessions(open: (sessionId: string) => SessionHandle): SessionOpener {
  const entries = new Map<string, { handle: SessionHandle; holders: number }>()
  return {
    acquire(sessionId) {
      let entry = entries.get(sessionId)
      if (entry === undefined) {
        entry = { handle: open(sessionId), holders: 0 }
        entries.set(sessionId, entry)
      }
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
          entries.delete(sessionId)
          await held.handle.close()
        },
      }
    },
    get openCount() {
      return entries.size
    },
    async close() {
      const all = [...entries.values()]
      entries.clear()
      await Promise.all(all.map((entry) => entry.handle.close()))
    },
  }
}

/** Options of {@link createClientSessions}: the sync client's, without the session. */
export type ClientSessionsOptions = Omit<SyncClientOptions, 'sessionId' | 'doc'>

/** A {@link SessionOpener} that opens one sync client (one socket) per session. */
export function createClientSessions(options: ClientSessionsOptions): SessionOpener {
  return createSharedSessions((sessionId) => {
    const client = createSyncClient({ ...options, sessionId })
    return {
      doc: client.doc,
      whenSynced: () => client.whenSynced(),
      whenFlushed: () => client.whenFlushed(),
      close: () => client.destroy(),
    }
  })
}
