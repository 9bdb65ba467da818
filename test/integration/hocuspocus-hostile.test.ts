// Hostile frames on the Hocuspocus path (/hocuspocus), driven over raw sockets: garbage with no
// document name closes the socket (4400), everything that names a document concerns that document
// only (a permission-denied or close message with `<code> <reason>`, a log line), and the socket's
// other documents, the process and the stored content are unharmed.

import * as encoding from 'lib0/encoding'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG, parseConfig } from '../../server/config.js'
import type { SyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeHocuspocus, hocuspocusCodec } from '../../shared/protocol/hocuspocus-codec.js'
import type { Message } from '../../shared/protocol/message.js'
import { rawExchange, requestHead, upgradeHeaders } from '../helpers/raw-http.js'
import { capturingLogger, startTestServer } from '../helpers/test-server.js'
import { until, withTimeout } from '../helpers/wait.js'

const secret = 'a-test-secret-that-is-long-enough'
const { logger, lines } = capturingLogger()
let server: SyncServer

beforeAll(async () => {
  server = await startTestServer(
    {
      compaction: false,
      secret,
      maxDocumentsPerSocket: 4,
      documentOpensPerSecond: 1,
      updatesPerSecond: 1,
      updatesBurst: 20,
    },
    { logger },
  )
})

afterAll(async () => {
  await server.close()
})

const token = (sessionId: string, role: 'read' | 'write' = 'write'): Promise<string> =>
  mintToken({ secret, peerId: 'hostile', role, sessionId })

/** A raw Hocuspocus socket: frames encoded and decoded with our codec, every message kept. */
interface RawHocus {
  readonly messages: Message[]
  readonly closed: Promise<number>
  send(message: Message, documentName: string): void
  sendRaw(frame: Uint8Array | string): void
  /** Sends a token for `name` and resolves with the answer (authenticated or permission-denied). */
  open(name: string, token: string): Promise<Message>
  /** Resolves with the first message for `name` after `from` that `match` accepts. */
  next(name: string, match: (message: Message) => boolean, from?: number): Promise<Message>
  close(): void
}

async function connectRaw(): Promise<RawHocus> {
  const socket = new WebSocket(`ws://127.0.0.1:${server.port}/hocuspocus`)
  socket.binaryType = 'nodebuffer'
  const messages: Message[] = []
  socket.on('message', (data: Buffer) => {
    messages.push(hocuspocusCodec.decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)))
  })
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
  await withTimeout(new Promise((resolve) => socket.once('open', resolve)), 5_000, 'socket open')
  const next = async (name: string, match: (message: Message) => boolean, from = 0): Promise<Message> => {
    const find = (): Message | undefined => messages.slice(from).find((m) => m.sessionId === name && match(m))
    await until(() => find() !== undefined, 5_000, `a matching message for ${name}`)
    return find()!
  }
  return {
    messages,
    closed,
    send: (message, documentName) => socket.send(encodeHocuspocus(message, documentName)),
    sendRaw: (frame) => socket.send(frame, { binary: typeof frame !== 'string' }),
    async open(name, tokenValue) {
      const from = messages.length
      socket.send(encodeHocuspocus({ type: 'auth-token', token: tokenValue }, name))
      return next(name, (m) => m.type === 'authenticated' || m.type === 'auth', from)
    },
    next,
    close: () => socket.close(),
  }
}

function updateFor(text: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, text)
  return Y.encodeStateAsUpdate(doc)
}

function isDenial(message: Message): message is Message & { type: 'auth' } {
  return message.type === 'auth'
}

describe('the Hocuspocus path under hostile input', () => {
  it('closes the socket with 4400 for a frame with no readable document name, and 4415 for text', async () => {
    for (const garbage of [
      new Uint8Array([]),
      new Uint8Array([9]),
      new Uint8Array([0x85, 0x80, 0x80]),
      new Uint8Array([2, 0xc0, 0xaf]),
    ]) {
      const raw = await connectRaw()
      raw.sendRaw(garbage)
      expect(await withTimeout(raw.closed, 5_000, 'closed')).toBe(CloseCode.MalformedMessage)
    }
    const raw = await connectRaw()
    raw.sendRaw('hello')
    expect(await withTimeout(raw.closed, 5_000, 'closed')).toBe(CloseCode.TextFrame)
    expect(lines.some((line) => line.includes('hocuspocus socket closed'))).toBe(true)
  })

  it('refuses malformed document names per document, keeping the socket', async () => {
    const raw = await connectRaw()
    // Two, and a huge one below: each refusal takes one of the socket's four opens of burst.
    for (const name of ['', '../etc/passwd']) {
      const answer = await raw.open(name, await token('fine'))
      expect(answer).toMatchObject({
        type: 'auth',
        reason: expect.stringMatching(/^4400 invalid document name/),
      })
    }
    // A huge name gets no answer (the server does not send back what it was sent), only a log line.
    const before = raw.messages.length
    raw.send({ type: 'auth-token', token: 'x' }, 'n'.repeat(100_000))
    expect(await raw.open('fine', await token('fine'))).toMatchObject({
      type: 'authenticated',
      scope: 'read-write',
    })
    expect(raw.messages.slice(before).every((m) => m.sessionId === 'fine')).toBe(true)
    raw.close()
  })

  it('refuses a token that does not cover the document (4403), a bad one and a missing one (4401)', async () => {
    const raw = await connectRaw()
    const foreign = await raw.open('victim-doc', await token('another-doc'))
    expect(isDenial(foreign) && foreign.reason).toBe('4403 token not valid for this session')
    const bad = await raw.open('victim-doc-2', 'not.a.token')
    expect(isDenial(bad) && bad.reason).toBe('4401 invalid token')
    const missing = await raw.open('victim-doc-3', '')
    expect(isDenial(missing) && missing.reason).toBe('4401 missing token')
    expect(server.registry.get('victim-doc')).toBeUndefined()
    expect(lines.some((line) => line.includes('document refused'))).toBe(true)
    raw.close()
  })

  it('ignores messages for documents the socket has not opened: nothing is loaded or stored', async () => {
    const raw = await connectRaw()
    raw.send({ type: 'sync-update', update: updateFor('sneaky') }, 'never-opened')
    raw.send({ type: 'awareness', update: new Uint8Array([0]) }, 'never-opened')
    raw.send({ type: 'stateless', payload: 'x' }, 'never-opened')
    // Still open: a document opened afterwards works.
    expect(await raw.open('opened-later', await token('opened-later'))).toMatchObject({
      type: 'authenticated',
    })
    expect(server.registry.get('never-opened')).toBeUndefined()
    expect((await server.store.load('never-opened')).log).toEqual([])
    raw.close()
  })

  it('closes only the document a malformed or invalid message names; the socket and its other document go on', async () => {
    const raw = await connectRaw()
    expect(await raw.open('iso-bad', await token('iso-bad'))).toMatchObject({ type: 'authenticated' })
    expect(await raw.open('iso-good', await token('iso-good'))).toMatchObject({ type: 'authenticated' })
    await until(() => server.registry.get('iso-bad')?.connections.size === 1, 5_000, 'attached')

    // A sync frame whose length runs past its end.
    raw.sendRaw(
      (() => {
        const e = encoding.createEncoder()
        encoding.writeVarString(e, 'iso-bad')
        encoding.writeVarUint(e, 0)
        encoding.writeVarUint(e, 2)
        encoding.writeVarUint(e, 1_000)
        return encoding.toUint8Array(e)
      })(),
    )
    const close = await raw.next('iso-bad', (m) => m.type === 'close')
    expect(close).toMatchObject({ reason: expect.stringMatching(/^4400 /) })
    await until(() => server.registry.get('iso-bad')?.connections.size === 0, 5_000, 'detached')

    // Reopened, then an update that is no Yjs update: 4422, again for that document only.
    expect(await raw.open('iso-bad', await token('iso-bad'))).toMatchObject({ type: 'authenticated' })
    const from = raw.messages.length
    raw.send({ type: 'sync-update', update: new Uint8Array([1, 2, 3, 4, 5, 6]) }, 'iso-bad')
    expect(await raw.next('iso-bad', (m) => m.type === 'close', from)).toMatchObject({
      reason: expect.stringMatching(/^4422 /),
    })

    // The other document still syncs and is acknowledged once durable.
    const ackFrom = raw.messages.length
    raw.send({ type: 'sync-update', update: updateFor('good') }, 'iso-good')
    expect(await raw.next('iso-good', (m) => m.type === 'sync-status', ackFrom)).toMatchObject({
      payload: Uint8Array.of(1),
    })
    expect(server.registry.get('iso-good')?.document.getText('t').toString()).toBe('good')
    raw.close()
  })

  it('closes a document whose token expires with 4301, leaving the socket and its other documents open', async () => {
    const raw = await connectRaw()
    const shortLived = await mintToken({
      secret,
      peerId: 'brief',
      role: 'write',
      sessionId: 'expiring',
      ttlSeconds: 1,
    })
    expect(await raw.open('expiring', shortLived)).toMatchObject({ type: 'authenticated' })
    expect(await raw.open('lasting', await token('lasting'))).toMatchObject({ type: 'authenticated' })
    expect(await raw.next('expiring', (m) => m.type === 'close')).toMatchObject({
      reason: '4301 token expired',
    })
    // The other document answers a query for presence, as it did before.
    const from = raw.messages.length
    raw.send({ type: 'query-awareness' }, 'lasting')
    expect(await raw.next('lasting', (m) => m.type === 'awareness', from)).toBeDefined()
    raw.close()
  })

  it("stops a closed document's traffic to the socket: no relayed update or presence after the close", async () => {
    const watcher = await connectRaw()
    const writer = await connectRaw()
    expect(await watcher.open('closed-doc', await token('closed-doc'))).toMatchObject({
      type: 'authenticated',
    })
    expect(await writer.open('closed-doc', await token('closed-doc'))).toMatchObject({
      type: 'authenticated',
    })
    let from = watcher.messages.length
    writer.send({ type: 'sync-update', update: updateFor('seen') }, 'closed-doc')
    await watcher.next('closed-doc', (m) => m.type === 'sync-update', from)

    watcher.send({ type: 'close', reason: '' }, 'closed-doc')
    await until(() => server.registry.get('closed-doc')?.connections.size === 1, 5_000, 'watcher detached')
    from = watcher.messages.length
    writer.send({ type: 'sync-update', update: updateFor('unseen') }, 'closed-doc')
    // The writer's ack comes after the relay would have: by then nothing reached the watcher.
    await writer.next('closed-doc', (m) => m.type === 'sync-status', 0)
    const ackFrom = writer.messages.length
    writer.send({ type: 'sync-update', update: updateFor('unseen too') }, 'closed-doc')
    await writer.next('closed-doc', (m) => m.type === 'sync-status', ackFrom)
    expect(watcher.messages.slice(from)).toEqual([])
    watcher.close()
    writer.close()
  })

  it('ignores unknown message types, like the classic path, and counts them', async () => {
    const raw = await connectRaw()
    expect(await raw.open('unknown-types', await token('unknown-types'))).toMatchObject({
      type: 'authenticated',
    })
    raw.sendRaw(Uint8Array.of(13, ...new TextEncoder().encode('unknown-types'), 42, 1, 2))
    const from = raw.messages.length
    raw.send({ type: 'sync-update', update: updateFor('after') }, 'unknown-types')
    expect(await raw.next('unknown-types', (m) => m.type === 'sync-status', from)).toBeDefined()
    expect(raw.messages.some((m) => m.type === 'close')).toBe(false)
    raw.close()
  })

  it("rate-limits one document's updates without touching the socket's other documents", async () => {
    const raw = await connectRaw()
    expect(await raw.open('flooded', await token('flooded'))).toMatchObject({ type: 'authenticated' })
    expect(await raw.open('calm', await token('calm'))).toMatchObject({ type: 'authenticated' })
    const from = raw.messages.length
    for (let i = 0; i < 40; i++) raw.send({ type: 'sync-update', update: updateFor(`flood ${i}`) }, 'flooded')
    expect(await raw.next('flooded', (m) => m.type === 'close', from)).toMatchObject({
      reason: expect.stringMatching(/^4529 /),
    })
    const ackFrom = raw.messages.length
    raw.send({ type: 'sync-update', update: updateFor('calm') }, 'calm')
    expect(await raw.next('calm', (m) => m.type === 'sync-status', ackFrom)).toBeDefined()
    raw.close()
  })

  it('closes a document whose stateless message is over the awareness size limit (4530)', async () => {
    const raw = await connectRaw()
    expect(await raw.open('chatty', await token('chatty'))).toMatchObject({ type: 'authenticated' })
    raw.send({ type: 'stateless', payload: 'x'.repeat(DEFAULT_CONFIG.maxAwarenessBytes + 1) }, 'chatty')
    expect(await raw.next('chatty', (m) => m.type === 'close')).toMatchObject({
      reason: '4530 awareness limit exceeded',
    })
    raw.close()
  })

  it('limits a flood of opens: past the burst, opens are refused with 4529 until the bucket refills', async () => {
    const raw = await connectRaw()
    const names = ['open-1', 'open-2', 'open-3', 'open-4']
    for (const name of names)
      expect(await raw.open(name, await token(name))).toMatchObject({ type: 'authenticated' })
    // The cap: a fifth document at once is refused with 4531.
    const fifth = await raw.open('open-5', await token('open-5'))
    expect(isDenial(fifth) && fifth.reason).toBe('4531 too many documents on this socket')
    // Close them all and open again at once: the open rate (1/s after a burst of 4) refuses.
    for (const name of names) raw.send({ type: 'close', reason: '' }, name)
    const refusals: string[] = []
    for (const name of names) {
      const answer = await raw.open(name, await token(name))
      if (isDenial(answer)) refusals.push(answer.reason)
    }
    expect(refusals.length).toBeGreaterThanOrEqual(3)
    expect(refusals[0]).toBe('4529 too many document opens on this socket')
    raw.close()
  })

  it('applies the upgrade-time origin policy to the socket', async () => {
    const anonymous = await startTestServer({ compaction: false })
    try {
      const own = `127.0.0.1:${anonymous.port}`
      const foreign = await rawExchange(
        anonymous.port,
        requestHead('GET', '/hocuspocus', upgradeHeaders(own, { origin: 'http://evil.example' })),
      )
      expect(foreign.status).toBe(403)
      const fine = await rawExchange(
        anonymous.port,
        requestHead('GET', '/hocuspocus/any/app', upgradeHeaders(own)),
      )
      expect(fine.status).toBe(101)
    } finally {
      await anonymous.close()
    }
  })

  it('lifts the document cap and the open rate with 0 (--max-documents-per-socket 0, --document-opens-per-second 0)', async () => {
    const parsed = parseConfig(['--max-documents-per-socket', '0', '--document-opens-per-second', '0'], {})
    expect([parsed.maxDocumentsPerSocket, parsed.documentOpensPerSecond]).toEqual([0, 0])
    const fromEnv = parseConfig([], { MAX_DOCUMENTS_PER_SOCKET: '7', DOCUMENT_OPENS_PER_SECOND: '3' })
    expect([fromEnv.maxDocumentsPerSocket, fromEnv.documentOpensPerSecond]).toEqual([7, 3])
    expect([DEFAULT_CONFIG.maxDocumentsPerSocket, DEFAULT_CONFIG.documentOpensPerSecond]).toEqual([
      1_000, 100,
    ])
    const unlimited = await startTestServer({
      compaction: false,
      maxDocumentsPerSocket: parsed.maxDocumentsPerSocket,
      documentOpensPerSecond: parsed.documentOpensPerSecond,
    })
    const socket = new WebSocket(`ws://127.0.0.1:${unlimited.port}/hocuspocus`)
    const answers: Message[] = []
    socket.on('message', (data: Buffer) => answers.push(hocuspocusCodec.decode(new Uint8Array(data))))
    try {
      await withTimeout(new Promise((resolve) => socket.once('open', resolve)), 5_000, 'open')
      // 1,200 documents at once (over the default cap of 1,000), then closed and opened again at once.
      const names = Array.from({ length: 1_200 }, (_, i) => `many-${i}`)
      for (const name of names) socket.send(encodeHocuspocus({ type: 'auth-token', token: '' }, name))
      for (const name of names) socket.send(encodeHocuspocus({ type: 'close', reason: '' }, name))
      for (const name of names) socket.send(encodeHocuspocus({ type: 'auth-token', token: '' }, name))
      await until(
        () => answers.filter((m) => m.type === 'authenticated').length === 2_400,
        20_000,
        'all opened',
      )
      expect(answers.some((m) => m.type === 'auth')).toBe(false)
    } finally {
      socket.close()
      await unlimited.close()
    }
  })
})
