// The web app and a pool of agents, in Chromium: a page opened with ?pool= asks the pool to answer
// what it sends; each question shows its turn (queued with its place in line on every device,
// answering, answered); Cancel removes a queued turn; Cancel stops a running one. Skipped only when
// chromium is not installed. Screenshots go to test-results/e2e/turns-*.png.

import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTurnsClient } from '../../client/agent/fleet/turns-client.js'
import type { Worker } from '../../client/agent/fleet/worker.js'
import { createDemoModel, createWorker, type Model } from '../../client/agent/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { buildWeb } from '../../web/build.js'
import { CHROMIUM, hasChromium, launchChromium } from '../helpers/chromium.js'
import { until } from '../helpers/wait.js'

if (!hasChromium) console.warn(`turns web e2e skipped: ${CHROMIUM} is missing`)

const WAIT = 20_000
const SHOTS = fileURLToPath(new URL('../../test-results/e2e/', import.meta.url))
const SESSION = 'e2e-turns'

let server: SyncServer
let browser: Browser
let pageA: Page
let pageB: Page
let dataDir: string
let webDir: string
let worker: Worker | undefined
const pageErrors: string[] = []

const short = createDemoModel({ tokens: 12, delayMs: 10 })
const long = createDemoModel({ tokens: 100_000, delayMs: 20 })
const model: Model = {
  name: 'e2e-pool',
  generate: (context, signal) =>
    (context.prompt.content.includes('long') ? long : short).generate(context, signal),
}

const question = (page: Page, text: string) =>
  page.locator('main .messages li.message[data-role="user"]', { hasText: text })
const turnOf = (page: Page, text: string) => question(page, text).locator('.turn-status')

async function send(page: Page, text: string): Promise<void> {
  await page.locator('#composer-input').fill(text)
  await page.locator('#composer-input').press('Enter')
  await question(page, text).waitFor({ timeout: WAIT })
}

describe.skipIf(!hasChromium)('turns in the web app', () => {
  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true })
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-turns-'))
    webDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-turns-web-'))
    await buildWeb({ outDir: webDir })
    server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        dataDir,
        webDir,
        logLevel: 'silent',
        turnPools: ['main:1'],
        turnLeaseMs: 1_500,
      },
    })
    browser = await launchChromium(WAIT)
    const contexts = await Promise.all([
      browser.newContext({ viewport: { width: 1100, height: 720 }, bypassCSP: true }),
      browser.newContext({ viewport: { width: 390, height: 780 }, isMobile: true, bypassCSP: true }),
    ])
    for (const context of contexts) context.setDefaultTimeout(WAIT)
    pageA = await (contexts[0] as (typeof contexts)[0]).newPage()
    pageB = await (contexts[1] as (typeof contexts)[0]).newPage()
    for (const page of [pageA, pageB]) {
      page.on('pageerror', (error) => pageErrors.push(error.message))
      await page.goto(`http://127.0.0.1:${server.port}/app/#/s/${SESSION}?pool=main`)
      await page.locator('.connection[data-status="online"]').waitFor()
    }
  }, 60_000)

  afterAll(async () => {
    await worker?.stop()
    await browser?.close()
    await server?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
    if (webDir !== undefined) await rm(webDir, { recursive: true, force: true })
  })

  it('shows each question queued with its place in line on every device; Cancel takes one out of the queue', async () => {
    // No worker yet: the questions wait in the pool's queue.
    await send(pageA, 'first question')
    await send(pageA, 'second question')
    for (const page of [pageA, pageB]) {
      await turnOf(page, 'first question').filter({ hasText: 'queued · 1st in line' }).waitFor()
      await turnOf(page, 'second question').filter({ hasText: 'queued · 2nd in line' }).waitFor()
    }
    await pageB.screenshot({ path: path.join(SHOTS, 'turns-1-queued-phone.png') })
    // Cancel the first from the phone: it leaves the queue and the second moves up, everywhere.
    await turnOf(pageB, 'first question')
      .getByRole('button', { name: /Cancel/ })
      .click()
    for (const page of [pageA, pageB]) {
      await turnOf(page, 'first question').filter({ hasText: 'cancelled' }).waitFor()
      await turnOf(page, 'second question').filter({ hasText: 'queued · 1st in line' }).waitFor()
    }
    await pageA.screenshot({ path: path.join(SHOTS, 'turns-2-cancelled-queued.png') })
  })

  it('shows the answer streaming and then answered once a worker serves the pool; Cancel stops a running answer', async () => {
    worker = createWorker({
      url: `ws://127.0.0.1:${server.port}`,
      pool: 'main',
      model,
      name: 'pool-demo',
      claimWaitMs: 500,
    })
    for (const page of [pageA, pageB]) {
      await turnOf(page, 'second question').filter({ hasText: 'answered' }).waitFor()
      await page
        .locator('main .messages li.message[data-author-kind="agent"][data-status="complete"]')
        .first()
        .waitFor()
    }
    // The cancelled question got no answer.
    const turns = createTurnsClient({ url: `ws://127.0.0.1:${server.port}` })
    expect((await turns.pool('main')).queued).toBe(0)

    await send(pageA, 'a long answer please')
    await turnOf(pageB, 'a long answer please').filter({ hasText: 'answering' }).waitFor()
    await pageB.screenshot({ path: path.join(SHOTS, 'turns-3-answering-phone.png') })
    await turnOf(pageB, 'a long answer please')
      .getByRole('button', { name: /Cancel/ })
      .click()
    for (const page of [pageA, pageB]) {
      await turnOf(page, 'a long answer please').filter({ hasText: 'cancelled' }).waitFor()
      await page
        .locator('main .messages li.message[data-author-kind="agent"][data-status="cancelled"]')
        .first()
        .waitFor()
    }
    await until(() => worker?.active === 0, WAIT, 'the worker stopped the answer')
    await pageA.screenshot({ path: path.join(SHOTS, 'turns-4-cancelled-running.png') })
    expect(pageErrors).toEqual([])
  })
})
