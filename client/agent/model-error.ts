// The errors a model call ends with, each with a reason a person understands and whether the agent
// may try again; plus the parsing of `Retry-After`. No I/O here.

/** Why a model call failed; the agent's retry and the reply's error text follow from it. */
export const ModelErrorCode = {
  /** The server answered with an HTTP error status (429 and 5xx are retryable). */
  Http: 'http',
  /** The connection could not be made (refused, DNS, …); retryable before the first token. */
  Unreachable: 'unreachable',
  /** The body ended without `[DONE]` or a finish reason. */
  StreamEndedEarly: 'stream-ended-early',
  /** The server closed or reset the connection in the middle of the body. */
  ConnectionReset: 'connection-reset',
  /** The server sent something that is not a chat-completions stream. */
  InvalidResponse: 'invalid-response',
  /** The server reported an error inside the stream. */
  ModelReported: 'model-reported',
} as const

/** One of {@link ModelErrorCode}'s values. */
export type ModelErrorCodeValue = (typeof ModelErrorCode)[keyof typeof ModelErrorCode]

/** Options of {@link ModelError}. */
export interface ModelErrorOptions {
  /** The HTTP status, for {@link ModelErrorCode.Http}. */
  readonly status?: number
  /** How long the server asked us to wait (from `Retry-After`), in ms. */
  readonly retryAfterMs?: number
  readonly cause?: unknown
}

/**
 * A failed model call. `message` is the text written into the reply's `error` field, so it speaks
 * to the person reading the conversation ("the model's stream ended early").
 */
export class ModelError extends Error {
  override readonly name = 'ModelError'
  readonly code: ModelErrorCodeValue
  readonly status: number | undefined
  readonly retryAfterMs: number | undefined

  constructor(code: ModelErrorCodeValue, message: string, options: ModelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.status = options.status
    this.retryAfterMs = options.retryAfterMs
  }

  /**
   * True when trying the same request again may succeed: HTTP 429, 5xx, or no connection at all.
   *
   * @remarks The agent only retries before the first token: a retry after text was shown would
   * write a second, different answer into the same reply.
   */
  get isRetryable(): boolean {
    if (this.code === ModelErrorCode.Unreachable) return true
    if (this.code !== ModelErrorCode.Http || this.status === undefined) return false
    return this.status === 429 || this.status >= 500
  }
}

/**
 * Parses an HTTP `Retry-After` value: delay-seconds (`"120"`) or an HTTP-date; returns ms ≥ 0, or
 * `undefined` when absent or unreadable. A date in the past gives 0.
 */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (text.length === 0) return undefined
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // An HTTP-date always names a weekday and a month; Date.parse alone accepts too much ("1.5").
  if (!/[a-z]{3}/i.test(text)) return undefined
  const at = Date.parse(text)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}
