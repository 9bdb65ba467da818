// Chromium side of the real-client suite: bundles page/editor-page.ts with esbuild, serves it from a
// static HTTP server on 127.0.0.1 port 0, and opens editor pages (each in its own browser context,
// so pages share neither BroadcastChannel nor IndexedDB unless a test reuses a context on purpose).

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { CHROMIUM, hasChromium, launchChromium } from '../helpers/chromium.js'
import type { Harness, HarnessGlobal, PageState, StartOptions } from './page/harness.js'
import type { HocuspocusStartOptions } from './page/hocuspocus-harness.js'

/** Debian's chromium and whether it is installed (the browser tests are skipped with a message without it). */
export { CHROMIUM, hasChromium }
/** Every browser wait is bounded by this (generous: 2 cores shared with other work). */
export const BROWSER_WAIT = 30_000

const PAGE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page')
const HTML =
  '<!doctype html><meta charset="utf-8"><title>real client</title><script src="/editor.js"></script>'

/** An editor page started on a room: a playwright Page plus the calls the tests make on it. */
export interface EditorPage {
  readonly page: Page
  readonly context: BrowserContext
  state(): Promise<PageState>
  /** Waits until `predicate(state)` holds in the page; the label says what was awaited. */
  waitFor(predicate: string, label: string, timeoutMs?: number): Promise<void>
  /** Real key presses at the end of the editor's content. */
  typeAtEnd(text: string, delayMs?: number): Promise<void>
  call<K extends 'connect' | 'disconnect' | 'paste' | 'moveCaret' | 'storedContent' | 'destroy'>(
    name: K,
    ...args: Parameters<Harness[K]>
  ): Promise<Awaited<ReturnType<Harness[K]>>>
  /** Errors the page threw (uncaught), for assertions. */
  readonly errors: readonly string[]
}

/** The browser, the page server and the bundle; one per test file. */
export interface EditorBrowser {
  readonly browser: Browser
  /**
   * The origin the pages are served from: another origin than the server's, as a real app's would
   * be, so the server must list it in `--allowed-origins` (anonymous mode refuses other origins).
   */
  readonly origin: string
  /** Opens a page in `context` (a new one unless given) and starts the editor there. */
  open(options: StartOptions | HocuspocusStartOptions, context?: BrowserContext): Promise<EditorPage>
  newContext(): Promise<BrowserContext>
  close(): Promise<void>
}

async function servePages(dir: string, bundle: string): Promise<{ server: Server; origin: string }> {
  const script = await readFile(path.join(dir, bundle))
  const server = createServer((request, response) => {
    if (request.url === '/editor.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(script)
    } else if (request.url?.startsWith('/editor.html')) {
      response.writeHead(200, { 'content-type': 'text/html' }).end(HTML)
    } else {
      response.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/**
 * Builds the page bundle, starts the page server and launches Chromium headless.
 *
 * @param entry the page under page/: `editor-page.ts` (y-websocket providers, the default) or
 * `hocuspocus-page.ts` (Hocuspocus' provider; its `start` takes HocuspocusStartOptions)
 */
export async function launchEditorBrowser(entry = 'editor-page.ts'): Promise<EditorBrowser> {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-real-clients-'))
  await esbuild.build({
    entryPoints: [path.join(PAGE_DIR, entry)],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2022'],
    outdir: outDir,
    logLevel: 'silent',
  })
  await writeFile(path.join(outDir, 'editor.html'), HTML)
  const { server, origin } = await servePages(outDir, entry.replace(/\.ts$/, '.js'))
  // Pages in the background keep their timers: providers reconnect and send on time.
  const browser = await launchChromium(BROWSER_WAIT, [
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ])

  const newContext = async (): Promise<BrowserContext> => {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } })
    context.setDefaultTimeout(BROWSER_WAIT)
    return context
  }

  return {
    browser,
    origin,
    newContext,
    async open(options, given) {
      const context = given ?? (await newContext())
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (error) => errors.push(error.message))
      await page.goto(`${origin}/editor.html`)
      await page.evaluate(
        (start) => (globalThis as unknown as HarnessGlobal).harness.start(start as StartOptions),
        options,
      )
      const editor: EditorPage = {
        page,
        context,
        errors,
        state: () => page.evaluate(() => (globalThis as unknown as HarnessGlobal).harness.state()),
        async waitFor(predicate, label, timeoutMs = BROWSER_WAIT) {
          try {
            await page.waitForFunction(`((s) => ${predicate})(window.harness.state())`, undefined, {
              timeout: timeoutMs,
              polling: 50,
            })
          } catch (error) {
            const state = await page
              .evaluate(() => (globalThis as unknown as HarnessGlobal).harness.state())
              .catch(() => undefined)
            const brief = state && {
              ...state,
              editorText: String(state.editorText ?? '').slice(0, 200),
              docContent: '…',
            }
            throw new Error(
              `${options.user.name}: ${label}: ${String(error)}\nstate: ${JSON.stringify(brief)}`,
            )
          }
        },
        async typeAtEnd(text, delayMs = 0) {
          await page.evaluate(() => (globalThis as unknown as HarnessGlobal).harness.moveCaret(1))
          await page.keyboard.type(text, { delay: delayMs })
        },
        call: (name, ...args) =>
          page.evaluate(
            ([n, a]) =>
              ((globalThis as unknown as HarnessGlobal).harness[n] as (...x: unknown[]) => unknown)(...a),
            [name, args] as const,
          ) as never,
      }
      return editor
    },
    async close() {
      await browser.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await rm(outDir, { recursive: true, force: true })
    },
  }
}

declare global {
  interface Window {
    harness: Harness
  }
}
