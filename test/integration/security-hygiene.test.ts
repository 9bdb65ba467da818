// Regression (issue #18, item 6): a secret of 16 spaces was accepted, tokens had no maximum
// lifetime, /app/ sent no Content-Security-Policy, X-Frame-Options or Referrer-Policy and served
// source maps, and /metrics was open to anyone. Each is checked the way an operator or an attacker
// meets it: the config parser and a real process for secrets, HTTP for the rest.

import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { estimateSecretBits } from '../../server/auth/secret-strength.js'
import { mintToken } from '../../server/auth/tokens.js'
import { ConfigError, DEFAULT_CONFIG, parseConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { upgradeStatus } from '../helpers/http.js'
import { nodeScript } from '../helpers/node-script.js'
import { withTimeout } from '../helpers/wait.js'

const strong = 'Zk3q9VxP2mWc8RtY5nBh7LdJ4sFg6HaE'
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-hygiene-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('a weak secret', () => {
  it('is refused at start-up: blank, short, repeated characters or low entropy', () => {
    const weak: Array<[string, RegExp]> = [
      [' '.repeat(16), /blank/],
      ['\t'.repeat(20), /blank/],
      ['short-Secret1', /shorter than 16/],
      ['a'.repeat(40), /repeats/],
      ['ab'.repeat(20), /repeats/],
      ['abc'.repeat(8), /entropy/],
      ['passwordpassword', /entropy/],
    ]
    for (const [secret, reason] of weak) {
      expect(() => parseConfig(['--secret', secret], {}), JSON.stringify(secret)).toThrow(reason)
      expect(() => parseConfig([], { COLLOQUY_SECRET: secret }), JSON.stringify(secret)).toThrow(ConfigError)
    }
    expect(parseConfig(['--secret', strong], {}).secret).toBe(strong)
    expect(estimateSecretBits(strong)).toBeGreaterThan(128)
  })

  it('is never echoed in the error', () => {
    const secret = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab'
    try {
      parseConfig(['--secret', secret], {})
      expect.unreachable()
    } catch (error) {
      expect(String(error)).not.toContain(secret)
    }
  })

  it('stops a real server process with exit code 2 and a clear message', async () => {
    const child = spawn(process.execPath, [...nodeScript('server/main.ts'), 'serve', '--port', '0'], {
      env: { ...process.env, COLLOQUY_SECRET: ' '.repeat(16) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode))),
      20_000,
      'server exits',
    ).finally(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    expect(code).toBe(2)
    expect(output).toContain('colloquy: COLLOQUY_SECRET is too weak: it is blank')
    expect(output).not.toContain('colloquy listening')
  })
})

describe('--secret-file', () => {
  it('reads the secret from the first line of a file (flag or COLLOQUY_SECRET_FILE)', async () => {
    const file = path.join(dir, 'secret')
    await writeFile(file, `${strong}\n`)
    expect(parseConfig(['--secret-file', file], {}).secret).toBe(strong)
    expect(parseConfig([], { COLLOQUY_SECRET_FILE: file }).secret).toBe(strong)
  })

  it('refuses a weak or missing file, and a secret given twice', async () => {
    const weak = path.join(dir, 'weak')
    await writeFile(weak, `${' '.repeat(20)}\n`)
    expect(() => parseConfig(['--secret-file', weak], {})).toThrow(/too weak: it is blank/)
    expect(() => parseConfig(['--secret-file', path.join(dir, 'missing')], {})).toThrow(
      /cannot read the secret file/,
    )
    const file = path.join(dir, 'twice')
    await writeFile(file, strong)
    expect(() => parseConfig(['--secret-file', file, '--secret', strong], {})).toThrow(/not both/)
  })
})

describe('the maximum token lifetime', () => {
  let server: SyncServer
  beforeAll(async () => {
    server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        store: 'memory',
        compaction: false,
        logLevel: 'silent',
        secret: strong,
        maxTokenLifetimeS: 3_600,
      },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('refuses a token valid for longer than the cap, on the upgrade and over HTTP', async () => {
    const url = `ws://127.0.0.1:${server.port}`
    const token = (ttlSeconds: number) =>
      mintToken({ secret: strong, peerId: 'p', role: 'admin', sessionPrefix: '', ttlSeconds })
    const tooLong = await token(30 * 24 * 3_600)
    expect(await upgradeStatus(`${url}/s?token=${tooLong}`)).toBe(401)
    const listed = await fetch(`http://127.0.0.1:${server.port}/sessions`, {
      headers: { authorization: `Bearer ${tooLong}` },
    })
    expect(listed.status).toBe(401)
    expect(((await listed.json()) as { error: { message: string } }).error.message).toContain('lifetime')
    expect(await upgradeStatus(`${url}/s?token=${await token(3_000)}`)).toBe(101)
  })

  it('defaults to 30 days, and 0 turns it off', () => {
    expect(parseConfig([], {}).maxTokenLifetimeS).toBe(30 * 24 * 3_600)
    expect(parseConfig(['--max-token-lifetime-s', '0'], {}).maxTokenLifetimeS).toBe(0)
  })
})

describe('the web app at /app/', () => {
  let server: SyncServer
  beforeAll(async () => {
    const webDir = path.join(dir, 'web')
    await rm(webDir, { recursive: true, force: true })
    await import('node:fs/promises').then((fs) => fs.mkdir(webDir, { recursive: true }))
    await writeFile(path.join(webDir, 'index.html'), '<!doctype html><title>app</title>')
    await writeFile(path.join(webDir, 'main-ABCDEFGH.js'), 'console.log(1)')
    await writeFile(path.join(webDir, 'main-ABCDEFGH.js.map'), '{"sources":["secret.ts"]}')
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', compaction: false, logLevel: 'silent', webDir },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('sends a Content-Security-Policy, frame and referrer policies, and nosniff', async () => {
    for (const file of ['', 'main-ABCDEFGH.js']) {
      const response = await fetch(`http://127.0.0.1:${server.port}/app/${file}`)
      expect(response.status).toBe(200)
      const csp = response.headers.get('content-security-policy') ?? ''
      expect(csp).toContain("default-src 'none'")
      expect(csp).toContain("script-src 'self'")
      expect(csp).toContain("frame-ancestors 'none'")
      expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${server.port}`)
      expect(response.headers.get('x-frame-options')).toBe('DENY')
      expect(response.headers.get('referrer-policy')).toBe('no-referrer')
      expect(response.headers.get('x-content-type-options')).toBe('nosniff')
    }
  })

  it('does not serve source maps', async () => {
    const response = await fetch(`http://127.0.0.1:${server.port}/app/main-ABCDEFGH.js.map`)
    expect(response.status).toBe(404)
    expect(await response.text()).not.toContain('secret.ts')
  })
})

describe('/metrics', () => {
  it('needs the metrics token when one is configured', async () => {
    const metricsToken = 'metrics-9f8e7d6c5b4a3210-XYZ'
    const server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        store: 'memory',
        compaction: false,
        logLevel: 'silent',
        metricsToken,
      },
    })
    try {
      const url = `http://127.0.0.1:${server.port}/metrics`
      expect((await fetch(url)).status).toBe(401)
      expect((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
      const scraped = await fetch(url, { headers: { authorization: `Bearer ${metricsToken}` } })
      expect(scraped.status).toBe(200)
      expect(await scraped.text()).toContain('colloquy_')
    } finally {
      await server.close()
    }
  })

  it('needs an admin token for every session on a server with a secret and no metrics token', async () => {
    const server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        store: 'memory',
        compaction: false,
        logLevel: 'silent',
        secret: strong,
      },
    })
    try {
      const url = `http://127.0.0.1:${server.port}/metrics`
      const bearer = async (
        scope: { sessionId?: string; sessionPrefix?: string },
        role: 'read' | 'admin',
      ) => ({
        authorization: `Bearer ${await mintToken({ secret: strong, peerId: 'ops', role, ...scope })}`,
      })
      expect((await fetch(url)).status).toBe(401)
      expect((await fetch(url, { headers: await bearer({ sessionId: 's' }, 'admin') })).status).toBe(403)
      expect((await fetch(url, { headers: await bearer({ sessionPrefix: '' }, 'read') })).status).toBe(403)
      expect((await fetch(url, { headers: await bearer({ sessionPrefix: '' }, 'admin') })).status).toBe(200)
    } finally {
      await server.close()
    }
  })
})
