// The worker's (and a device's) client of the turns HTTP API (docs/agents.md "Pools and turns"):
// claim with a long poll, renew, complete, fail, and create/cancel/get for devices and tests. Uses
// the platform's fetch; each error answer becomes a TurnsApiError with the server's code.

import type {
  ClaimedTurn,
  ClaimResponse,
  CreateTurnRequest,
  CreateTurnResponse,
  PoolResponse,
  RenewRequest,
  RenewResponse,
  TurnResponse,
} from '../../../shared/turns/index.js'

/** An error answer of the turns API: the HTTP status and the server's code (shared/errors.ts). */
export class TurnsApiError extends Error {
  override readonly name = 'TurnsApiError'
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Options of {@link createTurnsClient}. */
export interface TurnsClientOptions {
  /** The server: `ws(s)://host:port` (as for the sync client) or `http(s)://host:port`. */
  readonly url: string
  /** A bearer token (a worker needs kind `agent`, role `write`, scope of every session). */
  readonly token?: string | (() => string | Promise<string>)
  readonly fetch?: typeof fetch
}

/** The turns API. Every call rejects with {@link TurnsApiError} on an error answer. */
export interface TurnsClient {
  /** Up to `max` turns of `pool`, waiting up to `waitMs` for the first (an empty list after that). */
  claim(
    pool: string,
    request: { instanceId: string; max: number; waitMs: number; name?: string },
    signal?: AbortSignal,
  ): Promise<readonly ClaimedTurn[]>
  renew(turnId: string, request: RenewRequest, signal?: AbortSignal): Promise<RenewResponse>
  complete(turnId: string, request: { leaseId: string; replyId?: string }): Promise<TurnResponse>
  fail(
    turnId: string,
    request: { leaseId: string; reason: string; reasonText?: string; retry?: boolean },
  ): Promise<TurnResponse>
  create(request: CreateTurnRequest): Promise<CreateTurnResponse>
  cancel(turnId: string, reasonText?: string): Promise<TurnResponse>
  get(turnId: string): Promise<TurnResponse>
  pool(pool: string): Promise<PoolResponse>
}

/** The HTTP base of a server given as a WebSocket or HTTP URL (path and query dropped). */
export function httpBase(url: string): string {
  const parsed = new URL(url)
  if (parsed.protocol === 'ws:') parsed.protocol = 'http:'
  else if (parsed.protocol === 'wss:') parsed.protocol = 'https:'
  return parsed.origin
}

/** Creates a turns API client. */
export function createTurnsClient(options: TurnsClientOptions): TurnsClient {
  const base = httpBase(options.url)
  const doFetch = options.fetch ?? fetch
  const tokenOf = async (): Promise<string | undefined> =>
    typeof options.token === 'function' ? await options.token() : options.token

  const call = async <T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> => {
    const token = await tokenOf()
    const headers: Record<string, string> = {}
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    const response = await doFetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal === undefined ? {} : { signal }),
    })
    const text = await response.text()
    let parsed: unknown
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text)
    } catch {
      parsed = undefined
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
      const code = typeof error?.code === 'string' ? error.code : `http-${response.status}`
      const message = typeof error?.message === 'string' ? error.message : text.slice(0, 200)
      throw new TurnsApiError(
        response.status,
        code,
        `${method} ${path}: ${response.status} ${code}: ${message}`,
      )
    }
    return parsed as T
  }
  const turnPath = (id: string, action?: string): string =>
    `/api/turns/${encodeURIComponent(id)}${action === undefined ? '' : `/${action}`}`

  return {
    async claim(pool, request, signal) {
      const answer = await call<ClaimResponse>(
        'POST',
        `/api/pools/${encodeURIComponent(pool)}/claim`,
        request,
        signal,
      )
      return answer.turns
    },
    renew: (turnId, request, signal) =>
      call<RenewResponse>('POST', turnPath(turnId, 'renew'), request, signal),
    complete: (turnId, request) => call<TurnResponse>('POST', turnPath(turnId, 'complete'), request),
    fail: (turnId, request) => call<TurnResponse>('POST', turnPath(turnId, 'fail'), request),
    create: (request) => call<CreateTurnResponse>('POST', '/api/turns', request),
    cancel: (turnId, reasonText) =>
      call<TurnResponse>('POST', turnPath(turnId, 'cancel'), reasonText === undefined ? {} : { reasonText }),
    get: (turnId) => call<TurnResponse>('GET', turnPath(turnId)),
    pool: (pool) => call<PoolResponse>('GET', `/api/pools/${encodeURIComponent(pool)}`),
  }
}
