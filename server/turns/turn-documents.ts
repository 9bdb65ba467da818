// Shows turns to every device: writes each turn's entry into the `turns` map of its session's
// document as a change of the server's own (stored and relayed like a peer's update, as
// session/reply-watch.ts does). Batches per session, bounds the sessions changed at once; knows
// nothing of scheduling.

import type * as Y from 'yjs'
import { type Author, requestCancel } from '../../shared/conversation/index.js'
import { type TurnEntry, writeTurnEntries } from '../../shared/turns/document.js'
import type { Logger } from '../observability/log.js'

/** Applies a server change to a session's document, loading the session if needed. */
export interface DocumentChanger {
  /** False when the session refuses the change now (not loadable, being deleted, writes refused). */
  change(sessionId: string, apply: (doc: Y.Doc, origin: unknown) => void): Promise<boolean>
  /**
   * Whether a device or agent has `sessionId` open here now (someone would see a change at once).
   * Absent: every session counts as watched (a cluster node cannot tell who is on the others).
   */
  isWatched?(sessionId: string): boolean
  /**
   * The sessions someone has open here now, kept by connection events (so O(watched), not a walk
   * of every loaded session); given together with `isWatched`, which has the last word.
   */
  watchedSessions?(): Iterable<string>
}

/** Where the turn service puts what devices should see. */
export interface TurnDocuments {
  /** Queues `entry` for message `messageId` of `sessionId`; a later entry for the same message replaces it. */
  write(sessionId: string, messageId: string, entry: TurnEntry): void
  /** Asks the writer of answer message `replyId` to stop (its turn was cancelled while running). */
  requestCancel(sessionId: string, replyId: string, by: Author): void
  /**
   * Whether someone has the session open now; a writer that cannot tell omits it (all watched).
   * Queue positions are rewritten only into watched sessions (turn-service.ts).
   */
  isWatched?(sessionId: string): boolean
  /** The sessions someone has open now, when the writer can tell (see {@link DocumentChanger}). */
  watchedSessions?(): Iterable<string>
  /** Sessions with entries waiting to be written. */
  readonly pendingSessions: number
  /** Resolves once everything queued so far was written (or given up). */
  flush(): Promise<void>
  close(): void
}

/** Options of {@link createTurnDocuments}. */
export interface TurnDocumentsOptions {
  readonly changer: DocumentChanger
  readonly logger: Logger
  /** How long entries gather before a write (ms). */
  readonly delayMs?: number
  /** Sessions changed at once. */
  readonly concurrency?: number
}

interface PendingSession {
  readonly entries: Map<string, TurnEntry>
  readonly cancels: Map<string, Author>
  attempts: number
}

/** A session that refuses a change is tried this many times before its entries are dropped (logged). */
const MAX_ATTEMPTS = 5

/** Creates the writer. */
export function createTurnDocuments(options: TurnDocumentsOptions): TurnDocuments {
  const { changer, logger } = options
  const delayMs = options.delayMs ?? 20
  const concurrency = options.concurrency ?? 32
  let pending = new Map<string, PendingSession>()
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let isClosed = false

  const pendingOf = (sessionId: string): PendingSession => {
    let session = pending.get(sessionId)
    if (session === undefined) {
      session = { entries: new Map(), cancels: new Map(), attempts: 0 }
      pending.set(sessionId, session)
    }
    return session
  }

  const schedule = (): void => {
    if (timer !== undefined || running !== undefined || isClosed) return
    timer = setTimeout(() => {
      timer = undefined
      running = drain().finally(() => {
        running = undefined
        if (pending.size > 0) schedule()
      })
    }, delayMs)
    timer.unref()
  }

  async function writeSession(sessionId: string, session: PendingSession): Promise<void> {
    let isDone = false
    try {
      isDone = await changer.change(sessionId, (doc, origin) => {
        writeTurnEntries(doc, session.entries, origin)
        for (const [replyId, by] of session.cancels) requestCancel(doc, replyId, by, origin)
      })
    } catch (error) {
      logger.warn({ session: sessionId, err: error }, 'turn states not written to the session')
    }
    if (isDone || isClosed) return
    session.attempts++
    if (session.attempts >= MAX_ATTEMPTS) {
      logger.warn(
        { session: sessionId, turns: session.entries.size },
        'turn states dropped: the session refused them',
      )
      return
    }
    // Entries queued since win over the ones that failed.
    const next = pendingOf(sessionId)
    for (const [id, entry] of session.entries) if (!next.entries.has(id)) next.entries.set(id, entry)
    for (const [id, by] of session.cancels) if (!next.cancels.has(id)) next.cancels.set(id, by)
    next.attempts = Math.max(next.attempts, session.attempts)
  }

  async function drain(): Promise<void> {
    const batch = [...pending]
    pending = new Map()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < batch.length && !isClosed) {
        const [sessionId, session] = batch[next++]!
        await writeSession(sessionId, session)
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, worker))
  }

  return {
    write(sessionId, messageId, entry) {
      if (isClosed) return
      pendingOf(sessionId).entries.set(messageId, entry)
      schedule()
    },
    isWatched: (sessionId) => changer.isWatched?.(sessionId) ?? true,
    ...(changer.watchedSessions === undefined ? {} : { watchedSessions: () => changer.watchedSessions!() }),
    requestCancel(sessionId, replyId, by) {
      if (isClosed) return
      pendingOf(sessionId).cancels.set(replyId, by)
      schedule()
    },
    get pendingSessions() {
      return pending.size
    },
    async flush() {
      for (let round = 0; round < MAX_ATTEMPTS + 1 && (pending.size > 0 || running !== undefined); round++) {
        if (timer !== undefined) {
          clearTimeout(timer)
          timer = undefined
        }
        if (running === undefined) {
          running = drain().finally(() => {
            running = undefined
          })
        }
        await running
      }
    },
    close() {
      isClosed = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      pending.clear()
    },
  }
}
