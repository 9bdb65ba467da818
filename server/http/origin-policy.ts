// Which browsers may talk to the server: the `Host` header (DNS-rebinding protection) and the
// `Origin` header (cross-site pages), checked on every HTTP request and WebSocket upgrade, and
// the CORS answers for the origins an operator allowed. Pure: headers in, a verdict out.

import { isIP } from 'node:net'

/** Options of {@link createOriginPolicy}. */
export interface OriginPolicyOptions {
  /** The address the server listens on (`--host`). */
  readonly listenHost: string
  /** True without a secret: then any origin but the server's own, and any foreign Host, is refused. */
  readonly isAnonymous: boolean
  /** `--allowed-origins` (normalized `scheme://host[:port]`, or `*`); undefined: the default. */
  readonly allowedOrigins?: readonly string[]
  /** `--allowed-hosts` (lower-case host names, or `*`); undefined: the default. */
  readonly allowedHosts?: readonly string[]
}

/** The headers a verdict needs (lower-case names, as the router and transport copy them). */
export interface OriginHeaders {
  readonly host?: string | undefined
  readonly origin?: string | undefined
}

/** Decides on requests' `Host` and `Origin`. */
export interface OriginPolicy {
  /** Why the request is refused (for the log line), or undefined when it may proceed. */
  refusal(headers: OriginHeaders): string | undefined
  /**
   * The CORS headers for a response to an allowed cross-origin request (`Access-Control-Allow-
   * Origin` and `Vary`); empty for same-origin requests and origins allowed only by default.
   */
  corsHeaders(headers: OriginHeaders): Readonly<Record<string, string>>
  /** True when a browser's preflight (`OPTIONS`) from this origin gets a CORS answer. */
  isPreflightAllowed(headers: OriginHeaders): boolean
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'] as const
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]'])

/** The host name of a `Host` header (`name:port`, `[v6]:port`), lower-case, without the port. */
export function hostNameOf(host: string): string {
  const trimmed = host.trim().toLowerCase()
  if (trimmed.startsWith('[')) {
    const end = trimmed.indexOf(']')
    return end === -1 ? trimmed : trimmed.slice(1, end)
  }
  const colon = trimmed.lastIndexOf(':')
  // More than one colon without brackets: a bare IPv6 address (no port can be told apart).
  if (colon !== -1 && trimmed.indexOf(':') === colon) return trimmed.slice(0, colon)
  return trimmed
}

/** Creates the policy for one server. */
export function createOriginPolicy(options: OriginPolicyOptions): OriginPolicy {
  const listen = hostNameOf(options.listenHost)
  const hostNames = new Set<string>([listen, ...LOOPBACK_NAMES, ...(options.allowedHosts ?? [])])
  const isAnyHost =
    (options.allowedHosts ?? []).includes('*') || (options.allowedHosts === undefined && !options.isAnonymous)
  const isAnyIpLiteral = WILDCARD_HOSTS.has(options.listenHost)
  const listed = new Set(options.allowedOrigins ?? [])
  const isAnyOriginListed = listed.has('*')
  // With a secret and no list, tokens are the gate, as before: any origin may try.
  const isAnyOriginByDefault = options.allowedOrigins === undefined && !options.isAnonymous

  const hostRefusal = (host: string | undefined): string | undefined => {
    // Browsers always send Host: a request without one is not a page's.
    if (isAnyHost || host === undefined) return undefined
    const name = hostNameOf(host)
    if (hostNames.has(name)) return undefined
    // Rebinding needs a DNS name: an address literal is what the user typed.
    if (isAnyIpLiteral && isIP(name) !== 0) return undefined
    return `host ${JSON.stringify(host.slice(0, 200))} is not this server's (see --allowed-hosts)`
  }

  const isOwnOrigin = (origin: string, host: string | undefined): boolean => {
    if (host === undefined) return false
    try {
      const url = new URL(origin)
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === host.trim().toLowerCase()
    } catch {
      return false
    }
  }

  const isListed = (origin: string): boolean => isAnyOriginListed || listed.has(origin)

  return {
    refusal({ host, origin }) {
      const badHost = hostRefusal(host)
      if (badHost !== undefined) return badHost
      // No Origin: not a cross-site browser request (CLI, Node clients, same-origin GETs).
      if (origin === undefined) return undefined
      if (isOwnOrigin(origin, host) || isListed(origin) || isAnyOriginByDefault) return undefined
      return `origin ${JSON.stringify(origin.slice(0, 200))} is not allowed (see --allowed-origins)`
    },
    corsHeaders({ host, origin }) {
      if (origin === undefined || isOwnOrigin(origin, host) || !isListed(origin)) return {}
      return { 'access-control-allow-origin': origin, vary: 'Origin' }
    },
    isPreflightAllowed({ host, origin }) {
      return origin !== undefined && hostRefusal(host) === undefined && isListed(origin)
    },
  }
}
