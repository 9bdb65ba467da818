// The history API over HTTP on a real server (uWS, LevelDB in a temp dir, port 0): state at a seq
// and a time, the streamed log, binary and JSON export, import (JSON round trip), fork, compaction
// through the API, and the errors of the shared table.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import {
  addSummary,
  appendMessage,
  readMessages,
  requestCancel,
  setMessageStatus,
  setSessionTitle,
  touchParticipant,
} from '../../shared/conversation/index.js'
import { parseConversationExport } from '../../shared/export/conversation-export.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let dataDir: string
let server: SyncServer
let base: string

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-history-http-'))
  server = await startSyncServer({
    // Background compaction off: this file drives compaction through the API.
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', compaction: false },
  })
  base = `http://127.0.0.1:${server.port}`
})

afterAll(async () => {
  await server?.close()
  await rm(dataDir, { recursive: true, force: true })
})

const alice = { id: 'alice', kind: 'device' as const, name: 'Alice' }
const bot = { id: 'bot-1', kind: 'agent' as const }

/** Writes a small conversation turn by turn through a WebSocket client; resolves once acknowledged. */
async function writeConversation(sessionId: string): Promise<{ seqTimes: number[] }> {
  const client = await connectWsPeer(`ws://127.0.0.1:${server.port}`, sessionId)
  const doc = client.peer.doc
  const seqTimes: number[] = []
  const turn = async (write: () => void): Promise<void> => {
    write()
    await client.peer.whenAcked(client.peer.requestAck())
    seqTimes.push(Date.now())
  }
  await turn(() => setSessionTitle(doc, 'Trip planning'))
  await turn(() => touchParticipant(doc, alice, 1_700_000_000_000))
  await turn(() =>
    appendMessage(doc, { id: 'm1', role: 'user', author: alice, content: 'Where to?', createdAt: 1 }),
  )
  await turn(() =>
    appendMessage(doc, {
      id: 'm2',
      role: 'assistant',
      author: bot,
      content: 'Lisbon.',
      status: 'streaming',
      metadata: { model: 'demo', replyTo: 'm1', promptTokens: 3 },
      createdAt: 2,
    }),
  )
  await turn(() => requestCancel(doc, 'm2', alice))
  await turn(() => setMessageStatus(doc, 'm2', 'error', { error: 'model timed out' }))
  await turn(() =>
    addSummary(doc, {
      id: 's1',
      coversThroughId: 'm2',
      text: 'They talk travel.',
      author: bot,
      createdAt: 3,
      tokens: 4,
    }),
  )
  client.close()
  await client.closed
  return { seqTimes }
}

// biome-ignore lint/suspicious/noExplicitAny: test reads of JSON bodies whose shape each test asserts
async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url)
  return { status: response.status, body: await response.json() }
}

describe('history over HTTP', () => {
  it('serves the state at every seq, as a Yjs update and as JSON', async () => {
    await writeConversation('trip')
    const meta = await getJson(`${base}/sessions/trip`)
    expect(meta.status).toBe(200)
    const lastSeq = meta.body.lastSeq as number
    expect(lastSeq).toBeGreaterThanOrEqual(7)
    const counts: number[] = []
    for (let seq = 0; seq <= lastSeq; seq++) {
      const response = await fetch(`${base}/sessions/trip/state?seq=${seq}`)
      expect(response.status).toBe(200)
      expect(response.headers.get('x-colloquy-seq')).toBe(String(seq))
      const doc = new Y.Doc()
      Y.applyUpdate(doc, new Uint8Array(await response.arrayBuffer()))
      counts.push(readMessages(doc).length)
    }
    // Messages appear turn by turn and never disappear.
    expect(counts[0]).toBe(0)
    expect(counts[lastSeq]).toBe(2)
    expect([...counts].sort((a, b) => a - b)).toEqual(counts)
    const json = await getJson(`${base}/sessions/trip/state?seq=${lastSeq}&format=json`)
    expect(json.body.messages.map((m: { id: string }) => m.id)).toEqual(['m1', 'm2'])
    expect(json.body.messages[1]).toMatchObject({
      status: 'error',
      error: 'model timed out',
      cancelRequest: { by: alice },
    })
  })

  it('finds the state at a time', async () => {
    const meta = await getJson(`${base}/sessions/trip`)
    const before = await fetch(`${base}/sessions/trip/state?time=0`)
    expect(before.headers.get('x-colloquy-seq')).toBe('0')
    const now = await fetch(`${base}/sessions/trip/state?time=${new Date(Date.now() + 1000).toISOString()}`)
    expect(now.headers.get('x-colloquy-seq')).toBe(String(meta.body.lastSeq))
  })

  it('streams the log from a seq as NDJSON', async () => {
    const response = await fetch(`${base}/sessions/trip/log?from=3`)
    expect(response.headers.get('content-type')).toBe('application/x-ndjson')
    const lines = (await response.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(lines[0].seq).toBe(3)
    const doc = new Y.Doc()
    const full = await fetch(`${base}/sessions/trip/log`)
    for (const line of (await full.text()).trim().split('\n')) {
      Y.applyUpdate(doc, Buffer.from(JSON.parse(line).update, 'base64'))
    }
    expect(readMessages(doc).map((m) => m.id)).toEqual(['m1', 'm2'])
  })

  it('round-trips a JSON export through import to the same conversation', async () => {
    const exported = await getJson(`${base}/sessions/trip/export?format=json`)
    expect(exported.body).toMatchObject({ format: 'colloquy.conversation', version: 1, sessionId: 'trip' })
    parseConversationExport(exported.body)
    const created = await fetch(`${base}/sessions/trip-copy/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(exported.body),
    })
    expect(created.status).toBe(201)
    const again = await getJson(`${base}/sessions/trip-copy/export?format=json`)
    const strip = ({ sessionId, seq, time, exportedAt, ...rest }: Record<string, unknown>) => rest
    expect(strip(again.body)).toEqual(strip(exported.body))
    // The imported session is a live session: clients can open it and see the conversation.
    const client = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'trip-copy')
    await client.peer.whenAcked(client.peer.requestAck())
    expect(readMessages(client.peer.doc).map((m) => m.content)).toEqual(['Where to?', 'Lisbon.'])
    client.close()
  })

  it('imports a binary export and refuses an existing target', async () => {
    const binary = new Uint8Array(await (await fetch(`${base}/sessions/trip/export`)).arrayBuffer())
    const created = await fetch(`${base}/sessions/trip-bin/import`, { method: 'POST', body: binary })
    expect(created.status).toBe(201)
    const again = await fetch(`${base}/sessions/trip-bin/import`, { method: 'POST', body: binary })
    expect(again.status).toBe(409)
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('session-exists')
    const bad = await fetch(`${base}/sessions/junk/import`, { method: 'POST', body: 'not yjs' })
    expect(bad.status).toBe(400)
  })

  it('forks a session at a seq into a new session and refuses an existing target', async () => {
    const fork = await fetch(`${base}/sessions/trip/fork?seq=3&to=trip-branch`, { method: 'POST' })
    expect(fork.status).toBe(201)
    expect(await fork.json()).toMatchObject({ sessionId: 'trip-branch', fromSessionId: 'trip', fromSeq: 3 })
    const branch = await getJson(`${base}/sessions/trip-branch/state?format=json`)
    const original = await getJson(`${base}/sessions/trip/state?seq=3&format=json`)
    expect(branch.body.messages).toEqual(original.body.messages)
    const refused = await fetch(`${base}/sessions/trip/fork?seq=2&to=trip`, { method: 'POST' })
    expect(refused.status).toBe(409)
    const taken = await fetch(`${base}/sessions/trip/fork?seq=2&to=trip-copy`, { method: 'POST' })
    expect(taken.status).toBe(409)
  })

  it('compacts through the API and still serves every retained seq', async () => {
    const before = await getJson(`${base}/sessions/trip/state?format=json&seq=5`)
    const compacted = await fetch(`${base}/sessions/trip/compact`, { method: 'POST' })
    expect(compacted.status).toBe(200)
    const result = (await compacted.json()) as { folded: number }
    expect(result.folded).toBeGreaterThan(0)
    const meta = await getJson(`${base}/sessions/trip`)
    expect(meta.body.checkpointSeq).toBe(meta.body.lastSeq)
    const after = await getJson(`${base}/sessions/trip/state?format=json&seq=5`)
    expect(after.body.messages).toEqual(before.body.messages)
  })

  it('answers errors from the shared table as JSON', async () => {
    const missing = await getJson(`${base}/sessions/nobody/state`)
    expect([missing.status, missing.body.error.code]).toEqual([404, 'session-not-found'])
    const beyond = await getJson(`${base}/sessions/trip/state?seq=99999`)
    expect([beyond.status, beyond.body.error.code]).toEqual([416, 'seq-out-of-range'])
    const bad = await getJson(`${base}/sessions/trip/state?seq=abc`)
    expect(bad.status).toBe(400)
    const unknown = await getJson(`${base}/nothing/here`)
    expect(unknown.status).toBe(404)
    const health = await getJson(`${base}/healthz`)
    expect(health.body).toEqual({ status: 'ok' })
  })
})
