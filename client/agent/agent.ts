// The agent SDK: joins a session as a Yjs peer, answers user messages by streaming a model's tokens
// into the conversation, shows its state through awareness, claims each message before answering
// (one answer per message whatever the number of agents), ends every reply honestly (timeouts,
// model failures, aborts) and marks replies whose writer is gone as interrupted.

import type * as Y from 'yjs'
import {
  type Author,
  addSummary,
  approximateTokens,
  type ClaimView,
  compareClaims,
  createAbsenceClock,
  judgeReplies,
  type MessageView,
  markInterrupted,
  newId,
  observeMessages,
  openStreamingWriter,
  presentWriters as presentWritersOf,
  readClaims,
  readMessages,
  readSummaries,
  releaseClaim,
  setMessageStatus,
  touchParticipant,
  truncateContent,
  writeClaim,
} from '../../shared/conversation/index.js'
import type { Connection } from '../connection.js'
import { createSyncClient, type SyncClient, type SyncClientOptions } from '../sync-client.js'
import { promptContext, unansweredPrompts } from './conversation-view.js'
import type { GenerateContext, Model } from './model.js'
import {
  callModel,
  DEFAULT_MODEL_RETRY,
  DEFAULT_MODEL_TIMEOUTS,
  type ModelRetryPolicy,
  type ModelTimeouts,
  pause,
} from './model-call.js'
import { planSummary, summaryContext } from './summarizer.js'
import { recordModelEvent } from './tool-messages.js'

/** What the agent is doing, published in its awareness state. */
export type AgentState = 'idle' | 'thinking' | 'waiting' | 'streaming'

/** The awareness state an agent publishes. */
export interface AgentPresence {
  readonly user: Author
  /** This run of the agent: how other agents tell a live writer from a dead one of the same name. */
  readonly instanceId: string
  readonly state: AgentState
  /** The reply being written. */
  readonly messageId?: string
  /** What a person should read ("waiting for the model, retry 2 of 3"). */
  readonly detail?: string
  readonly retry?: { readonly attempt: number; readonly of: number }
}

/** The reason written on a reply whose writer stopped before finishing it. */
export { INTERRUPTED_REASON } from '../../shared/conversation/index.js'

/** Options of {@link joinSession}. */
export interface JoinSessionOptions {
  /** The server's base URL: the agent opens a socket of its own. Give this or `connection`. */
  readonly url?: string
  /**
   * A multiplexed connection to join through instead (client/connection.ts): many agents, one
   * socket. `token` then becomes this session's token on it; `WebSocket` is the connection's.
   */
  readonly connection?: Connection
  readonly sessionId: string
  /** A fixed token, or a provider called before every (re)connect. */
  readonly token?: string | (() => string | Promise<string>)
  /** Display name. */
  readonly name: string
  /** Stable peer id (the author of its replies). Default `agent:<name>`. */
  readonly id?: string
  /**
   * This run's id, written into its claims and replies (default: a new random id). Pass the same
   * value after a restart only if no other process can be using it.
   */
  readonly instanceId?: string
  readonly model: Model
  readonly WebSocket?: SyncClientOptions['WebSocket']
  readonly offlineCache?: SyncClientOptions['offlineCache']
  /** Token budget of the context given to the model (default 8,000). */
  readonly maxContextTokens?: number
  /** A message longer than this enters the context cut in the middle (default a quarter of the budget). */
  readonly maxMessageTokens?: number
  /** Token counter for the context budget (default: about four characters a token). */
  readonly countTokens?: (text: string) => number
  /** Write summaries through the model when the conversation outgrows the budget (default true). */
  readonly summarize?: boolean
  /** Coalescing window of the streaming writer in ms (default the writer's). */
  readonly coalesceMs?: number
  /** Answer the user messages that have no reply yet when the agent joins (default true). */
  readonly answerBacklog?: boolean
  /** Model timeouts in ms (defaults: 60 s to the first token, 30 s between tokens, 10 min a reply). */
  readonly timeouts?: Partial<ModelTimeouts>
  /** Retries before the first token for 429, 5xx and unreachable servers (default 3, from 1 s, doubling). */
  readonly retry?: Partial<ModelRetryPolicy>
  /** Lease of a claim in ms, renewed every third of it while the agent works (default 15 s). */
  readonly leaseMs?: number
  /** How long a writer must be absent from presence before its reply counts as dead (default 10 s). */
  readonly writerGraceMs?: number
  /** Wait after a claim is durable before checking who won, for concurrent claims to arrive (default 300 ms). */
  readonly claimSettleMs?: number
  /** How long leave() waits for the server's durable ack before closing anyway (default 10 s). */
  readonly leaveFlushTimeoutMs?: number
  /** Called with each error the agent survives (a model that throws, …). */
  readonly onError?: (error: unknown) => void
}

/** A running agent. */
export interface Agent {
  readonly id: string
  readonly instanceId: string
  readonly author: Author
  readonly client: SyncClient
  readonly doc: Y.Doc
  readonly state: AgentState
  /** Called on every state change. Returns an unsubscribe function. */
  onState(listener: (state: AgentState, messageId: string | undefined, detail?: string) => void): () => void
  /** Resolves once no reply is in progress and none is waiting. */
  whenIdle(): Promise<void>
  /** Stops the current reply (ends it `cancelled`), aborts the model request, waits for durability, and leaves. */
  leave(): Promise<void>
}

/** The agent's sync client: a handle on the given connection, or a socket of its own. */
function openClient(options: JoinSessionOptions): SyncClient {
  const { token, connection } = options
  if (connection !== undefined) {
    return connection.open(options.sessionId, {
      ...(options.offlineCache === undefined ? {} : { offlineCache: options.offlineCache }),
      ...(token === undefined ? {} : { token }),
    })
  }
  if (options.url === undefined) throw new Error('joinSession needs a url or a connection')
  return createSyncClient({
    url: options.url,
    sessionId: options.sessionId,
    ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
    ...(options.offlineCache === undefined ? {} : { offlineCache: options.offlineCache }),
    ...(token === undefined ? {} : { token: typeof token === 'string' ? () => token : token }),
  })
}

/**
 * Waits for the client's first sync. A refusal that stops the client (status `error`: a forbidden
 * session on a shared connection, a 44xx close) rejects instead of waiting forever; the client is
 * destroyed then.
 */
async function syncedOrRefused(client: SyncClient): Promise<void> {
  let off: () => void = () => {}
  const refused = new Promise<never>((_, reject) => {
    off = client.on('status', (event) => {
      if (event.status === 'error')
        reject(new Error(`cannot join ${client.sessionId}: ${event.reason ?? 'refused'}`))
    })
  })
  try {
    await Promise.race([client.whenSynced(), refused])
  } catch (error) {
    await client.destroy()
    throw error
  } finally {
    off()
  }
}

/** Joins a session as an agent; resolves once synced (rejects if refused) and listening. */
export async function joinSession(options: JoinSessionOptions): Promise<Agent> {
  const id = options.id ?? `agent:${options.name}`
  const instanceId = options.instanceId ?? newId()
  const author: Author = { id, kind: 'agent', name: options.name }
  const client = openClient(options)
  const doc = client.doc
  const maxContextTokens = options.maxContextTokens ?? 8_000
  const maxMessageTokens = options.maxMessageTokens ?? Math.max(1, Math.floor(maxContextTokens / 4))
  const countTokens = options.countTokens ?? approximateTokens
  const onError = options.onError ?? (() => {})
  const timeouts: ModelTimeouts = { ...DEFAULT_MODEL_TIMEOUTS, ...options.timeouts }
  const retry: ModelRetryPolicy = { ...DEFAULT_MODEL_RETRY, ...options.retry }
  const leaseMs = options.leaseMs ?? 15_000
  const graceMs = options.writerGraceMs ?? 10_000
  const settleMs = options.claimSettleMs ?? 300
  const isSummarizing = options.summarize ?? true

  let state: AgentState = 'idle'
  let isLeaving = false
  const leaving = new AbortController()
  let currentAbort: AbortController | undefined
  let currentReplyId: string | undefined
  const stateListeners = new Set<
    (state: AgentState, messageId: string | undefined, detail?: string) => void
  >()
  const idleWaiters: (() => void)[] = []
  /** Prompts this instance holds a claim on (renewed by the ticker). */
  const held = new Map<string, { replyId?: string }>()
  /** Prompts never to answer (the backlog, when answerBacklog is false). */
  const skipped = new Set<string>()
  /** Since when (local clock) each writer key has been missing from presence. */
  const absence = createAbsenceClock(graceMs)
  let isWorking = false
  let isRerunRequested = false

  const setState = (next: AgentState, messageId?: string, extra: Partial<AgentPresence> = {}): void => {
    state = next
    const presence: AgentPresence = {
      user: author,
      instanceId,
      state,
      ...(messageId === undefined ? {} : { messageId }),
      ...extra,
    }
    client.awareness.setLocalState(presence)
    for (const listener of stateListeners) listener(state, messageId, extra.detail)
  }

  // --- Liveness: who is present, and whose claims and replies are dead (shared/conversation/liveness.ts). ---

  const presentWriters = (): Set<string> => presentWritersOf(client.awareness.getStates(), doc.clientID)

  /** A claim is live while its lease runs or its instance is present; ours always is while held. */
  const isClaimLive = (claim: ClaimView, present: ReadonlySet<string>, now: number): boolean => {
    if (claim.instanceId === instanceId) return held.has(claim.promptId)
    // Absence is tracked from the first look, whether or not the lease has run out yet.
    const isAbsent = absence.isGone(`instance:${claim.instanceId}`, present, now)
    return !(isAbsent && claim.expiresAt < now)
  }

  /** Marks replies whose writer is gone as interrupted; touches ours only when provably dead. */
  const sweep = (): void => {
    if (!client.isSynced || isLeaving) return
    const { dead } = judgeReplies(doc, {
      present: presentWriters(),
      absence,
      now: Date.now(),
      self: { instanceId, ...(currentReplyId === undefined ? {} : { currentReplyId }) },
    })
    if (dead.length > 0) markInterrupted(doc, dead, { selfInstanceId: instanceId })
    if (!isWorking && nextPrompt() !== undefined) void work()
  }

  const renew = (): void => {
    const expiresAt = Date.now() + leaseMs
    for (const [promptId, { replyId }] of held) {
      writeClaim(doc, {
        promptId,
        instanceId,
        agent: author,
        expiresAt,
        ...(replyId === undefined ? {} : { replyId }),
      })
    }
  }

  // --- Choosing and claiming the next message. ---

  const nextPrompt = (): MessageView | undefined => {
    if (isLeaving) return undefined
    const now = Date.now()
    const present = presentWriters()
    for (const prompt of unansweredPrompts(readMessages(doc))) {
      if (skipped.has(prompt.id)) continue
      const others = readClaims(doc, prompt.id).filter((c) => c.instanceId !== instanceId)
      if (others.some((claim) => isClaimLive(claim, present, now))) continue
      return prompt
    }
    return undefined
  }

  /** Claims `promptId`; true when, once durable and settled, ours is the first live claim. */
  const claim = async (promptId: string): Promise<boolean> => {
    held.set(promptId, {})
    writeClaim(doc, { promptId, instanceId, agent: author, expiresAt: Date.now() + leaseMs })
    // Durable first (bounded: offline, the claim waits in the offline cache), then the settle time.
    const bound = new AbortController()
    const onLeaving = (): void => bound.abort()
    leaving.signal.addEventListener('abort', onLeaving, { once: true })
    await Promise.race([client.whenFlushed(), pause(leaseMs, bound.signal)])
    bound.abort()
    leaving.signal.removeEventListener('abort', onLeaving)
    await pause(settleMs, leaving.signal)
    const now = Date.now()
    const present = presentWriters()
    const live = readClaims(doc, promptId)
      .filter((c) => isClaimLive(c, present, now))
      .sort(compareClaims)
    const isAnswered = !unansweredPrompts(readMessages(doc)).some((m) => m.id === promptId)
    if (isLeaving || isAnswered || live[0]?.instanceId !== instanceId) {
      held.delete(promptId)
      releaseClaim(doc, promptId, instanceId)
      return false
    }
    return true
  }

  // --- Answering. ---

  const modelContext = (promptId: string): GenerateContext => {
    const messages = readMessages(doc)
    const window = promptContext(messages, readSummaries(doc), promptId, {
      maxTokens: maxContextTokens,
      countTokens,
      maxMessageTokens,
    })
    const prompt = messages.find((m) => m.id === promptId)
    if (window === undefined || prompt === undefined) throw new Error(`message ${promptId} is gone`)
    return {
      sessionId: options.sessionId,
      prompt,
      messages: window.messages,
      ...(window.summary === undefined ? {} : { summary: window.summary }),
    }
  }

  /** Writes summaries (through the model) until what no summary covers fits the threshold; bounded. */
  const summarizeBefore = async (
    prompt: MessageView,
    replyId: string,
    signal: AbortSignal,
  ): Promise<void> => {
    if (!isSummarizing) return
    const policy = {
      summarizeAtTokens: Math.floor(maxContextTokens * 0.75),
      keepRecentTokens: Math.floor(maxContextTokens / 2),
      maxInputTokens: maxContextTokens - maxMessageTokens,
      maxMessageTokens,
      countTokens,
    }
    for (let round = 0; round < 10 && !signal.aborted; round++) {
      const plan = planSummary(readMessages(doc), readSummaries(doc), prompt.index, policy)
      if (plan === undefined) return
      setState('thinking', replyId, { detail: 'summarising the earlier conversation' })
      let text = ''
      const outcome = await callModel({
        model: options.model,
        context: () => summaryContext(options.sessionId, plan, author),
        signal,
        timeouts,
        retry,
        onToken: (t) => {
          text += t
        },
      })
      if (outcome.kind !== 'complete' || text.trim().length === 0) {
        if (outcome.kind === 'error') onError(new Error(`summary not written: ${outcome.reason}`))
        return
      }
      const summary = truncateContent(text.trim(), maxMessageTokens, countTokens)
      addSummary(doc, {
        coversThroughId: plan.coversThroughId,
        text: summary,
        author,
        tokens: countTokens(summary),
      })
    }
  }

  const answer = async (promptId: string): Promise<void> => {
    const prompt = readMessages(doc).find((m) => m.id === promptId)
    if (prompt === undefined) return
    const writer = openStreamingWriter(doc, {
      author,
      metadata: { replyTo: prompt.id, model: options.model.name, instanceId },
      ...(options.coalesceMs === undefined ? {} : { coalesceMs: options.coalesceMs }),
    })
    currentReplyId = writer.id
    held.set(promptId, { replyId: writer.id })
    renew()
    const abort = new AbortController()
    currentAbort = abort
    // Any way the reply stops being ours (cancel, another peer closing it) aborts the model request.
    const offStop = writer.onStop(() => abort.abort())
    const onLeave = (): void => abort.abort()
    leaving.signal.addEventListener('abort', onLeave, { once: true })
    if (leaving.signal.aborted) abort.abort()
    setState('thinking', writer.id)
    try {
      await summarizeBefore(prompt, writer.id, abort.signal)
      if (!abort.signal.aborted) setState('thinking', writer.id)
      let tokens = 0
      const outcome = await callModel({
        model: options.model,
        context: () => modelContext(promptId),
        signal: abort.signal,
        timeouts,
        retry,
        onToken: (token) => {
          if (tokens === 0) setState('streaming', writer.id)
          tokens++
          writer.write(token)
        },
        onEvent: (event) => {
          writer.flush()
          recordModelEvent(doc, writer.id, event, author)
        },
        onRetry: ({ attempt, of, delayMs, reason }) => {
          onError(new Error(`${reason}; retry ${attempt} of ${of} in ${delayMs} ms`))
          setState('waiting', writer.id, {
            detail: `waiting for the model, retry ${attempt} of ${of}`,
            retry: { attempt, of },
          })
        },
      })
      switch (outcome.kind) {
        case 'complete':
          writer.end({ model: options.model.name, completionTokens: outcome.tokens })
          break
        case 'error':
          onError(outcome.error)
          writer.fail(outcome.reason)
          break
        case 'aborted':
          if (writer.isClosed) {
            // Cancelled or closed by another peer: keep its status, record what was generated.
            writer.end({ completionTokens: outcome.tokens })
          } else {
            // Stopped by leave(): recorded as a cancel by the agent itself.
            writer.flush()
            setMessageStatus(doc, writer.id, 'cancelled')
            writer.end({ completionTokens: outcome.tokens })
          }
          break
      }
    } catch (error) {
      onError(error)
      writer.fail(error)
    } finally {
      offStop()
      leaving.signal.removeEventListener('abort', onLeave)
      currentAbort = undefined
      currentReplyId = undefined
      held.delete(promptId)
      releaseClaim(doc, promptId, instanceId)
      setState('idle')
    }
  }

  const work = async (): Promise<void> => {
    if (isWorking) {
      isRerunRequested = true
      return
    }
    isWorking = true
    try {
      for (;;) {
        isRerunRequested = false
        const next = nextPrompt()
        if (next === undefined) {
          if (isRerunRequested) continue
          break
        }
        try {
          if (await claim(next.id)) await answer(next.id)
        } catch (error) {
          onError(error)
        }
      }
    } finally {
      isWorking = false
      for (const resolve of idleWaiters.splice(0)) resolve()
    }
  }

  await syncedOrRefused(client)
  touchParticipant(doc, author)
  if (!(options.answerBacklog ?? true)) {
    for (const prompt of unansweredPrompts(readMessages(doc))) skipped.add(prompt.id)
  }

  let seenCount = readMessages(doc).length
  const unobserve = observeMessages(doc, (messages) => {
    if (messages.length === seenCount) return
    seenCount = messages.length
    if (!isLeaving) void work()
  })
  const offSynced = client.on('synced', () => {
    // Presence was rebuilt from scratch: absence counts again from now.
    absence.reset()
    void work()
  })
  const tick = Math.max(20, Math.floor(Math.min(leaseMs, graceMs > 0 ? graceMs : leaseMs) / 3))
  const ticker = setInterval(() => {
    renew()
    sweep()
  }, tick)

  setState('idle')
  sweep()
  void work()

  return {
    id,
    instanceId,
    author,
    client,
    doc,
    get state() {
      return state
    },
    onState(listener) {
      stateListeners.add(listener)
      return () => stateListeners.delete(listener)
    },
    whenIdle() {
      if (!isWorking && nextPrompt() === undefined) return Promise.resolve()
      return new Promise((resolve) => idleWaiters.push(resolve))
    },
    async leave() {
      if (isLeaving) return
      isLeaving = true
      clearInterval(ticker)
      leaving.abort()
      currentAbort?.abort()
      if (isWorking) await new Promise<void>((resolve) => idleWaiters.push(resolve))
      for (const promptId of [...held.keys()]) releaseClaim(doc, promptId, instanceId)
      held.clear()
      unobserve()
      offSynced()
      client.awareness.setLocalState(null)
      // Wait (bounded) for the last reply to be durable; offline, the offline cache keeps it.
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        client.whenFlushed(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, options.leaveFlushTimeoutMs ?? 10_000)
        }),
      ])
      clearTimeout(timer)
      await client.destroy()
    },
  }
}
