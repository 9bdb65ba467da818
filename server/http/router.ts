// A small HTTP router over uWebSockets.js: method + path patterns with `:params`, async handlers
// (onAborted always attached), bounded request bodies, streamed responses that respect
// backpressure, JSON errors from the shared error table, and an authorization seam.

import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'

type UwsResponse = import('@trufflesuite/uws-js-unofficial').HttpResponse
type UwsRequest = import('@trufflesuite/uws-js-unofficial').HttpRequest

export type HttpMethod = 'GET' | 'POST' | 'DELETE'
/** What a route requires of the caller. */
export type Access = 'none' | 'read' | 'admin'

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
  readonly handler: (request: HttpRequest) => Promise<HttpResponse> | HttpResponse
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
) => ColloquyError | undefined | Promise<ColloquyError | undefined>

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
const HEADERS = ['content-type', 'accept', 'authorization', 'content-length'] as const

interface CompiledRoute {
  readonly route: Route
  readonly segments: readonly string[]
}

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
  /** Largest request body accepted (bytes). */
  readonly maxBodyBytes: number
}

/** The uWS handler for every HTTP request that is not a WebSocket upgrade. */
export type UwsHttpHandler = (res: UwsResponse, req: UwsRequest) => void

const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  302: 'Found',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  416: 'Range Not Satisfiable',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? ''}`.trim()
}

/** Builds the uWS handler that dispatches to `options.routes`. */
export function createRouter(options: RouterOptions): UwsHttpHandler {
  const { logger } = options
  const authorize = options.authorize ?? allowLoopback
  const compiled: CompiledRoute[] = options.routes.map((route) => ({
    route,
    segments: route.pattern.split('/').filter((segment) => segment.length > 0),
  }))

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
    const remote = Buffer.from(res.getRemoteAddressAsText()).toString()
    let isAborted = false
    const abortListeners = new Set<() => void>()
    res.onAborted(() => {
      isAborted = true
      for (const listener of abortListeners) listener()
      abortListeners.clear()
    })
    // The body must be subscribed to now (uWS delivers it only to a handler attached in this call).
    const body =
      method === 'POST'
        ? readBody(res, options.maxBodyBytes, abortListeners)
        : Promise.resolve(new Uint8Array(0))
    // A body nobody reads must not become an unhandled rejection.
    body.catch(() => undefined)

    const matched = matchRoute(
      compiled.map((entry) => entry.route),
      method,
      path,
    )
    const request: HttpRequest = {
      method: method as HttpMethod,
      path,
      params: matched !== undefined && 'route' in matched ? matched.params : {},
      query,
      headers,
      remote,
      body: () => body,
      get isAborted() {
        return isAborted
      },
    }

    const respond = async (): Promise<void> => {
      let response: HttpResponse
      try {
        if (matched === undefined) throw new ColloquyError('not-found', `no route for ${path}`)
        if ('methodNotAllowed' in matched) {
          response = {
            ...errorResponse(new ColloquyError('bad-request', `${method} not allowed on ${path}`)),
            status: 405,
          }
        } else {
          const refusal = await authorize(request, matched.route.access)
          if (refusal !== undefined) throw refusal
          response = await matched.route.handler(request)
        }
      } catch (error) {
        const err = toColloquyError(error)
        if (err.code === 'internal') logger.error({ err: error, path }, 'http handler failed')
        response = errorResponse(err)
      }
      if (isAborted) return
      await send(res, response, () => isAborted, abortListeners)
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

function readBody(res: UwsResponse, maxBytes: number, abortListeners: Set<() => void>): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = []
    let size = 0
    let isTooLarge = false
    abortListeners.add(() => reject(new ColloquyError('bad-request', 'request aborted')))
    res.onData((chunk, isLast) => {
      if (!isTooLarge) {
        size += chunk.byteLength
        if (size > maxBytes) isTooLarge = true
        // Copy: uWS reuses the chunk's memory once this callback returns.
        else chunks.push(new Uint8Array(chunk.slice(0)))
      }
      if (!isLast) return
      if (isTooLarge) {
        reject(new ColloquyError('bad-request', `request body over ${maxBytes} bytes`))
        return
      }
      const whole = new Uint8Array(size)
      let offset = 0
      for (const part of chunks) {
        whole.set(part, offset)
        offset += part.byteLength
      }
      resolve(whole)
    })
  })
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
      res.end(body)
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
  res.cork(() => res.end())
}
