// Serves the built web app (web/, built into `dist/web` by `npm run build:web`) at `/app/…` and
// redirects `/` there. Read-only over one directory: nothing outside it is ever opened, and source
// maps are not served. Every answer carries a Content-Security-Policy that lets the page load only
// its own files and talk only to its own server, and may not be framed.

import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import type { HttpRequest, HttpResponse, Route } from './router.js'

/** Options of {@link webRoutes}. */
export interface WebRoutesOptions {
  /** The directory of the built app (holds `index.html`). */
  readonly dir: string
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
}

/** Build outputs named `name-HASH.ext` (esbuild's `[name]-[hash]`) never change: cache them for good. */
const HASHED = /-[A-Z0-9]{8,}\.[a-z]+$/

/** The content type for a file name (exported for tests). */
export function contentTypeOf(fileName: string): string {
  return CONTENT_TYPES[path.extname(fileName).toLowerCase()] ?? 'application/octet-stream'
}

/**
 * Resolves `name` (one decoded path segment) inside `root`; undefined when it would leave it.
 *
 * @remarks A segment can still hold `..` or an encoded `/` (`%2F`), so the check is on the
 * resolved path, not on the input.
 */
export function resolveInside(root: string, name: string): string | undefined {
  if (name.length === 0 || name.includes('\0')) return undefined
  const base = path.resolve(root)
  const resolved = path.resolve(base, name)
  return resolved.startsWith(base + path.sep) ? resolved : undefined
}

/** Files never served even when the build left them there: source maps expose the source. */
const PRIVATE = /\.map$/i

/**
 * The Content-Security-Policy of the app served under `host` (the request's Host header): its own
 * scripts, styles and images only, WebSockets to its own server only, no plugins, no framing.
 */
export function contentSecurityPolicy(host: string | undefined): string {
  // Only a plain host[:port] goes into the policy (a Host header is the client's to write).
  const isPlain = host !== undefined && /^[A-Za-z0-9.:[\]-]{1,255}$/.test(host)
  const sockets = isPlain ? ` ws://${host} wss://${host}` : ''
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "manifest-src 'self'",
    `connect-src 'self'${sockets}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
}

/** Headers every answer under `/app/` carries. */
function securityHeaders(host: string | undefined): Record<string, string> {
  return {
    'content-security-policy': contentSecurityPolicy(host),
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'cross-origin-opener-policy': 'same-origin',
  }
}

function notFoundWith(message: string, host: string | undefined): HttpResponse {
  return {
    status: 404,
    headers: { ...securityHeaders(host), 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: JSON.stringify({ error: { code: 'not-found', message } }),
  }
}

async function serveFile(root: string, name: string, request: HttpRequest): Promise<HttpResponse> {
  const host = request.headers.host
  const notFound = (message: string) => notFoundWith(message, host)
  if (PRIVATE.test(name)) return notFound(`no file ${name}`)
  const file = resolveInside(root, name)
  if (file === undefined) return notFound(`no file ${name}`)
  const info = await stat(file).catch(() => undefined)
  if (info === undefined || !info.isFile()) {
    return name === 'index.html'
      ? notFound(`the web app is not built in ${root}: run npm run build:web`)
      : notFound(`no file ${name}`)
  }
  const body = new Uint8Array(await readFile(file))
  return {
    status: 200,
    headers: {
      ...securityHeaders(host),
      'content-type': contentTypeOf(name),
      // index.html names the hashed bundles: it must be revalidated so a new build is picked up.
      'cache-control': HASHED.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache',
    },
    body,
  }
}

/**
 * `GET /` → `302 /app/`; `GET /app` and `/app/` → `index.html`; `GET /app/<file>` → that file.
 *
 * @remarks The router matches whole segments, so `/app` and `/app/` are one route: index.html uses
 * absolute asset URLs (`/app/…`) and works at either. The app routes sessions in the URL hash, so
 * no other path needs to fall back to index.html.
 */
export function webRoutes(options: WebRoutesOptions): Route[] {
  const root = path.resolve(options.dir)
  return [
    {
      method: 'GET',
      pattern: '/',
      access: 'none',
      handler: () => ({
        status: 302,
        headers: { location: '/app/', 'content-type': 'text/plain' },
        body: '',
      }),
    },
    {
      // Browsers ask for /favicon.ico whatever the page links: answer with the app's icon.
      method: 'GET',
      pattern: '/favicon.ico',
      access: 'none',
      handler: (request) => serveFile(root, 'favicon.svg', request),
    },
    {
      method: 'GET',
      pattern: '/app',
      access: 'none',
      handler: (request) => serveFile(root, 'index.html', request),
    },
    {
      method: 'GET',
      pattern: '/app/:file',
      access: 'none',
      handler: (request) => serveFile(root, request.params.file ?? '', request),
    },
  ]
}
