// One model call as the agent makes it: timeouts (first token, between tokens, whole reply),
// retries with backoff for retryable failures before the first token, and an abort of the
// underlying request on every way out. Knows nothing of the document: tokens go to a callback.

import { type GenerateContext, isModelEvent, type Model, type ModelEvent } from './model.js'
import { ModelError } from './model-error.js'

/** Timeouts of a model call, in ms; each is also a sensible default for a hosted model. */
export interface ModelTimeouts {
  /** Longest wait for the first token of an attempt (default 60 s). */
  readonly firstTokenMs: number
  /** Longest wait between two tokens (default 30 s). */
  readonly betweenTokensMs: number
  /** Longest reply, from the first request to the last token (default 10 min). */
  readonly replyMs: number
}

/** Retries of a model call: only before the first token, only for retryable failures. */
export interface ModelRetryPolicy {
  /** Retries after the first attempt (default 3). */
  readonly retries: number
  /** Delay before the first retry; doubled for each further one (default 1 s). */
  readonly baseDelayMs: number
  /** Cap of the computed delay (default 30 s); a longer `Retry-After` is still honoured… */
  readonly maxDelayMs: number
  /** …up to this; a server asking for a longer wait ends the call (default 120 s). */
  readonly maxRetryAfterMs: number
}

/** The defaults of {@link ModelTimeouts}. */
export const DEFAULT_MODEL_TIMEOUTS: ModelTimeouts = {
  firstTokenMs: 60_000,
  betweenTokensMs: 30_000,
  replyMs: 600_000,
} as const

/** The defaults of {@link ModelRetryPolicy}. */
export const DEFAULT_MODEL_RETRY: ModelRetryPolicy = {
  retries: 3,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 120_000,
} as const

/** What a retry looks like to the agent's presence. */
export interface RetryNotice {
  /** 1 for the first retry. */
  readonly attempt: number
  readonly of: number
  readonly delayMs: number
  /** The failure being retried, as a person reads it. */
  readonly reason: string
}

/** How a model call ended. `tokens` counts what reached `onToken`. */
export type ModelCallOutcome =
  | { readonly kind: 'complete'; readonly tokens: number }
  | { readonly kind: 'aborted'; readonly tokens: number }
  | { readonly kind: 'error'; readonly reason: string; readonly error: unknown; readonly tokens: number }

/** Options of {@link callModel}. */
export interface CallModelOptions {
  readonly model: Model
  /** Built once per attempt, so a retry sees the document as it is then. */
  readonly context: () => GenerateContext
  /** The caller's stop: cancel, another peer closing the reply, shutdown. */
  readonly signal: AbortSignal
  readonly timeouts: ModelTimeouts
  readonly retry: ModelRetryPolicy
  readonly onToken: (token: string) => void
  /** Tool calls and results the model yields between tokens (they count as activity, not tokens). */
  readonly onEvent?: (event: ModelEvent) => void
  readonly onRetry?: (notice: RetryNotice) => void
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(2))} s`
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name
  return String(error)
}

/** Resolves after `ms`, or at once when `signal` aborts (the agent's and the demo model's waits too). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * Runs one model call to its end and says how it ended; never throws.
 *
 * @remarks
 * - Every attempt gets its own AbortController, aborted on every exit (end, error, timeout, the
 *   caller's signal), so an HTTP model closes its connection whatever happened. The iterator is
 *   raced against that abort: a model that ignores its signal cannot keep the agent waiting.
 * - Timeouts end the call `error` with a reason such as "the model sent nothing for 30 s".
 * - A {@link ModelError} with `isRetryable` before the first token is retried after
 *   max(backoff, `Retry-After`); after the first token nothing is retried.
 */
export async function callModel(options: CallModelOptions): Promise<ModelCallOutcome> {
  const { retry, signal } = options
  const startedAt = Date.now()
  let tokens = 0
  for (let attempt = 0; ; attempt++) {
    if (signal.aborted) return { kind: 'aborted', tokens }
    const result = await runAttempt(options, startedAt, (n) => {
      tokens = n
    })
    if (result.kind !== 'retryable') return result
    const error = result.error
    const backoff = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt)
    const retryAfter = error.retryAfterMs
    if (attempt >= retry.retries) {
      const reason = `${error.message} (after ${retry.retries} ${retry.retries === 1 ? 'retry' : 'retries'})`
      return { kind: 'error', reason, error, tokens }
    }
    if (retryAfter !== undefined && retryAfter > retry.maxRetryAfterMs) {
      const reason = `${error.message}; it asked to wait ${seconds(retryAfter)}, longer than the ${seconds(retry.maxRetryAfterMs)} this agent waits`
      return { kind: 'error', reason, error, tokens }
    }
    const delayMs = Math.max(backoff, retryAfter ?? 0)
    options.onRetry?.({ attempt: attempt + 1, of: retry.retries, delayMs, reason: error.message })
    await pause(delayMs, signal)
  }
}

type AttemptResult = ModelCallOutcome | { readonly kind: 'retryable'; readonly error: ModelError }

async function runAttempt(
  options: CallModelOptions,
  startedAt: number,
  setTokens: (tokens: number) => void,
): Promise<AttemptResult> {
  const { timeouts, signal } = options
  const abort = new AbortController()
  let stopReason: string | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let wake: (() => void) | undefined
  const stopped = new Promise<void>((resolve) => {
    wake = resolve
  })
  const stop = (reason: string | undefined): void => {
    if (abort.signal.aborted) return
    stopReason = reason
    clearTimeout(timer)
    abort.abort()
    wake?.()
  }
  const onOuterAbort = (): void => stop(undefined)
  signal.addEventListener('abort', onOuterAbort, { once: true })
  const arm = (ms: number, reason: string): void => {
    clearTimeout(timer)
    const left = timeouts.replyMs - (Date.now() - startedAt)
    if (left <= ms) {
      timer = setTimeout(
        () => stop(`the reply took longer than ${seconds(timeouts.replyMs)}`),
        Math.max(0, left),
      )
    } else {
      timer = setTimeout(() => stop(reason), ms)
    }
  }
  let tokens = 0
  let iterator: AsyncIterator<string | ModelEvent> | undefined
  try {
    arm(timeouts.firstTokenMs, `the model sent nothing for ${seconds(timeouts.firstTokenMs)}`)
    iterator = options.model.generate(options.context(), abort.signal)[Symbol.asyncIterator]()
    for (;;) {
      const next = await Promise.race([iterator.next(), stopped.then(() => undefined)])
      if (next === undefined || abort.signal.aborted) break
      if (next.done === true) {
        return { kind: 'complete', tokens }
      }
      const token = next.value
      if (isModelEvent(token)) {
        options.onEvent?.(token)
        arm(timeouts.betweenTokensMs, `the model sent nothing for ${seconds(timeouts.betweenTokensMs)}`)
        continue
      }
      if (typeof token !== 'string' || token.length === 0) continue
      tokens++
      setTokens(tokens)
      options.onToken(token)
      arm(timeouts.betweenTokensMs, `the model sent nothing for ${seconds(timeouts.betweenTokensMs)}`)
    }
  } catch (error) {
    if (!abort.signal.aborted) {
      if (tokens === 0 && error instanceof ModelError && error.isRetryable)
        return { kind: 'retryable', error }
      return { kind: 'error', reason: describe(error), error, tokens }
    }
  } finally {
    signal.removeEventListener('abort', onOuterAbort)
    clearTimeout(timer)
    // Abort on every way out: the normal end too, so nothing the model holds stays open.
    if (!abort.signal.aborted) abort.abort()
    // Not awaited: a model that ignores its signal may never settle its return().
    iterator?.return?.().catch(() => {})
  }
  if (stopReason !== undefined) {
    return { kind: 'error', reason: stopReason, error: new Error(stopReason), tokens }
  }
  return { kind: 'aborted', tokens }
}
