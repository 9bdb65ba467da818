// A small HTTP router over uWebSockets.js: method + path patterns with `:params`, async handlers
// (onAborted always attached), streamed responses that respect backpressure, JSON errors from the
// shared error table, and an authorization seam. Hostile requests are cut short: Host and Origin
// are checked first, then the route and its body cap (Content-Length up front), then authorization,
// and only then is the body read (bounded while streaming, a bounded number at once). A refusal
// before the body is read closes the connection instead of draining what follows.

import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import { type ClientAddressOf, createClientAddressOf } from './client-address.js'
import type { OriginPolicy } from './origin-policy.js'

type UwsResponse = import('@trufflesuite/uws-js-unofficial').HttpResponse
type UwsRequest = import('@trufflesuite/uws-js-unofficial').HttpRequest

export type HttpMethod = 'GET' | 'POST' | 'DELETE' | 'OPTIONS'
/** What a route requires of the caller. */
export type Access = 'none' | 'read' | 'write' | 'admin'

/** A request as handlers see it: everything copied out of uWS before the callback returned. */
export interface HttpRequest {
  readonly method: HttpMethod
  readonly path: string
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** Lower-case header names; only the headers the router copies (see HEADERS). */
  readonly headers: Readonly<Record<string, string>>
  readonly remote: string
  /** The request body (empty for GET); rejects `bad-request` past the size bound. */
  body(): Promise<Uint8Array>
  /** True when the caller's grant covers `sessionId` (see {@link Grant}); always true without one. */
  inScope(sessionId: string): boolean
  /** Who the caller's token names, once authorized; undefined without tokens (loopback, anonymous). */
  readonly caller: Caller | undefined
  /** True once the client went away; long handlers may stop early. */
  readonly isAborted: boolean
}

/** A body: whole, or a stream of chunks written with backpressure. */
export type HttpBody = string | Uint8Array | AsyncIterable<string | Uint8Array>

/** What a handler returns. */
export interface HttpResponse {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body: HttpBody
}

export interface Route {
  readonly method: HttpMethod
  /** `/sessions/:id/state`: literal segments and `:name` segments (one segment each). */
  readonly pattern: string
  readonly access: Access
  /** True for a route that reads a body (up to the router's `maxBodyBytes`); others accept none. */
  readonly acceptsBody?: boolean
  /** A smaller body cap than the router's for this route (bytes). */
  readonly maxBodyBytes?: number
  /**
   * Every session the request names (default: the `:id` parameter): authorization checks each
   * against the caller's scope before the handler runs, fork targets included.
   */
  readonly sessionsNamed?: (request: HttpRequest) => readonly string[]
  readonly handler: (request: HttpRequest) => Promise<HttpResponse> | HttpResponse
}

/** The verified identity behind a request (from its token). */
export interface Caller {
  readonly peerId: string
  readonly kind: 'device' | 'agent'
  readonly role: 'read' | 'write' | 'admin'
  /** Set when the token covers every session starting with this (`""`: every session). */
  readonly sessionPrefix?: string
  /** The token's `tnt` claim: the tenant of the turns it creates. */
  readonly tenant?: string
  /** The token's `pri` claim: the best priority class of the turns it creates. */
  readonly bestPriority?: number
}

/** What an authorized caller may see: handlers that list sessions keep only those in scope. */
export interface Grant {
  inScope(sessionId: string): boolean
  /** Who the token names (handlers that need more than a role and a scope: the turn routes). */
  readonly caller?: Caller
}

/**
 * Decides whether a request may proceed; returns the error to answer with otherwise.
 *
 * @remarks The seam for authentication (JWT comes with its own issue). The default,
 * {@link allowLoopback}, lets everything through from the loopback interface and refuses `read`
 * and `admin` routes from anywhere else.
 */
export type Authorize = (
  request: HttpRequest,
  access: Access,
  sessions: readonly string[],
) => ColloquyError | Grant | undefined | Promise<ColloquyError | Grant | undefined>

const LOOPBACK =
  /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+|0000:0000:0000:0000:0000:0000:0000:0001|0000:0000:0000:0000:0000:ffff:7f\w\w:\w{4})$/i

/** The default {@link Authorize}: loopback may do anything; others only `none` routes. */
export const allowLoopback: Authorize = (request, access) => {
  if (access === 'none' || LOOPBACK.test(request.remote)) return undefined
  return new ColloquyError(
    'forbidden',
    'the history API answers only on the loopback interface until auth exists',
  )
}

/** Headers the router copies from each request. */
const HEADERS = [
  'content-type',
  'accept',
  'authorization',
  'content-length',
  'transfer-encoding',
  'host',
  'origin',
  'x-forwarded-for',
  'access-control-request-method',
] as const

/** Splits a path into segments, decoding each; undefined when a segment is not valid URI encoding. */
function splitPath(path: string): string[] | undefined {
  try {
    return path
      .split('/')
      .filter((segment) => segment.length > 0)
      .map(decodeURIComponent)
  } catch {
    return undefined
  }
}

/** Finds the route for `method` and `path` (pure; exported for tests). */
export function matchRoute(
  routes: readonly Route[],
  method: string,
  path: string,
): { route: Route; params: Record<string, string> } | { methodNotAllowed: true } | undefined {
  const segments = splitPath(path)
  if (segments === undefined) return undefined
  let isPathKnown = false
  for (const route of routes) {
    const pattern = route.pattern.split('/').filter((segment) => segment.length > 0)
    if (pattern.length !== segments.length) continue
    const params: Record<string, string> = {}
    let isMatch = true
    for (let i = 0; i < pattern.length; i++) {
      const expected = pattern[i]!
      const actual = segments[i]!
      if (expected.startsWith(':')) params[expected.slice(1)] = actual
      else if (expected !== actual) {
        isMatch = false
        break
      }
    }
    if (!isMatch) continue
    isPathKnown = true
    if (route.method === method) return { route, params }
  }
  return isPathKnown ? { methodNotAllowed: true } : undefined
}

/** A JSON error body in the shape every route uses: `{"error":{"code","message"}}`. */
export function errorResponse(error: ColloquyError): HttpResponse {
  return {
    status: error.info.httpStatus,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ error: { code: error.code, message: error.message } }),
  }
}

/** Options of {@link createRouter}. */
export interface RouterOptions {
  readonly routes: readonly Route[]
  readonly authorize?: Authorize
  readonly logger: Logger
  /** Largest request body accepted by a route that takes one (bytes). */
  readonly maxBodyBytes: number
  /**
   * Bodies read at once; more get 429 before a byte is read (0 or absent: no cap). Routes whose
   * own cap is at most 64 KiB are not counted.
   */
  readonly maxConcurrentUploads?: number
  /** Host and Origin checks and CORS answers (absent: every Host and Origin pass, no CORS). */
  readonly originPolicy?: OriginPolicy
  /** The client address from the socket's and `X-Forwarded-For` (absent: the socket's). */
  readonly clientAddressOf?: ClientAddressOf
}

/**
 * Bytes of body kept while authorization runs. The socket is paused meanwhile, but uWS still
 * delivers what it read along with the headers (up to its 512 KiB receive buffer): more than that
 * means a client that ignores the pause.
 */
const PRE_AUTH_BODY_BYTES = 1024 * 1024

/** Bodies capped at most this are not counted against `maxConcurrentUploads` (bytes). */
const SMALL_BODY_BYTES = 64 * 1024

/** The uWS handler for every HTTP request that is not a WebSocket upgrade. */
export type UwsHttpHandler = (res: UwsResponse, req: UwsRequest) => void

const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  302: 'Found',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  416: 'Range Not Satisfiable',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
}

function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? ''}`.trim()
}

/** An error answered with a status of its own (the shared table has no 405, 413 or 204). */
interface Refusal {
  readonly status: number
  readonly error: ColloquyError
}

function refusalResponse({ status, error }: Refusal): HttpResponse {
  return { ...errorResponse(error), status }
}

/** Builds the uWS handler that dispatches to `options.routes`. */
export function createRouter(options: RouterOptions): UwsHttpHandler {
  const { logger, originPolicy } = options
  const authorize = options.authorize ?? allowLoopback
  const clientAddressOf = options.clientAddressOf ?? createClientAddressOf([])
  const maxUploads = options.maxConcurrentUploads ?? 0
  let uploads = 0

  return (res, req) => {
    // Everything is read before returning: uWS request objects die with this callback.
    const method = req.getMethod().toUpperCase()
    const path = req.getUrl()
    const query = new URLSearchParams(req.getQuery() ?? '')
    const headers: Record<string, string> = {}
    for (const name of HEADERS) {
      const value = req.getHeader(name)
      if (value.length > 0) headers[name] = value
    }
    const remote = clientAddressOf(
      Buffer.from(res.getRemoteAddressAsText()).toString(),
      headers['x-forwarded-for'],
    )
    let isAborted = false
    const abortListeners = new Set<() => void>()
    res.onAborted(() => {
      isAborted = true
      for (const listener of abortListeners) listener()
      abortListeners.clear()
    })
    const lengthHeader = headers['content-length']
    const contentLength =
      lengthHeader === undefined ? 0 : /^\d{1,15}$/.test(lengthHeader) ? Number(lengthHeader) : Number.NaN
    const hasBody = contentLength !== 0 || headers['transfer-encoding'] !== undefined
    const logRefusal = (status: number, reason: string): void => {
      // Unknown paths and methods are everyday noise (favicon.ico, probes); refusals are not.
      const level = status === 404 || status === 405 ? 'debug' : 'warn'
      logger[level](
        {
          remote,
          method,
          path: path.slice(0, 200),
          status,
          host: headers.host,
          origin: headers.origin,
          reason,
        },
        'http request refused',
      )
    }
    /** Answers at once; with a body announced the connection is closed rather than drained. */
    const refuseNow = (refusal: Refusal): void => {
      logRefusal(refusal.status, refusal.error.message)
      const response = refusalResponse(refusal)
      res.cork(() => {
        res.writeStatus(statusLine(response.status))
        for (const [name, value] of Object.entries(response.headers ?? {})) res.writeHeader(name, value)
        res.end(response.body as string, hasBody)
      })
    }

    const originRefusal = originPolicy?.refusal(headers)
    if (originRefusal !== undefined) {
      refuseNow({ status: 403, error: new ColloquyError('forbidden', originRefusal) })
      return
    }
    if (method === 'OPTIONS') {
      if (originPolicy?.isPreflightAllowed(headers) !== true) {
        refuseNow({
          status: 403,
          error: new ColloquyError('forbidden', 'cross-origin requests from this origin are not allowed'),
        })
        return
      }
      res.cork(() => {
        res.writeStatus(statusLine(204))
        for (const [name, value] of Object.entries(originPolicy.corsHeaders(headers)))
          res.writeHeader(name, value)
        res.writeHeader('access-control-allow-methods', 'GET, POST, DELETE')
        res.writeHeader('access-control-allow-headers', 'authorization, content-type')
        res.writeHeader('access-control-max-age', '600')
        res.end(undefined, hasBody)
      })
      return
    }
    const matched = matchRoute(options.routes, method, path)
    if (matched === undefined) {
      refuseNow({ status: 404, error: new ColloquyError('not-found', `no route for ${path}`) })
      return
    }
    if ('methodNotAllowed' in matched) {
      refuseNow({ status: 405, error: new ColloquyError('bad-request', `${method} not allowed on ${path}`) })
      return
    }
    const { route } = matched
    const maxBytes =
      route.acceptsBody === true
        ? Math.min(options.maxBodyBytes, route.maxBodyBytes ?? Number.POSITIVE_INFINITY)
        : 0
    if (Number.isNaN(contentLength)) {
      refuseNow({ status: 400, error: new ColloquyError('bad-request', 'invalid Content-Length') })
      return
    }
    if (contentLength > maxBytes || (hasBody && maxBytes === 0)) {
      refuseNow({
        status: 413,
        error: new ColloquyError('bad-request', `request body over ${maxBytes} bytes`),
      })
      return
    }

    // The body must be subscribed to now (uWS delivers it only to a handler attached in this
    // call), but it is not read until the caller is authorized: the socket is paused meanwhile.
    const body = method === 'POST' || hasBody ? createBodyReader(res, maxBytes, abortListeners) : undefined
    if (body !== undefined && hasBody) res.pause()
    let grant: Grant | undefined
    const request: HttpRequest = {
      method: method as HttpMethod,
      path,
      params: matched.params,
      query,
      headers,
      remote,
      body: () => body?.promise ?? Promise.resolve(new Uint8Array(0)),
      inScope: (sessionId) => grant === undefined || grant.inScope(sessionId),
      get caller() {
        return grant?.caller
      },
      get isAborted() {
        return isAborted
      },
    }

    let isUploading = false
    const releaseUpload = (): void => {
      if (!isUploading) return
      isUploading = false
      uploads--
    }
    abortListeners.add(releaseUpload)
    const respond = async (): Promise<void> => {
      let response: HttpResponse
      try {
        const named =
          route.sessionsNamed?.(request) ?? (matched.params.id === undefined ? [] : [matched.params.id])
        const verdict = await authorize(request, route.access, named)
        if (verdict instanceof ColloquyError) {
          logRefusal(verdict.info.httpStatus, verdict.message)
          throw verdict
        }
        grant = verdict
        if (isAborted) return
        if (body !== undefined && hasBody) {
          // A route with a small cap (the turns API: 16 KiB) holds little more than its headers:
          // not counted, so a burst of small requests never meets the uploads' bound.
          if (maxBytes > SMALL_BODY_BYTES) {
            if (maxUploads > 0 && uploads >= maxUploads) {
              logRefusal(429, 'too many uploads at once')
              throw new ColloquyError('too-many-connections', `more than ${maxUploads} uploads at once`)
            }
            uploads++
            isUploading = true
            void body.promise.then(releaseUpload, releaseUpload)
          }
          body.start()
          res.resume()
        }
        response = await route.handler(request)
      } catch (error) {
        const err = toColloquyError(error)
        if (err.code === 'internal') logger.error({ err: error, path }, 'http handler failed')
        if (body?.isTooLarge === true) logRefusal(413, err.message)
        response =
          body?.isTooLarge === true ? refusalResponse({ status: 413, error: err }) : errorResponse(err)
      }
      releaseUpload()
      if (isAborted) return
      if (originPolicy !== undefined) {
        response = { ...response, headers: { ...response.headers, ...originPolicy.corsHeaders(headers) } }
      }
      // A body not read to its end must not be drained: close the connection after answering.
      await send(res, response, () => isAborted, abortListeners, hasBody && body?.isComplete !== true)
    }
    respond().catch((error: unknown) => {
      logger.error({ err: error, path }, 'http response failed')
      if (!isAborted) {
        isAborted = true
        res.close()
      }
    })
  }
}

/** A request body read on demand (see {@link createBodyReader}). */
interface BodyReader {
  readonly promise: Promise<Uint8Array>
  /** Marks the caller authorized: from here the body may grow up to the route's cap. */
  start(): void
  readonly isComplete: boolean
  readonly isTooLarge: boolean
}

/**
 * Subscribes to a request body. Until {@link BodyReader.start}, at most PRE_AUTH_BODY_BYTES are
 * kept (what arrived with the headers; the socket is paused); past that the connection is cut.
 * Past `maxBytes` the promise rejects at once and nothing more is kept.
 */
function createBodyReader(res: UwsResponse, maxBytes: number, abortListeners: Set<() => void>): BodyReader {
  const chunks: Uint8Array[] = []
  let size = 0
  let isStarted = false
  let isSettled = false
  let isComplete = false
  let isTooLarge = false
  let resolve: (body: Uint8Array) => void = () => undefined
  let reject: (error: ColloquyError) => void = () => undefined
  const promise = new Promise<Uint8Array>((onResolve, onReject) => {
    resolve = onResolve
    reject = onReject
  })
  // A body nobody reads must not become an unhandled rejection.
  promise.catch(() => undefined)
  const fail = (error: ColloquyError): void => {
    if (isSettled) return
    isSettled = true
    chunks.length = 0
    reject(error)
  }
  abortListeners.add(() => fail(new ColloquyError('bad-request', 'request aborted')))
  res.onData((chunk, isLast) => {
    if (isSettled) return
    size += chunk.byteLength
    if (size > maxBytes) {
      isTooLarge = true
      fail(new ColloquyError('bad-request', `request body over ${maxBytes} bytes`))
      return
    }
    if (!isStarted && size > PRE_AUTH_BODY_BYTES) {
      // Paused, yet still sending: never keep an unauthorized body.
      fail(new ColloquyError('bad-request', 'request body sent before authorization'))
      res.close()
      return
    }
    // Copy: uWS reuses the chunk's memory once this callback returns.
    if (chunk.byteLength > 0) chunks.push(new Uint8Array(chunk.slice(0)))
    if (!isLast) return
    isSettled = true
    isComplete = true
    const whole = new Uint8Array(size)
    let offset = 0
    for (const part of chunks) {
      whole.set(part, offset)
      offset += part.byteLength
    }
    chunks.length = 0
    resolve(whole)
  })
  return {
    promise,
    start() {
      isStarted = true
    },
    get isComplete() {
      return isComplete
    },
    get isTooLarge() {
      return isTooLarge
    },
  }
}

function isStream(body: HttpBody): body is AsyncIterable<string | Uint8Array> {
  return typeof body !== 'string' && !(body instanceof Uint8Array)
}

/**
 * Writes a response. A streamed body goes out chunk by chunk; when uWS reports backpressure
 * (write returned false: the chunk is buffered, the socket is full) we wait for onWritable before
 * pulling the next chunk, so a slow reader holds at most one chunk beyond the socket buffer.
 */
async function send(
  res: UwsResponse,
  response: HttpResponse,
  isAborted: () => boolean,
  abortListeners: Set<() => void>,
  closeConnection = false,
): Promise<void> {
  const headers = { 'content-type': 'application/json', ...response.headers }
  const writeHead = (): void => {
    res.writeStatus(statusLine(response.status))
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value)
  }
  const { body } = response
  if (!isStream(body)) {
    res.cork(() => {
      writeHead()
      res.end(body, closeConnection)
    })
    return
  }
  res.cork(writeHead)
  const iterator = body[Symbol.asyncIterator]()
  try {
    for (;;) {
      const next = await iterator.next()
      if (isAborted()) return
      if (next.done === true) break
      let isWritable = true
      res.cork(() => {
        isWritable = res.write(next.value)
      })
      if (!isWritable) {
        await new Promise<void>((resolve) => {
          abortListeners.add(resolve)
          res.onWritable(() => {
            abortListeners.delete(resolve)
            resolve()
            return true
          })
        })
        if (isAborted()) return
      }
    }
  } catch (error) {
    // Headers are gone already: the only honest signal left is to cut the connection.
    if (!isAborted()) res.close()
    throw error
  } finally {
    await iterator.return?.()
  }
  res.cork(() => res.end(undefined, closeConnection))
}
