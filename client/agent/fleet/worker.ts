// An agent worker of a pool (docs/agents.md "Workers"): claims up to `concurrency` turns at a time
// from the server, answers each in its session, renews each lease while it streams, stops at once
// when a lease is lost or the turn cancelled, and completes a turn only once its answer is durable.
// A turn whose answer message already holds text (its last worker died) is continued, not restarted.

import {
  type Author,
  approximateTokens,
  type MessageView,
  newId,
  openStreamingWriter,
  readMessage,
  readMessages,
  readSummaries,
  type StreamingWriter,
  setMessageStatus,
} from '../../../shared/conversation/index.js'
import type { ClaimedTurn, Turn } from '../../../shared/turns/index.js'
import { type Connection, createConnection } from '../../connection.js'
import type { WebSocketLikeConstructor } from '../../websocket.js'
import { promptContext } from '../conversation-view.js'
import type { GenerateContext, Model } from '../model.js'
import {
  callModel,
  DEFAULT_MODEL_RETRY,
  DEFAULT_MODEL_TIMEOUTS,
  type ModelRetryPolicy,
  type ModelTimeouts,
  pause,
} from '../model-call.js'
import { recordModelEvent } from '../tool-messages.js'
import { createConnectionSessions, type SessionOpener, type TurnSession } from './sessions.js'
import { createTurnsClient, TurnsApiError, type TurnsClient } from './turns-client.js'

/** The id of the answer message of a turn: derived, so a turn has exactly one answer in its session. */
export function answerIdOf(turn: Pick<Turn, 'pool' | 'messageId'>): string {
  return `answer:${turn.pool}:${turn.messageId}`
}

/** One resume of an answer, as recorded in its `metadata.resumes` (docs/conversation-model.md §10). */
export interface ResumeRecord {
  /** Local time (ms) of the resume. */
  readonly at: number
  /** Characters of durable text the answer held when it was resumed. */
  readonly offset: number
  /** The worker instance that continued it. */
  readonly instanceId: string
  /** The turn's attempt number for this worker. */
  readonly attempt: number
}

/** What happened to a turn in this worker, for logs and tests. */
export type WorkerEvent =
  | { readonly type: 'claimed'; readonly turn: Turn }
  | {
      readonly type: 'streaming'
      readonly turn: Turn
      readonly answerId: string
      readonly resumedFrom?: number
    }
  | { readonly type: 'completed'; readonly turn: Turn; readonly answerId: string; readonly status: string }
  | { readonly type: 'cancelled'; readonly turn: Turn; readonly answerId?: string }
  | { readonly type: 'lost'; readonly turn: Turn; readonly answerId?: string }
  | { readonly type: 'failed'; readonly turn: Turn; readonly reason: string }
  | { readonly type: 'released'; readonly turn: Turn; readonly reason: string }

/** Options of {@link createWorker}. */
export interface WorkerOptions {
  /** The server, as for the sync client: `ws://host:port` (the turns API is on the same port, over HTTP). */
  readonly url: string
  /** The pool whose turns this worker answers. */
  readonly pool: string
  /** Turns answered at once (default 1). */
  readonly concurrency?: number
  readonly model: Model
  /** A token (kind `agent`, role `write`, every session) or a function returning one. */
  readonly token?: string | (() => string | Promise<string>)
  /** Display name (default `worker`); the answers' author is `agent:<name>` unless `id` is given. */
  readonly name?: string
  readonly id?: string
  /** One run of this process (default: random). */
  readonly instanceId?: string
  /** The WebSocket class for the default sessions (in Node: `ws`, see client/agent/node.ts). */
  readonly WebSocket?: WebSocketLikeConstructor
  /**
   * How sessions are opened (default: one multiplexed connection to `url` for every session,
   * closed by `stop()`; `createClientSessions` opens a socket per session instead).
   */
  readonly sessions?: SessionOpener
  /** The turns API (default: HTTP on `url`). */
  readonly turns?: TurnsClient
  /** Long-poll of one claim request (default 10 s). */
  readonly claimWaitMs?: number
  /** Longest wait for an answer to be durable before completing its turn (default 60 s). */
  readonly flushTimeoutMs?: number
  /** Longest wait for a session to sync before giving its turn back (default 30 s). */
  readonly syncTimeoutMs?: number
  /** Coalescing window of the answer writer (default 20 ms). */
  readonly coalesceMs?: number
  readonly maxContextTokens?: number
  readonly countTokens?: (text: string) => number
  readonly timeouts?: Partial<ModelTimeouts>
  readonly retry?: Partial<ModelRetryPolicy>
  /** Called with each error the worker survives (a claim that failed, a model error, …). */
  readonly onError?: (error: unknown) => void
}

/** A running worker. */
export interface Worker {
  readonly instanceId: string
  readonly author: Author
  /** Turns being answered now. */
  readonly active: number
  /** Calls `listener` for every {@link WorkerEvent}; returns the function that removes it. */
  on(listener: (event: WorkerEvent) => void): () => void
  /**
   * Stops claiming, stops the answers in progress (their text so far is made durable and their
   * turns are given back to the pool with `retry`, so another worker continues them), closes every
   * session. Resolves when all of that is done.
   */
  stop(): Promise<void>
}

/** Resolves with `promise`'s value, or `undefined` after `ms` or when `signal` aborts. */
async function bounded<T>(promise: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  const stop = new AbortController()
  const onAbort = (): void => stop.abort()
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([promise, pause(ms, stop.signal).then(() => undefined)])
  } finally {
    stop.abort()
    signal?.removeEventListener('abort', onAbort)
  }
}

/** Why a turn's answer stopped before the model ended it. */
type StopReason = 'lost' | 'cancelled' | 'stopping'

/** Starts a worker: it claims and answers turns of `pool` until `stop()`. */
export function createWorker(options: WorkerOptions): Worker {
  const name = options.name ?? 'worker'
  const author: Author = { id: options.id ?? `agent:${name}`, kind: 'agent', name }
  const instanceId = options.instanceId ?? newId()
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1))
  const claimWaitMs = options.claimWaitMs ?? 10_000
  const flushTimeoutMs = options.flushTimeoutMs ?? 60_000
  const syncTimeoutMs = options.syncTimeoutMs ?? 30_000
  const maxContextTokens = options.maxContextTokens ?? 8_000
  const countTokens = options.countTokens ?? approximateTokens
  const timeouts: ModelTimeouts = { ...DEFAULT_MODEL_TIMEOUTS, ...options.timeouts }
  const retry: ModelRetryPolicy = { ...DEFAULT_MODEL_RETRY, ...options.retry }
  const onError = options.onError ?? (() => {})
  const token = options.token
  const turns =
    options.turns ?? createTurnsClient({ url: options.url, ...(token === undefined ? {} : { token }) })
  // By default every session of every turn goes over one multiplexed connection.
  const connection =
    options.sessions === undefined
      ? createConnection({
          url: options.url,
          ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
          ...(token === undefined ? {} : { token }),
        })
      : undefined
  const sessions = options.sessions ?? createConnectionSessions(connection as Connection, { onError })
  const listeners = new Set<(event: WorkerEvent) => void>()
  const emit = (event: WorkerEvent): void => {
    for (const listener of listeners) {
      try {
        listener(event)
      } catch (error) {
        onError(error)
      }
    }
  }
  const stopping = new AbortController()
  const active = new Map<string, Promise<void>>()
  let wakeClaimer: (() => void) | undefined

  /**
   * Calls `complete`/`fail`; a turn already final (409) or a lost lease is not an error here. A
   * transient failure (503: in a cluster, JetStream without quorum or no scheduler; or no answer at
   * all: the server restarting, the network) is retried with backoff for up to `retryForMs` (a
   * lease), unless the worker stops; a retried call that had reached the server gets a 409. Regression
   * (issue 17, no quorum): a complete refused during an outage was given up at once; its turn went
   * back to the pool when its lease ran out and was claimed a second time only to be completed (and
   * on its last attempt failed `lease-lost-too-often`, its answer complete). The same for a complete
   * sent while the server restarted.
   */
  const settle = async (call: () => Promise<unknown>, retryForMs = 0): Promise<void> => {
    const until = Date.now() + retryForMs
    for (let delayMs = 200; ; delayMs = Math.min(delayMs * 2, 2_000)) {
      try {
        await call()
        return
      } catch (error) {
        if (error instanceof TurnsApiError && error.status === 409) return
        onError(error)
        const isTransient = !(error instanceof TurnsApiError) || error.status === 503
        if (!isTransient || Date.now() + delayMs > until || stopping.signal.aborted) return
        await pause(delayMs, stopping.signal)
      }
    }
  }

  const modelContext = (turn: Turn, doc: TurnSession['doc'], continueFrom: string): GenerateContext => {
    const messages = readMessages(doc)
    const window = promptContext(messages, readSummaries(doc), turn.messageId, {
      maxTokens: maxContextTokens,
      countTokens,
      maxMessageTokens: Math.max(1, Math.floor(maxContextTokens / 4)),
    })
    const prompt = messages.find((m) => m.id === turn.messageId)
    if (window === undefined || prompt === undefined) throw new Error(`message ${turn.messageId} is gone`)
    return {
      sessionId: turn.sessionId,
      prompt,
      messages: window.messages,
      ...(window.summary === undefined ? {} : { summary: window.summary }),
      ...(continueFrom.length > 0 ? { continueFrom } : {}),
    }
  }

  const answer = async ({ turn, lease: firstLease }: ClaimedTurn): Promise<void> => {
    emit({ type: 'claimed', turn })
    const abort = new AbortController()
    let stopReason: StopReason | undefined
    const stopWith = (reason: StopReason): void => {
      stopReason ??= reason
      abort.abort()
    }
    const onStopping = (): void => stopWith('stopping')
    stopping.signal.addEventListener('abort', onStopping, { once: true })
    if (stopping.signal.aborted) onStopping()

    // --- The lease: renewed every renewIntervalMs; lost locally once it ran out unrenewed. ---
    // The local end is a fence, kept short of the server's: counted from when the renew was sent
    // (the server grants later), less a quarter of the lease for the network and a late event
    // loop. Past it this worker writes nothing, so the server cannot have handed the turn to
    // another worker while this one still writes into the same answer.
    let leaseId = firstLease.id
    let leaseEndsAt = Date.now() + firstLease.ttlMs - leaseMarginMs(firstLease.ttlMs)
    let renewEveryMs = Math.max(50, firstLease.renewIntervalMs)
    let progress: { state: 'claimed' | 'streaming'; replyId?: string } = { state: 'claimed' }
    const renewOnce = async (): Promise<void> => {
      // A renew that hangs (a dead network path) must not outlast the lease: it is cut at the
      // lease's end, and the turn counts as lost.
      const cut = new AbortController()
      const sentAt = Date.now()
      const timer = setTimeout(() => cut.abort(), Math.max(0, leaseEndsAt - sentAt))
      try {
        const answer = await Promise.race([
          turns.renew(turn.id, { leaseId, ...progress }, cut.signal),
          new Promise<never>((_, reject) =>
            cut.signal.addEventListener('abort', () => reject(new Error('the renew outlasted the lease')), {
              once: true,
            }),
          ),
        ])
        if (answer.status === 'ok') {
          leaseId = answer.lease.id
          leaseEndsAt = sentAt + answer.lease.ttlMs - leaseMarginMs(answer.lease.ttlMs)
          renewEveryMs = Math.max(50, answer.lease.renewIntervalMs)
        } else stopWith(answer.status)
      } catch (error) {
        if (error instanceof TurnsApiError && error.status === 409) stopWith('lost')
        else if (error instanceof TurnsApiError && error.status === 404) stopWith('lost')
        else if (!cut.signal.aborted) onError(error)
      } finally {
        clearTimeout(timer)
      }
      if (Date.now() >= leaseEndsAt) stopWith('lost')
    }
    const renewing = (async () => {
      while (!abort.signal.aborted) {
        await pause(renewEveryMs, abort.signal)
        if (abort.signal.aborted) break
        await renewOnce()
      }
    })()

    /** Fails the turn with `retry`, under the lease held now, so another worker takes it on. */
    const giveBack = async (reasonText: string): Promise<void> => {
      await settle(() => turns.fail(turn.id, { leaseId, reason: 'worker-stopped', reasonText, retry: true }))
      emit({ type: 'released', turn, reason: 'worker-stopped' })
    }

    let held: Awaited<ReturnType<SessionOpener['acquire']>>
    try {
      held = await sessions.acquire(turn.sessionId)
    } catch (error) {
      onError(error)
      abort.abort()
      stopping.signal.removeEventListener('abort', onStopping)
      await renewing
      await giveBack('the worker stopped')
      return
    }
    const { session } = held
    const doc = session.doc
    let answerId: string | undefined
    let writer: StreamingWriter | undefined
    // Timers of the writer's coalescing: once the lease is lost they write nothing more.
    // Checked before every write, on the clock rather than by a timer: a busy event loop can run a
    // timer late, but never a write without passing here first.
    const isWritable = (): boolean => {
      if (stopReason !== 'lost' && Date.now() >= leaseEndsAt) stopWith('lost')
      return stopReason !== 'lost'
    }
    try {
      const synced = await bounded(
        session.whenSynced().then(() => true),
        syncTimeoutMs,
        abort.signal,
      )
      if (synced !== true) {
        if (stopReason === undefined || stopReason === 'stopping') {
          await settle(() =>
            turns.fail(turn.id, {
              leaseId,
              reason: 'session-unavailable',
              reasonText: 'the worker could not load the session in time',
              retry: true,
            }),
          )
          emit({ type: 'released', turn, reason: 'session-unavailable' })
        } else emit({ type: stopReason === 'cancelled' ? 'cancelled' : 'lost', turn })
        return
      }
      const prompt = readMessage(doc, turn.messageId)
      if (prompt === undefined) {
        await settle(() =>
          turns.fail(turn.id, {
            leaseId,
            reason: 'message-missing',
            reasonText: `the session has no message ${turn.messageId}`,
            retry: false,
          }),
        )
        emit({ type: 'failed', turn, reason: 'message-missing' })
        return
      }
      answerId = turn.replyId ?? answerIdOf(turn)
      const existing = readMessage(doc, answerId)
      if (existing !== undefined && (existing.status === 'complete' || existing.status === 'cancelled')) {
        // The last worker finished the answer but died before completing the turn.
        await bounded(session.whenFlushed(), flushTimeoutMs, abort.signal)
        if (!isWritable()) return
        await settle(
          () => turns.complete(turn.id, { leaseId, replyId: answerId as string }),
          firstLease.ttlMs,
        )
        emit({ type: 'completed', turn, answerId, status: existing.status })
        return
      }
      const continueFrom = existing?.content ?? ''
      const resumes = readResumes(existing)
      const isResume = existing !== undefined
      writer = openStreamingWriter(doc, {
        author,
        id: answerId,
        resume: true,
        metadata: {
          replyTo: turn.messageId,
          model: options.model.name,
          instanceId,
          turnId: turn.id,
          ...(isResume
            ? {
                resumes: [
                  ...resumes,
                  { at: Date.now(), offset: continueFrom.length, instanceId, attempt: turn.attempts },
                ],
              }
            : {}),
        },
        ...(options.coalesceMs === undefined ? {} : { coalesceMs: options.coalesceMs }),
        setTimer: (fn, ms) =>
          setTimeout(() => {
            if (isWritable()) fn()
          }, ms),
        clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      })
      const current = writer
      const offStop = current.onStop(() => abort.abort())
      progress = { state: 'streaming', replyId: answerId }
      void renewOnce()
      emit({
        type: 'streaming',
        turn,
        answerId,
        ...(isResume ? { resumedFrom: continueFrom.length } : {}),
      })
      const outcome = await callModel({
        model: options.model,
        context: () => modelContext(turn, doc, continueFrom),
        signal: abort.signal,
        timeouts,
        retry,
        onToken: (token) => {
          if (isWritable()) current.write(token)
        },
        onEvent: (event) => {
          if (!isWritable()) return
          current.flush()
          recordModelEvent(doc, current.id, event, author)
        },
        onRetry: ({ reason }) => onError(new Error(`${reason}; retrying`)),
      })
      offStop()
      if (!isWritable()) {
        emit({ type: 'lost', turn, answerId })
        return
      }
      if (stopReason === 'stopping') {
        // Make what was streamed durable, then give the turn back: another worker continues it.
        current.flush()
        await bounded(session.whenFlushed(), flushTimeoutMs)
        await giveBack('the worker stopped; another continues the answer')
        return
      }
      let status: string
      if (outcome.kind === 'complete') {
        current.end({ model: options.model.name, completionTokens: outcome.tokens })
        status = 'complete'
      } else if (outcome.kind === 'error') {
        onError(outcome.error)
        current.fail(outcome.reason)
        status = 'error'
      } else {
        // Cancelled: by a device in the document (the writer is closed) or through the server (renew).
        if (!current.isClosed) {
          current.flush()
          setMessageStatus(doc, current.id, 'cancelled')
        }
        current.end({ completionTokens: outcome.tokens })
        status = 'cancelled'
      }
      // Complete only once the answer is durable: a crash before this leaves the turn to another worker.
      const flushed = await bounded(
        session.whenFlushed().then(() => true),
        flushTimeoutMs,
        stopping.signal,
      )
      if (flushed !== true) {
        emit({ type: 'released', turn, reason: 'not-durable' })
        return
      }
      if (status === 'error') {
        await settle(() =>
          turns.fail(turn.id, {
            leaseId,
            reason: 'model-error',
            reasonText: outcome.kind === 'error' ? outcome.reason : 'the model failed',
            retry: false,
          }),
        )
        emit({ type: 'failed', turn, reason: 'model-error' })
        return
      }
      if (status === 'cancelled' && stopReason === undefined) {
        // Cancelled in the document: a device that cancelled through the server ends the turn
        // `cancelled` on this renew; one that only cancelled the answer leaves the turn to complete.
        await renewOnce()
        if (stopReason === 'lost') {
          emit({ type: 'lost', turn, answerId })
          return
        }
      }
      if (stopReason !== 'cancelled')
        await settle(() => turns.complete(turn.id, { leaseId, replyId: current.id }), firstLease.ttlMs)
      emit(
        status === 'cancelled'
          ? { type: 'cancelled', turn, answerId }
          : { type: 'completed', turn, answerId, status },
      )
    } catch (error) {
      onError(error)
      if (writer !== undefined && isWritable()) writer.flush()
      if (stopReason === undefined) {
        await settle(() =>
          turns.fail(turn.id, {
            leaseId,
            reason: 'worker-error',
            reasonText: error instanceof Error ? error.message : String(error),
            retry: true,
          }),
        )
      }
      emit({ type: 'released', turn, reason: 'worker-error' })
    } finally {
      abort.abort()
      stopping.signal.removeEventListener('abort', onStopping)
      await renewing
      await held.release()
    }
  }

  const start = (claimed: ClaimedTurn): void => {
    const key = claimed.turn.id
    const running = answer(claimed)
      .catch(onError)
      .finally(() => {
        active.delete(key)
        wakeClaimer?.()
      })
    active.set(key, running)
  }

  const claiming = (async () => {
    let backoffMs = 100
    while (!stopping.signal.aborted) {
      const free = concurrency - active.size
      if (free <= 0) {
        // The listener goes once a slot frees: one left per wait would pile up over a long run.
        const onStop = (): void => wakeClaimer?.()
        await new Promise<void>((resolve) => {
          wakeClaimer = resolve
          stopping.signal.addEventListener('abort', onStop, { once: true })
          if (stopping.signal.aborted) resolve()
        })
        stopping.signal.removeEventListener('abort', onStop)
        wakeClaimer = undefined
        continue
      }
      try {
        const claimed = await turns.claim(
          options.pool,
          { instanceId, max: free, waitMs: claimWaitMs, name },
          stopping.signal,
        )
        backoffMs = 100
        for (const turn of claimed) start(turn)
      } catch (error) {
        if (stopping.signal.aborted) break
        onError(error)
        // The server may be restarting: try again, less and less often (at most every 5 s).
        await pause(backoffMs, stopping.signal)
        backoffMs = Math.min(5_000, backoffMs * 2)
      }
    }
  })()

  return {
    instanceId,
    author,
    get active() {
      return active.size
    },
    on(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    async stop() {
      if (!stopping.signal.aborted) stopping.abort()
      wakeClaimer?.()
      await claiming
      await Promise.all([...active.values()])
      await sessions.close()
      await connection?.destroy()
    },
  }
}

function readResumes(message: MessageView | undefined): ResumeRecord[] {
  const value = message?.metadata.resumes
  return Array.isArray(value) ? (value as ResumeRecord[]) : []
}

/** How far short of the server's lease end a worker stops writing (see the lease fence in answer()). */
function leaseMarginMs(ttlMs: number): number {
  return Math.floor(ttlMs / 4)
}
