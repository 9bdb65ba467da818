// The web app's session list in a real browser: every previewed session is live over ONE
// multiplexed WebSocket (/hocuspocus), and a row follows a streaming answer token by token.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { appendMessage, openStreamingWriter } from '../../shared/conversation/index.js'
import { buildWeb } from '../../web/build.js'
import { hasChromium, launchChromium } from '../helpers/chromium.js'
import { withTimeout } from '../helpers/wait.js'

const WAIT = 20_000
const AGENT = { id: 'agent:live', kind: 'agent' as const, name: 'live' }
const ZOE = { id: 'device:zoe', kind: 'device' as const, name: 'Zoe' }

let server: SyncServer
let browser: Browser
let dataDir: string
let webDir: string
const writers: SyncClient[] = []

async function writerOf(sessionId: string): Promise<SyncClient> {
  const client = createNodeSyncClient({ url: `ws://127.0.0.1:${server.port}`, sessionId })
  writers.push(client)
  await withTimeout(client.whenSynced(), WAIT, 'writer synced')
  return client
}

describe.skipIf(!hasChromium)('the session list, live over one socket', () => {
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-live-list-'))
    webDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-live-list-web-'))
    await buildWeb({ outDir: webDir })
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, dataDir, webDir, logLevel: 'silent' },
    })
    browser = await launchChromium(WAIT)
  }, 60_000)

  afterAll(async () => {
    for (const client of writers) await client.destroy()
    await browser?.close()
    await server?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
    if (webDir !== undefined) await rm(webDir, { recursive: true, force: true })
  })

  it('previews five sessions through one WebSocket and shows an answer streaming into one of them', async () => {
    const names = ['live-0', 'live-1', 'live-2', 'live-3', 'live-4']
    const clients = await Promise.all(names.map((id) => writerOf(id)))
    for (const [i, client] of clients.entries()) {
      appendMessage(client.doc, { role: 'user', author: ZOE, content: `hello ${i}` })
    }
    await withTimeout(Promise.all(clients.map((c) => c.whenFlushed())), WAIT, 'written')

    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } })
    context.setDefaultTimeout(WAIT)
    const page = await context.newPage()
    const sockets: string[] = []
    page.on('websocket', (socket) => sockets.push(new URL(socket.url()).pathname))
    const errors: string[] = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(`http://127.0.0.1:${server.port}/app/#/`)
    for (const [i, id] of names.entries()) {
      await page
        .locator(`.session-list li[data-session-id="${id}"] .session-preview`, { hasText: `Zoe: hello ${i}` })
        .waitFor()
    }

    const row = page.locator('.session-list li[data-session-id="live-2"]')
    const client = clients[2]
    if (client === undefined) throw new Error('no client')
    const writer = openStreamingWriter(client.doc, { author: AGENT, role: 'assistant', coalesceMs: 0 })
    writer.write('The answer ')
    await row.locator('.session-streaming', { hasText: 'replying' }).waitFor()
    await expect(row.getAttribute('data-streaming')).resolves.toBe('true')
    await row.locator('.session-preview', { hasText: 'live: The answer' }).waitFor()
    writer.write('is forty-two.')
    await row.locator('.session-preview', { hasText: 'live: The answer is forty-two.' }).waitFor()
    writer.end()
    await page.locator('.session-list li[data-session-id="live-2"][data-streaming="false"]').waitFor()
    await expect(row.locator('.session-streaming').textContent()).resolves.toBe('')

    // One socket for the whole list: the previews' /hocuspocus, none per session.
    expect(sockets).toEqual(['/hocuspocus'])
    expect(errors).toEqual([])
    await context.close()
  })
})
