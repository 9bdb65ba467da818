// Regression (issue #18, item 1): in anonymous mode any web page could use the server. Driven as
// an attacker would, over raw sockets with forged Origin and Host headers: a page on another
// origin, and a DNS-rebinding page (Host: rebind.example) are refused on the WebSocket upgrade and
// on the HTTP API, with 403 and a log line; the server's own origin and clients that send no
// Origin (CLI, Node) pass; origins an operator allows get CORS answers.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG, parseConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { rawExchange, requestHead, upgradeHeaders } from '../helpers/raw-http.js'
import { capturingLogger } from '../helpers/test-server.js'

describe('an anonymous server', () => {
  let server: SyncServer
  let own: string
  const log = capturingLogger()

  beforeAll(async () => {
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', compaction: false },
      logger: log.logger,
    })
    own = `127.0.0.1:${server.port}`
  })
  afterAll(async () => {
    await server.close()
  })

  const upgrade = (session: string, host: string, extra: Record<string, string> = {}) =>
    rawExchange(server.port, requestHead('GET', `/${session}`, upgradeHeaders(host, extra)))

  it('refuses a WebSocket upgrade from another origin with 403 and logs it, before loading the session', async () => {
    for (const origin of [
      'http://evil.example',
      'http://127.0.0.1:1',
      'null',
      `https://${own}.evil.example`,
    ]) {
      expect((await upgrade('victim', own, { origin })).status).toBe(403)
    }
    expect(server.registry.get('victim')).toBeUndefined()
    expect(log.lines.some((line) => line.includes('upgrade refused') && line.includes('evil.example'))).toBe(
      true,
    )
  })

  it('refuses a DNS-rebinding page (a foreign Host) on the upgrade and on every HTTP route', async () => {
    const rebound = `rebind.example:${server.port}`
    expect((await upgrade('victim', rebound, { origin: `http://${rebound}` })).status).toBe(403)
    expect((await upgrade('victim', rebound)).status).toBe(403)
    for (const target of ['/sessions', '/sessions/victim', '/metrics', '/app/']) {
      const answer = await rawExchange(server.port, requestHead('GET', target, { host: rebound }))
      expect(answer.status, target).toBe(403)
      expect(answer.body, target).not.toContain('"sessions"')
    }
    expect(
      log.lines.some((line) => line.includes('http request refused') && line.includes('rebind.example')),
    ).toBe(true)
  })

  it('refuses a cross-origin text/plain import (no preflight needed) without creating the session', async () => {
    const body = Buffer.from('{"anything":1}')
    const answer = await rawExchange(
      server.port,
      requestHead('POST', '/sessions/planted/import', {
        host: own,
        origin: 'http://evil.example',
        'content-type': 'text/plain',
        'content-length': body.byteLength,
      }),
      body,
    )
    expect(answer.status).toBe(403)
    expect(await server.store.listSessions()).toEqual([])
    // Nor does a preflight let a foreign origin in.
    const preflight = await rawExchange(
      server.port,
      requestHead('OPTIONS', '/sessions/planted/import', {
        host: own,
        origin: 'http://evil.example',
        'access-control-request-method': 'POST',
      }),
    )
    expect(preflight.status).toBe(403)
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined()
  })

  it("lets the server's own origin, its loopback names, and clients without an Origin through", async () => {
    expect((await upgrade('mine', own, { origin: `http://${own}` })).status).toBe(101)
    expect(
      (await upgrade('mine', `localhost:${server.port}`, { origin: `http://localhost:${server.port}` }))
        .status,
    ).toBe(101)
    expect((await upgrade('mine', own)).status).toBe(101)
    const listed = await rawExchange(server.port, requestHead('GET', '/sessions', { host: own }))
    expect(listed.status).toBe(200)
    const sameOrigin = await rawExchange(
      server.port,
      requestHead('GET', '/sessions', {
        host: `localhost:${server.port}`,
        origin: `http://localhost:${server.port}`,
      }),
    )
    expect(sameOrigin.status).toBe(200)
    // Same origin: no CORS header is needed, none is sent.
    expect(sameOrigin.headers['access-control-allow-origin']).toBeUndefined()
  })
})

describe('an anonymous server with --allowed-origins and --allowed-hosts', () => {
  let server: SyncServer
  beforeAll(async () => {
    const config = parseConfig(
      ['--allowed-origins', 'https://app.example.com', '--allowed-hosts', 'colloquy.internal'],
      {},
    )
    server = await startSyncServer({
      config: { ...config, port: 0, store: 'memory', compaction: false, logLevel: 'silent' },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('admits the listed origin on the upgrade and answers its preflight and requests with CORS headers', async () => {
    const host = `127.0.0.1:${server.port}`
    const origin = 'https://app.example.com'
    const upgraded = await rawExchange(
      server.port,
      requestHead('GET', '/shared', upgradeHeaders(host, { origin })),
    )
    expect(upgraded.status).toBe(101)
    const preflight = await rawExchange(
      server.port,
      requestHead('OPTIONS', '/sessions', { host, origin, 'access-control-request-method': 'GET' }),
    )
    expect(preflight.status).toBe(204)
    expect(preflight.headers['access-control-allow-origin']).toBe(origin)
    expect(preflight.headers['access-control-allow-headers']).toContain('authorization')
    const listed = await rawExchange(server.port, requestHead('GET', '/sessions', { host, origin }))
    expect(listed.status).toBe(200)
    expect(listed.headers['access-control-allow-origin']).toBe(origin)
    // Another origin still gets nothing.
    const other = await rawExchange(
      server.port,
      requestHead('GET', '/sessions', { host, origin: 'https://evil.example' }),
    )
    expect(other.status).toBe(403)
  })

  it('reads both settings from the environment too, and refuses what is not an origin', () => {
    const config = parseConfig([], {
      ALLOWED_ORIGINS: 'https://app.example.com/, http://localhost:3000',
      ALLOWED_HOSTS: 'Colloquy.Internal',
    })
    expect(config.allowedOrigins).toEqual(['https://app.example.com', 'http://localhost:3000'])
    expect(config.allowedHosts).toEqual(['colloquy.internal'])
    expect(() => parseConfig(['--allowed-origins', 'app.example.com'], {})).toThrow(/not an origin/)
    expect(() => parseConfig(['--allowed-origins', 'ftp://app.example.com'], {})).toThrow(/not an http/)
  })

  it('accepts a configured host name and still refuses any other', async () => {
    const named = await rawExchange(
      server.port,
      requestHead('GET', '/healthz', { host: `colloquy.internal:${server.port}` }),
    )
    expect(named.status).toBe(200)
    const other = await rawExchange(
      server.port,
      requestHead('GET', '/healthz', { host: `rebind.example:${server.port}` }),
    )
    expect(other.status).toBe(403)
  })
})

describe('a server with a secret', () => {
  it('leaves origins to tokens by default, and checks them once --allowed-origins is given', async () => {
    const secret = 'security-origin-test-secret-0123456789'
    const open = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', compaction: false, logLevel: 'silent', secret },
    })
    const strict = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        store: 'memory',
        compaction: false,
        logLevel: 'silent',
        secret,
        allowedOrigins: ['https://app.example.com'],
      },
    })
    try {
      // Without a token the answer is 401 (the origin passed); with the origin refused it is 403.
      const upgradeFrom = (port: number, origin: string) =>
        rawExchange(port, requestHead('GET', '/s', upgradeHeaders(`127.0.0.1:${port}`, { origin })))
      expect((await upgradeFrom(open.port, 'https://elsewhere.example')).status).toBe(401)
      expect((await upgradeFrom(strict.port, 'https://elsewhere.example')).status).toBe(403)
      expect((await upgradeFrom(strict.port, 'https://app.example.com')).status).toBe(401)
    } finally {
      await open.close()
      await strict.close()
    }
  })
})
