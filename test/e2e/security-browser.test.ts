// Regression (issue #18, item 1) in a real browser: Debian's /usr/bin/chromium driven by
// playwright-core. A page on another origin (a second HTTP server on 127.0.0.1:0) tries `fetch`
// and `new WebSocket` against an anonymous server, and a DNS-rebinding page (chromium maps
// rebind.example to 127.0.0.1) uses the server's port under its own name: both are refused and
// nothing is read or written. The web app itself still works under its Content-Security-Policy,
// and moves a token given in its URL out of the address bar. Skipped only without chromium.

import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { buildWeb } from '../../web/build.js'
import { hasChromium, launchChromium } from '../helpers/chromium.js'

const WAIT = 20_000
const secret = 'security-browser-test-secret-0123456789'

let webDir: string
let anonymous: SyncServer
let guarded: SyncServer
let attacker: http.Server
let attackerPort: number
let browser: Browser

/** What the attacking page reports: one line per attempt. */
const ATTACK = (target: string) => `
  (async () => {
    const results = {}
    try {
      const response = await fetch('http://${target}/sessions')
      results.readList = 'status ' + response.status + ' ' + (await response.text()).slice(0, 80)
    } catch (error) {
      results.readList = 'blocked: ' + error.name
    }
    try {
      // text/plain needs no preflight: the browser sends it; only the server can refuse it.
      await fetch('http://${target}/sessions/planted/import', {
        method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' },
        body: '{"version":1}',
      })
      results.plant = 'sent'
    } catch (error) {
      results.plant = 'blocked: ' + error.name
    }
    results.socket = await new Promise((resolve) => {
      const socket = new WebSocket('ws://${target}/victim')
      socket.binaryType = 'arraybuffer'
      socket.onopen = () => { resolve('open'); socket.close() }
      socket.onerror = () => resolve('error')
      setTimeout(() => resolve('timeout'), 5000)
    })
    return results
  })()
`

describe.skipIf(!hasChromium)('browsers against an anonymous server', () => {
  beforeAll(async () => {
    webDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-security-web-'))
    await buildWeb({ outDir: webDir })
    const base = {
      ...DEFAULT_CONFIG,
      port: 0,
      store: 'memory' as const,
      compaction: false,
      logLevel: 'silent',
      webDir,
    }
    anonymous = await startSyncServer({ config: base })
    guarded = await startSyncServer({ config: { ...base, secret } })
    // A victim session with content the attacker would like to read.
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'private')
    await fetch(`http://127.0.0.1:${anonymous.port}/sessions/victim/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Y.encodeStateAsUpdate(doc),
    })
    attacker = http.createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' })
      response.end('<!doctype html><title>a page on the web</title><p>hello</p>')
    })
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve))
    attackerPort = (attacker.address() as AddressInfo).port
    // DNS rebinding, simulated: the attacker's name answers with the loopback address.
    browser = await launchChromium(WAIT, ['--host-resolver-rules=MAP rebind.example 127.0.0.1'])
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await anonymous?.close()
    await guarded?.close()
    await new Promise((resolve) => attacker?.close(resolve))
    if (webDir !== undefined) await rm(webDir, { recursive: true, force: true })
  })

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ acceptDownloads: true })
    context.setDefaultTimeout(WAIT)
    return context.newPage()
  }

  it('refuses a page on another origin: it reads nothing, plants nothing, opens no WebSocket', async () => {
    const page = await newPage()
    await page.goto(`http://127.0.0.1:${attackerPort}/`)
    const results = (await page.evaluate(ATTACK(`127.0.0.1:${anonymous.port}`))) as Record<string, string>
    expect(results.readList).toMatch(/^blocked/)
    expect(results.socket).toBe('error')
    expect((await anonymous.store.listSessions()).map((s) => s.sessionId)).toEqual(['victim'])
    await page.context().close()
  })

  it('refuses a DNS-rebinding page that reaches the server under its own name', async () => {
    const page = await newPage()
    // The rebinding page's origin is rebind.example on the server's port: same-origin to itself.
    const response = await page.goto(`http://rebind.example:${anonymous.port}/app/`)
    expect(response?.status()).toBe(403)
    const results = (await page.evaluate(ATTACK(`rebind.example:${anonymous.port}`))) as Record<
      string,
      string
    >
    expect(results.readList).toMatch(/^status 403 /)
    expect(results.readList).not.toContain('victim')
    expect(results.socket).toBe('error')
    expect((await anonymous.store.listSessions()).map((s) => s.sessionId)).toEqual(['victim'])
    await page.context().close()
  })

  it('serves its own web app, which works under its Content-Security-Policy', async () => {
    const page = await newPage()
    const violations: string[] = []
    page.on('console', (message) => {
      if (message.text().includes('Content Security Policy')) violations.push(message.text())
    })
    page.on('pageerror', (error) => violations.push(error.message))
    await page.goto(`http://127.0.0.1:${anonymous.port}/app/`)
    await page.locator('#new-session').fill('from-the-app')
    await page.getByRole('button', { name: 'Create' }).click()
    await page.locator('.connection[data-status="online"]').waitFor()
    await page.locator('#composer-input').fill('written under the policy')
    await page.locator('#composer-input').press('Enter')
    await page.locator('main .messages li.message', { hasText: 'written under the policy' }).waitFor()
    // History and export: HTTP calls to its own origin and a download, all allowed by the policy.
    await page.getByRole('button', { name: 'History' }).click()
    await page.locator('#history-seq:not([disabled])').waitFor()
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT }),
      page.getByRole('link', { name: 'Export JSON' }).click(),
    ])
    expect(download.suggestedFilename()).toMatch(/^from-the-app@\d+\.json$/)
    expect(violations).toEqual([])
    await page.context().close()
  })

  it('moves a token out of the page URL on load and keeps using it', async () => {
    const token = await mintToken({ secret, peerId: 'ops', role: 'admin', sessionPrefix: '' })
    const page = await newPage()
    const listed = page.waitForResponse((response) => new URL(response.url()).pathname === '/sessions')
    await page.goto(`http://127.0.0.1:${guarded.port}/app/?token=${token}#/`)
    // The app asked for the session list with the token, from sessionStorage.
    expect((await listed).status()).toBe(200)
    expect(page.url()).not.toContain('token=')
    expect(page.url()).toBe(`http://127.0.0.1:${guarded.port}/app/#/`)
    expect(await page.evaluate("sessionStorage.getItem('colloquy:token')")).toBe(token)
    // A reload (the URL has no token any more) still works: the tab kept it.
    const again = page.waitForResponse((response) => new URL(response.url()).pathname === '/sessions')
    await page.reload()
    expect((await again).status()).toBe(200)
    await page.context().close()
  })

  it('exports history with the token in a header, never in a link', async () => {
    const token = await mintToken({ secret, peerId: 'ops', role: 'admin', sessionPrefix: '' })
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'guarded')
    const imported = await fetch(`http://127.0.0.1:${guarded.port}/sessions/guarded-export/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: Y.encodeStateAsUpdate(doc),
    })
    expect(imported.status).toBe(201)
    const page = await newPage()
    await page.goto(`http://127.0.0.1:${guarded.port}/app/?token=${token}#/s/guarded-export`)
    await page.getByRole('button', { name: 'History' }).click()
    await page.locator('#history-seq:not([disabled])').waitFor()
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT }),
      page.getByRole('link', { name: 'Export JSON' }).click(),
    ])
    expect(download.suggestedFilename()).toMatch(/^guarded-export@\d+\.json$/)
    expect(await page.evaluate(`document.querySelectorAll('a[href*="token="]').length`)).toBe(0)
    expect(page.url()).not.toContain('token=')
    await page.context().close()
  })
})
