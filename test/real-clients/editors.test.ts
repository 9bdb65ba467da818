// Real editors against Colloquy: Tiptap 3 and CodeMirror 6 in Chromium, each page through a stock
// y-websocket provider (1.5.4, 2.1.0, 3.1.0; pages of one room mix releases), the server a child
// process with its default flags. Typing, presence, a server restart, a 2 MB paste and offline
// edits kept in IndexedDB; every test asserts the converged content and the connection state.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type * as Y from 'yjs'
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { startTcpForwarder, type TcpForwarder } from '../helpers/tcp-forwarder.js'
import {
  CHROMIUM,
  type EditorBrowser,
  type EditorPage,
  hasChromium,
  launchEditorBrowser,
} from './browser-pages.js'
import { readFromServer } from './node-providers.js'
import { EditorKind, type HarnessGlobal, type ProviderVersion, type StartOptions } from './page/harness.js'

if (!hasChromium) {
  console.warn(
    `real-client editor tests skipped: ${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`,
  )
}

let dataDir: string
let server: ServerProcess
/** What the pages connect to: it forwards to the current server process (whose port changes on restart). */
let forwarder: TcpForwarder
let serverUrl: string
let editors: EditorBrowser
/** Pages of the running test, closed after it (idle pages would keep taking CPU from the next tests). */
const opened: EditorPage[] = []
/** Uncaught errors of every page closed so far. */
const pageErrors: string[] = []

/**
 * The server as a user runs it: default flags but where it keeps its data and the origin of the app
 * that may use it (the pages' origin: anonymous mode refuses any other), behind the forwarder.
 */
async function startServer(): Promise<ServerProcess> {
  const started = await startServerProcess(['--data', dataDir, '--allowed-origins', editors.origin])
  forwarder?.setTarget(started.port)
  return started
}

const isOnline = 's.status === "connected" && s.wsconnected && s.synced'

async function open(
  editor: EditorKind,
  room: string,
  provider: ProviderVersion,
  name: string,
  extra: Partial<Pick<StartOptions, 'indexeddb'>> & { context?: EditorPage['context'] } = {},
): Promise<EditorPage> {
  const options: StartOptions = {
    serverUrl,
    room,
    provider,
    editor,
    user: { name, color: name === 'Ada' ? '#d81b60' : '#1e88e5' },
    indexeddb: extra.indexeddb ?? false,
  }
  const page = await editors.open(options, extra.context)
  opened.push(page)
  // Keys typed before the editor's first sync can be lost (Tiptap re-renders from the Yjs document).
  await page.waitFor(isOnline, 'online')
  return page
}

/** The shared type as the server's copy of `room` renders it (what `docContent` is in a page). */
function contentOf(editor: EditorKind): (doc: Y.Doc) => string {
  return (doc) =>
    editor === EditorKind.Tiptap
      ? doc.getXmlFragment('default').toString()
      : doc.getText('codemirror').toString()
}

/** Both pages show `text` and hold the same Yjs content; returns that content. */
async function converge(pages: readonly EditorPage[], text: string, label: string): Promise<string> {
  for (const page of pages) {
    await page.waitFor(`${isOnline} && s.editorText === ${JSON.stringify(text)}`, label)
  }
  const states = await Promise.all(pages.map((page) => page.state()))
  for (const state of states) {
    expect(state.editorText).toBe(text)
    expect(state.docContent).toBe(states[0]!.docContent)
  }
  return states[0]!.docContent
}

/** Types `ownText` at the start of one page and `otherText` at the end of the other, both at once. */
async function typeConcurrently(first: EditorPage, ownText: string, second: EditorPage, otherText: string) {
  await Promise.all([
    first.page
      .evaluate(() => (globalThis as unknown as HarnessGlobal).harness.moveCaret(0))
      .then(() => first.page.keyboard.type(ownText)),
    second.page
      .evaluate(() => (globalThis as unknown as HarnessGlobal).harness.moveCaret(1))
      .then(() => second.page.keyboard.type(otherText)),
  ])
}

describe.skipIf(!hasChromium)('real editors in Chromium through stock y-websocket providers', () => {
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-real-clients-data-'))
    editors = await launchEditorBrowser()
    server = await startServer()
    forwarder = await startTcpForwarder(server.port)
    serverUrl = `ws://127.0.0.1:${forwarder.port}`
  }, 60_000)

  afterEach(async () => {
    const pages = opened.splice(0)
    for (const page of pages) pageErrors.push(...page.errors)
    await Promise.all([...new Set(pages.map((page) => page.context))].map((context) => context.close()))
  })

  afterAll(async () => {
    await editors?.close()
    await forwarder?.close()
    server?.child.kill('SIGKILL')
    await server?.exited
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  // Each pair mixes two releases in one room; over the six pairs every release meets every other.
  const pairs: readonly [EditorKind, ProviderVersion, ProviderVersion][] = [
    [EditorKind.Tiptap, 'v1', 'v2'],
    [EditorKind.Tiptap, 'v2', 'v3'],
    [EditorKind.Tiptap, 'v3', 'v1'],
    [EditorKind.CodeMirror, 'v1', 'v2'],
    [EditorKind.CodeMirror, 'v2', 'v3'],
    [EditorKind.CodeMirror, 'v3', 'v1'],
  ]

  it.each(pairs)(
    '%s: pages on y-websocket %s and %s type at once, converge, and each shows the other as present',
    async (editor, versionA, versionB) => {
      const room = `typing-${editor}-${versionA}-${versionB}`
      const ada = await open(editor, room, versionA, 'Ada')
      const bob = await open(editor, room, versionB, 'Bob')

      await ada.typeAtEnd('shared middle.')
      await converge([ada, bob], 'shared middle.', 'the first line reached both')
      await typeConcurrently(ada, 'Ada was here first. ', bob, ' Bob wrote the end.')
      const expected = 'Ada was here first. shared middle. Bob wrote the end.'
      const content = await converge([ada, bob], expected, 'concurrent typing converged')
      expect(await readFromServer(serverUrl, room, contentOf(editor), content)).toBe(content)

      // Presence: each page's awareness names the other, and its editor draws the other's caret.
      await ada.waitFor('s.peers.includes("Bob") && s.carets.includes("Bob")', "Bob's caret on Ada's page")
      await bob.waitFor('s.peers.includes("Ada") && s.carets.includes("Ada")', "Ada's caret on Bob's page")
      for (const page of [ada, bob]) {
        const state = await page.state()
        expect(state.closeCodes).toEqual([])
        expect(page.errors).toEqual([])
      }
    },
  )

  it.each([
    [EditorKind.Tiptap, 'v3', 'v1'],
    [EditorKind.CodeMirror, 'v2', 'v3'],
  ] as const)(
    '%s: after a kill -9 and restart of the server both pages (%s, %s) reconnect with their offline typing and converge',
    async (editor, versionA, versionB) => {
      const room = `restart-${editor}`
      const ada = await open(editor, room, versionA, 'Ada')
      const bob = await open(editor, room, versionB, 'Bob')
      await ada.typeAtEnd('before the crash.')
      await converge([ada, bob], 'before the crash.', 'first text on both')

      forwarder.setTarget(undefined)
      server.child.kill('SIGKILL')
      await server.exited
      try {
        // Releases differ in what they report while retrying (`disconnected` or `connecting`).
        await ada.waitFor('!s.wsconnected && !s.synced', 'Ada sees the server gone')
        await bob.waitFor('!s.wsconnected && !s.synced', 'Bob sees the server gone')
        await typeConcurrently(ada, 'Ada typed blind. ', bob, ' Bob too.')
      } finally {
        server = await startServer()
      }
      const expected = 'Ada typed blind. before the crash. Bob too.'
      const content = await converge([ada, bob], expected, 'converged after the restart')
      expect(await readFromServer(serverUrl, room, contentOf(editor), content)).toBe(content)
      for (const page of [ada, bob]) expect((await page.state()).wsconnected).toBe(true)
    },
    90_000,
  )

  it.each([
    [EditorKind.CodeMirror, 'v3', 'v1'],
    [EditorKind.Tiptap, 'v2', 'v3'],
  ] as const)(
    '%s: a 2 MB paste on y-websocket %s reaches the %s page and the server intact',
    async (editor, versionA, versionB) => {
      const room = `paste-${editor}`
      const ada = await open(editor, room, versionA, 'Ada')
      const bob = await open(editor, room, versionB, 'Bob')
      // 2 MiB of distinct lines (each names its number, so a lost or reordered line shows).
      const lines: string[] = []
      for (let i = 0, size = 0; size < 2 * 1024 * 1024; i++) {
        const line = `line ${i} of the big paste ${'lorem ipsum dolor sit amet '.repeat(36)}`
        lines.push(line)
        size += line.length + 1
      }
      const big = lines.join('\n')
      expect(big.length).toBeGreaterThanOrEqual(2 * 1024 * 1024)

      await ada.call('paste', big)
      const lengthIs = (n: number) => `${isOnline} && s.editorText.length === ${n}`
      await ada.waitFor(lengthIs(big.length), 'the paste is in the editor', 60_000)
      await bob.waitFor(lengthIs(big.length), 'the paste reached the other page', 60_000)
      const [a, b] = await Promise.all([ada.state(), bob.state()])
      expect(a.editorText === big).toBe(true) // not toBe(big): a 2 MB diff is no help
      expect(b.editorText === big).toBe(true)
      expect(b.docContent === a.docContent).toBe(true)
      const stored = await readFromServer(serverUrl, room, contentOf(editor), a.docContent, 60_000)
      expect(stored === a.docContent).toBe(true)
      expect(a.closeCodes).toEqual([])
      expect(b.closeCodes).toEqual([])
    },
    120_000,
  )

  it.each([
    [EditorKind.Tiptap, 'v3', 'v2'],
    [EditorKind.CodeMirror, 'v1', 'v3'],
  ] as const)(
    '%s: edits made offline on y-websocket %s are kept by y-indexeddb across a reload and reach the %s page on return',
    async (editor, versionA, versionB) => {
      const room = `offline-${editor}`
      const ada = await open(editor, room, versionA, 'Ada', { indexeddb: true })
      const bob = await open(editor, room, versionB, 'Bob')
      await ada.typeAtEnd('online at first.')
      const before = await converge([ada, bob], 'online at first.', 'first text on both')

      await ada.call('disconnect')
      await ada.waitFor('!s.wsconnected && !s.synced', 'Ada offline')
      await typeConcurrently(ada, 'Written on the train. ', bob, ' Bob stayed online.')
      // Ada's offline edit is in IndexedDB before her tab goes away; Bob's is on the server only.
      await ada.waitFor('s.editorText === "Written on the train. online at first."', 'Ada typed')
      const stored = await ada.call('storedContent')
      expect(stored).not.toBe(before)
      expect(stored).toBe((await ada.state()).docContent)
      await ada.call('destroy')
      await ada.page.close()
      // Meanwhile the server holds Bob's edit and nothing of Ada's offline one.
      await bob.waitFor('s.editorText === "online at first. Bob stayed online."', 'Bob typed')
      const serverBefore = (await bob.state()).docContent
      expect(await readFromServer(serverUrl, room, contentOf(editor), serverBefore)).toBe(serverBefore)
      expect(serverBefore).not.toContain('train')

      // Back online: a new tab in the same browser profile loads IndexedDB, then syncs both ways.
      const back = await open(editor, room, versionA, 'Ada', { indexeddb: true, context: ada.context })
      const expected = 'Written on the train. online at first. Bob stayed online.'
      const content = await converge([back, bob], expected, 'offline edits synced on return')
      expect(await readFromServer(serverUrl, room, contentOf(editor), content)).toBe(content)
      expect((await back.state()).closeCodes).toEqual([])
    },
    90_000,
  )

  it('leaves every page it opened without an uncaught error', () => {
    expect(pageErrors).toEqual([])
  })
})
