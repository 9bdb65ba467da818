// The agent SDK: joins a session as a Yjs peer, answers user messages by streaming a model's tokens
// into the conversation, shows its state through awareness, stops when any device cancels, and
// after a crash marks the reply it left unfinished.

import type * as Y from 'yjs'
import {
  type Author,
  approximateTokens,
  contextWindow,
  type MessageView,
  observeMessages,
  openStreamingWriter,
  readMessages,
  setMessageStatus,
  touchParticipant,
} from '../../shared/conversation/index.js'
import { createSyncClient, type SyncClient, type SyncClientOptions } from '../sync-client.js'
import type { GenerateContext, Model } from './model.js'

/** What the agent is doing, published in its awareness state. */
export type AgentState = 'idle' | 'thinking' | 'streaming'

/** The awareness state an agent publishes. */
export interface AgentPresence {
  readonly user: Author
  readonly state: AgentState
  readonly messageId?: string
}

/** The reason written on a reply the agent left `streaming` when it stopped unexpectedly. */
export const INTERRUPTED_REASON = 'interrupted: the agent stopped before finishing this reply'

/** Options of {@link joinSession}. */
export interface JoinSessionOptions {
  readonly url: string
  readonly sessionId: string
  /** A fixed token, or a provider called before every (re)connect. */
  readonly token?: string | (() => string | Promise<string>)
  /** Display name. */
  readonly name: string
  /** Stable peer id; it is how a restarted agent finds its own unfinished replies. Default `agent:<name>`. */
  readonly id?: string
  readonly model: Model
  readonly WebSocket?: SyncClientOptions['WebSocket']
  readonly offlineCache?: SyncClientOptions['offlineCache']
  /** Token budget of the context given to the model (default 8,000). */
  readonly maxContextTokens?: number
  /** Token counter for the context budget (default: about four characters a token). */
  readonly countTokens?: (text: string) => number
  /** Coalescing window of the streaming writer in ms (default the writer's). */
  readonly coalesceMs?: number
  /** Answer the newest user message if it has no reply yet when the agent joins (default true). */
  readonly answerBacklog?: boolean
  /** How long leave() waits for the server's durable ack before closing anyway (default 10 s). */
  readonly leaveFlushTimeoutMs?: number
  /** Called with each error the agent survives (a model that throws, …). */
  readonly onError?: (error: unknown) => void
}

/** A running agent. */
export interface Agent {
  readonly id: string
  readonly author: Author
  readonly client: SyncClient
  readonly doc: Y.Doc
  readonly state: AgentState
  /** Called on every state change. Returns an unsubscribe function. */
  onState(listener: (state: AgentState, messageId: string | undefined) => void): () => void
  /** Resolves once no reply is in progress and none is queued. */
  whenIdle(): Promise<void>
  /** Stops the current reply (ends it `cancelled`), waits for it to be durable, and leaves. */
  leave(): Promise<void>
}

/** Joins a session as an agent; resolves once synced and listening. */
export async function joinSession(options: JoinSessionOptions): Promise<Agent> {
  const id = options.id ?? `agent:${options.name}`
  const author: Author = { id, kind: 'agent', name: options.name }
  const { token } = options
  const client = createSyncClient({
    url: options.url,
    sessionId: options.sessionId,
    ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
    ...(options.offlineCache === undefined ? {} : { offlineCache: options.offlineCache }),
    ...(token === undefined ? {} : { token: typeof token === 'string' ? () => token : token }),
  })
  const doc = client.doc
  const maxContextTokens = options.maxContextTokens ?? 8_000
  const countTokens = options.countTokens ?? approximateTokens
  const onError = options.onError ?? (() => {})

  let state: AgentState = 'idle'
  let currentAbort: AbortController | undefined
  let isLeaving = false
  const stateListeners = new Set<(state: AgentState, messageId: string | undefined) => void>()
  const idleWaiters: (() => void)[] = []
  const queue: string[] = []
  const seen = new Set<string>()
  let isWorking = false

  const setState = (next: AgentState, messageId?: string): void => {
    state = next
    const presence: AgentPresence =
      messageId === undefined ? { user: author, state } : { user: author, state, messageId }
    client.awareness.setLocalState(presence)
    for (const listener of stateListeners) listener(state, messageId)
  }

  await client.whenSynced()

  // A reply of ours still `streaming` was cut off by a crash: say so instead of leaving it open.
  for (const message of readMessages(doc)) {
    if (message.author.id === id && message.status === 'streaming') {
      setMessageStatus(doc, message.id, 'error', { error: INTERRUPTED_REASON })
    }
  }
  touchParticipant(doc, author)

  const isAnswered = (prompt: MessageView, messages: readonly MessageView[]): boolean =>
    messages.some((m) => m.metadata.replyTo === prompt.id)

  const initial = readMessages(doc)
  for (const message of initial) seen.add(message.id)
  if (options.answerBacklog ?? true) {
    const newestUser = [...initial].reverse().find((m) => m.role === 'user')
    if (newestUser !== undefined && !isAnswered(newestUser, initial)) queue.push(newestUser.id)
  }

  const reply = async (promptId: string): Promise<void> => {
    const all = readMessages(doc)
    const prompt = all.find((m) => m.id === promptId)
    if (prompt === undefined || isAnswered(prompt, all)) return
    const window = contextWindow(doc, { maxTokens: maxContextTokens, countTokens })
    const messages = window.messages.filter((m) => m.index <= prompt.index)
    const context: GenerateContext = {
      sessionId: options.sessionId,
      prompt,
      messages,
      ...(window.summary === undefined ? {} : { summary: window.summary }),
    }
    const writer = openStreamingWriter(doc, {
      author,
      metadata: { replyTo: prompt.id, model: options.model.name },
      ...(options.coalesceMs === undefined ? {} : { coalesceMs: options.coalesceMs }),
    })
    const abort = new AbortController()
    currentAbort = abort
    const offCancel = writer.onCancel(() => abort.abort())
    setState('thinking', writer.id)
    let tokens = 0
    try {
      for await (const token of options.model.generate(context, abort.signal)) {
        if (abort.signal.aborted || writer.isClosed) break
        if (tokens === 0) setState('streaming', writer.id)
        writer.write(token)
        tokens++
      }
      if (abort.signal.aborted && !writer.isCancelRequested) {
        // Stopped by leave(): record it as a cancel by the agent itself.
        writer.flush()
        setMessageStatus(doc, writer.id, 'cancelled')
      } else {
        writer.end({ model: options.model.name, completionTokens: tokens })
      }
    } catch (error) {
      if (abort.signal.aborted) {
        if (!writer.isClosed) writer.end()
      } else {
        onError(error)
        writer.fail(error)
      }
    } finally {
      offCancel()
      currentAbort = undefined
      setState('idle')
    }
  }

  const work = async (): Promise<void> => {
    if (isWorking) return
    isWorking = true
    try {
      while (queue.length > 0 && !isLeaving) {
        const next = queue.shift()!
        try {
          await reply(next)
        } catch (error) {
          onError(error)
        }
      }
    } finally {
      isWorking = false
      if (queue.length === 0 || isLeaving) {
        for (const resolve of idleWaiters.splice(0)) resolve()
      }
    }
  }

  const unobserve = observeMessages(doc, (messages) => {
    let hasNew = false
    for (const message of messages) {
      if (seen.has(message.id)) continue
      seen.add(message.id)
      if (message.role === 'user' && !isLeaving) {
        queue.push(message.id)
        hasNew = true
      }
    }
    if (hasNew) void work()
  })

  setState('idle')
  void work()

  return {
    id,
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
      if (!isWorking && queue.length === 0) return Promise.resolve()
      return new Promise((resolve) => idleWaiters.push(resolve))
    },
    async leave() {
      isLeaving = true
      queue.length = 0
      currentAbort?.abort()
      if (isWorking) await new Promise<void>((resolve) => idleWaiters.push(resolve))
      unobserve()
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
