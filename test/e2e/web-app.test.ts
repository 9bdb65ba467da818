// The web app end to end in a real browser: Debian's /usr/bin/chromium driven by playwright-core,
// two browser contexts (a laptop and a phone) on one session, and a Node agent on the demo model.
// Screenshots of every step go to test-results/e2e/. Skipped only when chromium is not installed.

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Agent, createDemoModel, joinSession, type Model } from '../../client/agent/node.js'
import { createHistoryClient, type HistoryClient } from '../../client/index.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { type MessageView, readMessages } from '../../shared/conversation/index.js'
import { buildWeb } from '../../web/build.js'
import { CHROMIUM, hasChromium, launchChromium } from '../helpers/chromium.js'
import { until, withTimeout } from '../helpers/wait.js'

if (!hasChromium) {
  console.warn(
    `web e2e tests skipped: ${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`,
  )
}

const SESSION = 'e2e-talk'
const FORK = 'e2e-fork'
/** Every browser wait is bounded by this (generous: CI machines are slow and shared). */
const WAIT = 20_000
const SHOTS = fileURLToPath(new URL('../../test-results/e2e/', import.meta.url))

// The agent answers "long answer" prompts at length (so there is time to cancel), others briefly.
const short = createDemoModel({ tokens: 24, delayMs: 10 })
const long = createDemoModel({ tokens: 10_000, delayMs: 25 })
const model: Model = {
  name: 'e2e-demo',
  generate: (context, signal) =>
    (context.prompt.content.includes('long answer') ? long : short).generate(context, signal),
}

/**
 * The live conversation as a page renders it: one `id|status|content` line per message, the text
 * with its whitespace collapsed (answers are rendered Markdown: paragraphs drop trailing spaces).
 */
const SNAPSHOT = `[...document.querySelectorAll('main .messages li.message')]
  .map((m) => m.dataset.messageId + '|' + m.dataset.status + '|' + m.querySelector('.message-content').textContent.replace(/\\s+/g, ' ').trim())
  .join('\\n')`

function snapshotOf(messages: readonly MessageView[]): string {
  return messages.map((m) => `${m.id}|${m.status}|${m.content.replace(/\s+/g, ' ').trim()}`).join('\n')
}

let server: SyncServer
let browser: Browser
let agent: Agent
let history: HistoryClient
let dataDir: string
let webDir: string
let laptop: BrowserContext
let phone: BrowserContext
let pageA: Page
let pageB: Page
let earlierSeq = 0
const pageErrors: string[] = []
let shot = 0

async function screenshot(page: Page, name: string): Promise<void> {
  shot++
  await page.screenshot({ path: path.join(SHOTS, `${String(shot).padStart(2, '0')}-${name}.png`) })
}

/** A user's message in the live conversation (agent replies quote the prompt, so they are left out). */
const live = (page: Page, text: string) =>
  page.locator('main .messages li.message[data-role="user"]', { hasText: text })
const agentReplies = (page: Page, status: string) =>
  page.locator(`main .messages li.message[data-author-kind="agent"][data-status="${status}"]`)

function replyTo(promptText: string): MessageView | undefined {
  const messages = readMessages(agent.doc)
  const prompt = messages.find((m) => m.content === promptText)
  return prompt === undefined ? undefined : messages.find((m) => m.metadata.replyTo === prompt.id)
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator('#composer-input').fill(text)
  await page.locator('#composer-input').press('Enter')
  await live(page, text).waitFor({ timeout: WAIT })
}

/** Resolves once the page renders exactly the conversation the agent's replica holds. */
async function converged(page: Page, expected: string): Promise<void> {
  await page.waitForFunction(`(${SNAPSHOT}) === ${JSON.stringify(expected)}`, undefined, { timeout: WAIT })
}

describe.skipIf(!hasChromium)('web app in a real browser', () => {
  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true })
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-data-'))
    webDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-e2e-web-'))
    await buildWeb({ outDir: webDir })
    server = await startSyncServer({
      config: { ...DEFAULT_CONFIG, port: 0, dataDir, webDir, logLevel: 'silent' },
    })
    history = createHistoryClient({ baseUrl: `http://127.0.0.1:${server.port}` })
    browser = await launchChromium(WAIT)
    // bypassCSP: the test's own waitForFunction(string) is an eval, which the app's CSP forbids
    // (as it should); test/e2e/security-browser.test.ts runs the app under its CSP.
    laptop = await browser.newContext({
      viewport: { width: 1100, height: 720 },
      acceptDownloads: true,
      bypassCSP: true,
    })
    // The second device is phone-sized: the app must be usable at that width.
    phone = await browser.newContext({
      viewport: { width: 390, height: 780 },
      isMobile: true,
      hasTouch: true,
      bypassCSP: true,
    })
    for (const context of [laptop, phone]) context.setDefaultTimeout(WAIT)
    pageA = await laptop.newPage()
    pageB = await phone.newPage()
    for (const page of [pageA, pageB]) page.on('pageerror', (error) => pageErrors.push(error.message))
  }, 60_000)

  afterAll(async () => {
    await agent?.leave()
    await browser?.close()
    await server?.close()
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
    if (webDir !== undefined) await rm(webDir, { recursive: true, force: true })
  })

  it('creates a session from the list; typing on the laptop shows on the phone; the agent streams into both', async () => {
    await pageA.goto(`http://127.0.0.1:${server.port}/`) // redirects to /app/
    await pageA.locator('#user-name').fill('Ada')
    await pageA.locator('#new-session').fill(SESSION)
    await screenshot(pageA, 'session-list')
    await pageA.getByRole('button', { name: 'Create' }).click()
    await pageA.waitForURL(`**/app/#/s/${SESSION}`)
    await pageA.locator('.connection[data-status="online"]').waitFor()

    await pageB.goto(`http://127.0.0.1:${server.port}/app/`)
    await pageB.locator('#user-name').fill('Bob')
    await pageB.locator('#user-name').press('Tab') // commits the name
    await pageB.goto(`http://127.0.0.1:${server.port}/app/#/s/${SESSION}`)
    await pageB.locator('.connection[data-status="online"]').waitFor()

    agent = await withTimeout(
      joinSession({ url: `ws://127.0.0.1:${server.port}`, sessionId: SESSION, name: 'demo', model }),
      WAIT,
      'agent joined',
    )
    for (const page of [pageA, pageB]) {
      await page.locator('[data-presence-id="agent:demo"][data-presence-state="idle"]').waitFor()
    }
    await pageA.locator('[data-presence-id]', { hasText: 'Bob' }).waitFor()

    await send(pageA, 'hello from Ada')
    await live(pageB, 'hello from Ada').waitFor()
    for (const page of [pageA, pageB]) {
      await agentReplies(page, 'complete').first().waitFor()
    }
    const reply = replyTo('hello from Ada')
    expect(reply?.status).toBe('complete')
    expect(reply?.content).toContain('You said: "hello from Ada"')
    await converged(pageA, snapshotOf(readMessages(agent.doc)))
    await converged(pageB, snapshotOf(readMessages(agent.doc)))
    await screenshot(pageA, 'first-answer-laptop')
    await screenshot(pageB, 'first-answer-phone')

    // Remember this point for the history steps. The server acknowledges in order, so once the
    // agent's last update is durable, everything before it is too.
    await withTimeout(agent.client.whenFlushed(), WAIT, 'agent flushed')
    const meta = await history.session(SESSION)
    earlierSeq = Number(meta.lastSeq)
    const then = await history.conversation(SESSION, { seq: earlierSeq })
    expect(then.messages.map((m) => m.status)).toEqual(['complete', 'complete'])
  })

  it('shows a long answer streaming on both devices, and cancel from the laptop stops it everywhere', async () => {
    await send(pageB, 'please write a long answer')
    for (const page of [pageA, pageB]) {
      await agentReplies(page, 'streaming').waitFor()
      // It grows: more than the first token has arrived.
      await page.waitForFunction(
        `(document.querySelector('main li.message[data-status="streaming"] .message-content')?.textContent ?? '').length > 120`,
        undefined,
        { timeout: WAIT },
      )
    }
    await pageA.locator('[data-presence-id="agent:demo"][data-presence-state="streaming"]').waitFor()
    await screenshot(pageA, 'streaming-laptop')
    await screenshot(pageB, 'streaming-phone')

    // Keyboard activation: focus the button and press Enter (it is a real <button>).
    await agentReplies(pageA, 'streaming').locator('button.cancel').press('Enter')
    for (const page of [pageA, pageB]) {
      await agentReplies(page, 'cancelled').waitFor()
      await page.locator('[data-presence-id="agent:demo"][data-presence-state="idle"]').waitFor()
      await expect(page.locator('main li.message[data-status="streaming"]').count()).resolves.toBe(0)
    }
    await until(
      () => replyTo('please write a long answer')?.status === 'cancelled',
      WAIT,
      'agent saw the cancel',
    )
    const cancelled = replyTo('please write a long answer')!
    expect(cancelled.content.length).toBeLessThan(10_000 * 4)
    await converged(pageA, snapshotOf(readMessages(agent.doc)))
    await converged(pageB, snapshotOf(readMessages(agent.doc)))
    await screenshot(pageB, 'cancelled-phone')
  })

  it('keeps the phone’s edits while offline and converges when it is back', async () => {
    await phone.setOffline(true)
    await pageB.locator('.connection[data-status="offline"]').waitFor()
    await send(pageB, 'offline edit from Bob')
    await pageB.locator('.saved[data-pending="true"]').waitFor()
    await send(pageA, 'online edit from Ada')
    await until(() => replyTo('online edit from Ada')?.status === 'complete', WAIT, 'agent answered Ada')
    // The phone is cut off: the laptop cannot have its edit, and the phone misses the laptop's.
    await expect(live(pageA, 'offline edit from Bob').count()).resolves.toBe(0)
    await expect(live(pageB, 'online edit from Ada').count()).resolves.toBe(0)
    await screenshot(pageB, 'offline-phone')

    await phone.setOffline(false)
    await pageB.locator('.connection[data-status="online"]').waitFor()
    await until(() => replyTo('offline edit from Bob')?.status === 'complete', WAIT, 'agent answered Bob')
    await withTimeout(agent.whenIdle(), WAIT, 'agent idle')
    const expected = snapshotOf(readMessages(agent.doc))
    expect(expected).toContain('offline edit from Bob')
    expect(expected).toContain('online edit from Ada')
    await converged(pageA, expected)
    await converged(pageB, expected)
    await pageB.locator('.saved[data-pending="false"]').waitFor()
    await screenshot(pageA, 'converged-laptop')
    await screenshot(pageB, 'converged-phone')
  })

  it('shows an earlier state on the history slider and exports it as JSON', async () => {
    await pageA.getByRole('button', { name: 'History' }).click()
    const slider = pageA.locator('#history-seq')
    await pageA.locator('#history-seq:not([disabled])').waitFor()
    expect(Number(await slider.getAttribute('max'))).toBeGreaterThan(earlierSeq)
    await slider.fill(String(earlierSeq))
    await pageA.locator(`#history[data-seq="${earlierSeq}"]`).waitFor()
    const past = pageA.locator('.history-view li.message')
    await past.filter({ hasText: 'hello from Ada' }).and(pageA.locator('[data-role="user"]')).waitFor()
    await expect(past.count()).resolves.toBe(2)
    await expect(past.filter({ hasText: 'long answer' }).count()).resolves.toBe(0)
    await screenshot(pageA, 'history-earlier')

    const [download] = await Promise.all([
      pageA.waitForEvent('download', { timeout: WAIT }),
      pageA.getByRole('link', { name: 'Export JSON' }).click(),
    ])
    const file = path.join(SHOTS, 'export.json')
    await download.saveAs(file)
    const exported = JSON.parse(await readFile(file, 'utf8')) as {
      format?: unknown
      version?: unknown
      seq?: unknown
      messages?: { content?: unknown }[]
    }
    expect(exported.format).toBe('colloquy.conversation')
    expect(exported.version).toBe(1)
    expect(exported.seq).toBe(earlierSeq)
    expect(exported.messages?.map((m) => m.content)).toContain('hello from Ada')
  })

  it('forks from the selected point into a new session with the earlier content', async () => {
    await pageA.locator('#fork-name').fill(FORK)
    await pageA.getByRole('button', { name: `Fork from seq ${earlierSeq}` }).click()
    await pageA.waitForURL(`**/app/#/s/${FORK}`)
    await pageA.locator('.connection[data-status="online"]').waitFor()
    await live(pageA, 'hello from Ada').waitFor()
    await expect(pageA.locator('main .messages li.message').count()).resolves.toBe(2)
    await expect(live(pageA, 'long answer').count()).resolves.toBe(0)
    const forked = await history.conversation(FORK)
    expect(forked.messages.map((m) => m.content)).toContain('hello from Ada')
    expect(forked.messages).toHaveLength(2)
    // The header names the fork, not the session it came from, and still does after a reload.
    await pageA.locator('.session-title', { hasText: FORK }).waitFor()
    await screenshot(pageA, 'fork')
    // Durable once the page says so: the stored fork has its own title.
    await pageA.locator('.saved[data-pending="false"]').waitFor()
    expect((await history.conversation(FORK)).session.title).toBe(FORK)
    await pageA.reload()
    await pageA.locator('.connection[data-status="online"]').waitFor()
    await expect(pageA.locator('.session-title').textContent()).resolves.toBe(FORK)
  })

  it('deletes the forked session from the list, after a confirmation', async () => {
    await pageA.goto(`http://127.0.0.1:${server.port}/app/#/`)
    const row = pageA.locator(`.session-list li[data-session-id="${FORK}"]`)
    await row.waitFor()
    await pageA.getByRole('button', { name: `Delete session ${FORK}` }).click()
    await pageA.getByRole('button', { name: `Confirm: delete session ${FORK}` }).click()
    await row.waitFor({ state: 'detached' })
    await pageA.locator('.list-status', { hasText: `Deleted ${FORK}.` }).waitFor()
    await pageA.locator(`.session-list li[data-session-id="${SESSION}"]`).waitFor()
    await expect(history.session(FORK)).rejects.toMatchObject({ status: 404 })
    await screenshot(pageA, 'deleted-fork')
    await writeFile(path.join(SHOTS, 'page-errors.txt'), pageErrors.join('\n'))
    expect(pageErrors).toEqual([])
  })
})
