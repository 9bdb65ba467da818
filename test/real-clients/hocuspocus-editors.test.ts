// Tiptap's Collaboration extension through the stock Hocuspocus provider (3.4.4) in Chromium,
// against a Colloquy server process with a secret: two pages, each with two documents on one
// HocuspocusProviderWebsocket and a token per document; real typing, carets, unsynced changes at 0
// once durable, a token that does not cover its document refused on the page, and a server restart.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mintToken } from '../../server/auth/tokens.js'
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { startTcpForwarder, type TcpForwarder } from '../helpers/tcp-forwarder.js'
import {
  CHROMIUM,
  type EditorBrowser,
  type EditorPage,
  hasChromium,
  launchEditorBrowser,
} from './browser-pages.js'
import type { HocuspocusHarnessGlobal, HocuspocusStartOptions } from './page/hocuspocus-harness.js'

if (!hasChromium) {
  console.warn(`Hocuspocus editor tests skipped: ${CHROMIUM} is missing`)
}

const secret = 'a-test-secret-that-is-long-enough'
let dataDir: string
let server: ServerProcess
let forwarder: TcpForwarder
let editors: EditorBrowser

async function startServer(): Promise<ServerProcess> {
  const started = await startServerProcess(['--data', dataDir, '--allowed-origins', editors.origin], {
    env: { COLLOQUY_SECRET: secret },
  })
  forwarder.setTarget(started.port)
  return started
}

const token = (sessionId: string): Promise<string> =>
  mintToken({ secret, peerId: `tiptap-${sessionId}`, role: 'write', sessionId })

async function openPage(name: string, documents: HocuspocusStartOptions['documents']): Promise<EditorPage> {
  const options: HocuspocusStartOptions = {
    serverUrl: `ws://127.0.0.1:${forwarder.port}/hocuspocus`,
    documents,
    user: { name, color: '#3366ff' },
  }
  return editors.open(options)
}

/** Real key presses at the end of document `index` of the page. */
async function typeInto(page: EditorPage, index: number, text: string): Promise<void> {
  await page.page.evaluate(
    (i) => (globalThis as unknown as HocuspocusHarnessGlobal).harness.focusEnd(i),
    index,
  )
  await page.page.keyboard.type(text)
}

describe.skipIf(!hasChromium)('Tiptap with the Hocuspocus provider against Colloquy', () => {
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-hocus-editors-'))
    editors = await launchEditorBrowser('hocuspocus-page.ts')
    forwarder = await startTcpForwarder(undefined)
    server = await startServer()
  }, 60_000)

  afterAll(async () => {
    await editors?.close()
    server?.child.kill('SIGTERM')
    await server?.exited
    await forwarder?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('edits two documents over one socket per page, with carets, durable acks, a refused token and a restart', async () => {
    const docs = [
      { name: 'tiptap-notes', token: await token('tiptap-notes') },
      { name: 'tiptap-todo', token: await token('tiptap-todo') },
    ]
    const ada = await openPage('Ada', docs)
    const bob = await openPage('Bob', [
      ...docs,
      { name: 'tiptap-secret', token: await token('tiptap-notes') },
    ])
    const allOpen = 's.documents.slice(0, 2).every((d) => d.auth === "read-write" && d.synced)'
    await ada.waitFor(allOpen, 'Ada authenticated and synced')
    await bob.waitFor(allOpen, 'Bob authenticated and synced')
    await bob.waitFor(
      's.documents[2].auth.startsWith("denied: 4403")',
      'the foreign token refused on the page',
    )

    await typeInto(ada, 0, 'Hello from Ada')
    await typeInto(bob, 1, 'Buy milk')
    await bob.waitFor('s.documents[0].editorText.includes("Hello from Ada")', 'Bob sees Ada in notes')
    await ada.waitFor('s.documents[1].editorText.includes("Buy milk")', 'Ada sees Bob in todo')
    await ada.waitFor(
      's.documents[0].peers.includes("Bob") && s.documents[1].carets.includes("Bob")',
      'Bob present in notes, his caret where he typed (todo)',
    )
    await ada.waitFor('s.documents.every((d) => d.unsyncedChanges === 0)', 'Ada’s edits durable')
    await bob.waitFor('s.documents.slice(0, 2).every((d) => d.unsyncedChanges === 0)', 'Bob’s edits durable')

    // A restart: the pages reconnect their one socket, authenticate each document again and resume.
    server.child.kill('SIGTERM')
    await server.exited
    await ada.waitFor('s.status !== "connected"', 'Ada lost the server')
    await typeInto(ada, 1, ' and eggs')
    server = await startServer()
    await ada.waitFor(`s.status === "connected" && ${allOpen}`, 'Ada back', 60_000)
    await bob.waitFor('s.documents[1].editorText.includes("and eggs")', 'Bob sees the offline edit', 60_000)
    await ada.waitFor('s.documents.every((d) => d.unsyncedChanges === 0)', 'offline edit durable', 60_000)

    const state = await ada.page.evaluate(() =>
      (globalThis as unknown as HocuspocusHarnessGlobal).harness.state(),
    )
    expect(state.documents.map((d) => d.editorText)).toEqual(['Hello from Ada', 'Buy milk and eggs'])
    expect(state.closeCodes.length).toBeGreaterThan(0)
    expect([...ada.errors, ...bob.errors]).toEqual([])
  }, 180_000)
})
