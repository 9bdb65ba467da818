// Load client process (forked by bench/load/pool.ts): bare wire writers and readers (no Y.Doc),
// idle connections, and Y.Doc clients for verification and catch-up. Every wait is bounded.
// It takes commands over IPC and answers each with one message; it owns no server.

import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { withTimeout } from '../lib/timeout.js'
import {
  createRandom,
  createTextAppender,
  decodeReceived,
  EMPTY_STATE_VECTOR,
  encodeHello,
  encodeStep2,
  encodeSyncStatus,
  encodeUpdate,
  type Framing,
  readStamp,
  stampToken,
} from '../lib/wire.js'
import type { Command, Reply } from './commands.js'

let epochMs = 0
const nowMicros = (): number => Math.round((performance.timeOrigin + performance.now() - epochMs) * 1000)

function send(reply: Reply): void {
  process.send?.(reply)
}

/** One bare connection; `onFrame` sees every received frame. */
interface Bare {
  readonly ws: WebSocket
  readonly doc: string
  synced: Promise<void>
  bytesReceived: number
  /** The close code once the socket closed (by either side); undefined while open. */
  closeCode: number | undefined
}

function openBare(url: string, framing: Framing, doc: string, onFrame: (frame: Uint8Array) => void): Bare {
  const ws = new WebSocket(`${url}/${doc}`, { perMessageDeflate: false })
  ws.binaryType = 'nodebuffer'
  const bare: Bare = { ws, doc, synced: Promise.resolve(), bytesReceived: 0, closeCode: undefined }
  ws.on('close', (code) => {
    bare.closeCode = code
  })
  bare.synced = new Promise((resolve, reject) => {
    ws.once('open', () => {
      for (const frame of encodeHello(framing, doc, EMPTY_STATE_VECTOR)) ws.send(frame)
    })
    ws.once('error', reject)
    ws.once('close', (code) => reject(new Error(`closed ${code} before sync`)))
    ws.on('message', (data: Buffer) => {
      bare.bytesReceived += data.byteLength
      const frame = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      const received = decodeReceived(framing, frame)
      if (received.kind === 'step2') resolve()
      onFrame(frame)
    })
  })
  return bare
}

// ---- readers -------------------------------------------------------------------------------

interface Reader {
  bare: Bare
  readonly docIndex: number
  count: number
  hash: number
  lastMicros: number
}

let readers: Reader[] = []
let latencies: number[] = []

async function openReaders(
  url: string,
  framing: Framing,
  docs: readonly string[],
  perDoc: number,
  urls: readonly string[] = [url],
): Promise<void> {
  readers = []
  latencies = []
  docs.forEach((doc, docIndex) => {
    for (let i = 0; i < perDoc; i++) {
      const reader: Reader = {
        bare: undefined as unknown as Bare,
        docIndex,
        count: 0,
        hash: 0x811c9dc5,
        lastMicros: 0,
      }
      reader.bare = openBare(urls[i % urls.length] ?? url, framing, doc, (frame) => {
        const received = decodeReceived(framing, frame)
        if (received.kind !== 'update') return
        const at = nowMicros()
        const stamp = readStamp(received.payload)
        if (stamp) latencies.push(at - stamp.sendMicros)
        reader.count++
        reader.lastMicros = at
        let hash = reader.hash
        for (const byte of received.payload) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0
        reader.hash = hash
      })
      readers.push(reader)
    }
  })
  await Promise.all(readers.map((reader) => reader.bare.synced))
}

async function drainReaders(expected: readonly number[], timeoutMs: number): Promise<Reply> {
  const deadline = performance.now() + timeoutMs
  const isComplete = (reader: Reader): boolean => reader.count >= (expected[reader.docIndex] ?? 0)
  const done = (): boolean => readers.every(isComplete)
  // A reader whose socket closed gets nothing more: once every incomplete reader is closed there is
  // nothing left to wait for, and the reply says which codes closed them.
  const hopeless = (): boolean =>
    readers.every((reader) => isComplete(reader) || reader.bare.closeCode !== undefined)
  while (!done() && !hopeless() && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const disconnected = readers.filter((reader) => !isComplete(reader) && reader.bare.closeCode !== undefined)
  return {
    type: 'drained',
    complete: done(),
    disconnectCodes: disconnected.map((reader) => reader.bare.closeCode ?? 0),
    latencies: Float64Array.from(latencies),
    counts: readers.map((reader) => reader.count),
    hashes: readers.map((reader) => reader.hash),
    docOf: readers.map((reader) => reader.docIndex),
    lastMicros: Math.max(0, ...readers.map((reader) => reader.lastMicros)),
  }
}

// ---- writers -------------------------------------------------------------------------------

/** Writer connections of finished writes, closed by the 'close' command. */
let openWriters: Bare[] = []

async function write(command: Extract<Command, { type: 'write' }>): Promise<Reply> {
  // Writers a failed scenario left open (it threw before its 'close'): closed here and forgotten,
  // so their close codes are not reported as this write's.
  for (const bare of openWriters) bare.ws.terminate()
  openWriters = []
  const random = createRandom(command.seed)
  const writers = command.docs.map((doc) => {
    const client = 1 + Math.floor(random() * 0x7fff_fffe)
    return {
      doc,
      /** Fraction of a period this writer runs ahead of the others, in [0, 1). */
      phase: random(),
      appender: createTextAppender(client),
      sent: 0,
      chars: 0,
      text: [] as string[],
      bare: undefined as unknown as Bare,
      acksPending: new Map<number, number>(),
    }
  })
  const ackLatencies: number[] = []
  for (const writer of writers) {
    writer.bare = openBare(command.url, command.framing, writer.doc, (frame) => {
      const received = decodeReceived(command.framing, frame)
      if (received.kind === 'ack') {
        const sentAt = writer.acksPending.get(received.counter)
        if (sentAt !== undefined) {
          ackLatencies.push(nowMicros() - sentAt)
          writer.acksPending.delete(received.counter)
        }
      }
    })
    openWriters.push(writer.bare)
  }
  await withTimeout(Promise.all(writers.map((writer) => writer.bare.synced)), 30_000, 'writers sync')

  const startedAt = performance.now()
  let maxBuffered = 0
  const keepText = command.keepText
  const maxChars = command.maxChars ?? Number.POSITIVE_INFINITY
  const total = Math.floor((command.durationMs * command.ratePerDoc) / 1000)
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsed = performance.now() - startedAt
      const stop = elapsed >= command.durationMs
      const dueElapsed = Math.min(elapsed, command.durationMs)
      for (const writer of writers) {
        if (writer.chars >= maxChars) continue
        // Writers keep their own phase (seeded), as independent agents do. In phase, every
        // session's update arrived in the same millisecond and a reader's latency measured the
        // server's whole burst of D updates rather than one relay. Each writer still sends exactly
        // the updates its rate and duration call for.
        const due = Math.min(total, Math.floor((dueElapsed * command.ratePerDoc) / 1000 + writer.phase))
        // Bounded burst: a stalled socket must not make one tick send without end.
        let burst = Math.min(due - writer.sent, 1000)
        while (burst-- > 0) {
          const token = stampToken(writer.sent, nowMicros())
          if (keepText) writer.text.push(token)
          writer.chars += token.length
          if (writer.chars >= maxChars) burst = 0
          writer.bare.ws.send(encodeUpdate(command.framing, writer.doc, writer.appender.append(token)))
          writer.sent++
          if (command.ackEvery > 0 && writer.sent % command.ackEvery === 0) {
            writer.acksPending.set(writer.sent, nowMicros())
            writer.bare.ws.send(encodeSyncStatus(writer.sent))
          }
        }
        maxBuffered = Math.max(maxBuffered, writer.bare.ws.bufferedAmount)
      }
      if (stop || writers.every((writer) => writer.chars >= maxChars)) resolve()
      else setTimeout(tick, 1)
    }
    tick()
  })
  const sendSeconds = (performance.now() - startedAt) / 1000
  if (command.ackEvery > 0) {
    const deadline = performance.now() + 15_000
    while (writers.some((writer) => writer.acksPending.size > 0) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
  const sent = writers.map((writer) => writer.sent)
  const texts = keepText ? writers.map((writer) => writer.text.join('')) : []
  // Left open (in openWriters since they were opened) until the 'close' command, after the readers
  // drained. Why: a slow server may still be reading a writer's backlog from its socket; closing
  // now starts ws's 30 s close timeout, after which the socket is destroyed and the server loses
  // the updates it had not read yet.
  return {
    type: 'written',
    sent,
    texts,
    sendSeconds,
    maxBuffered,
    ackLatencies: Float64Array.from(ackLatencies),
    acksMissing: writers.reduce((sum, writer) => sum + writer.acksPending.size, 0),
  }
}

// ---- idle connections ----------------------------------------------------------------------

let idle: Bare[] = []

async function openIdle(command: Extract<Command, { type: 'idle' }>): Promise<Reply> {
  const startedAt = performance.now()
  const opened: Bare[] = []
  for (let i = 0; i < command.perDoc; i++) {
    for (const doc of command.docs) {
      opened.push(openBare(command.url, command.framing, doc, () => {}))
      // Connect in batches so the test measures the server, not a SYN flood (unless asked).
      if (command.batch > 0 && opened.length % command.batch === 0) {
        await withTimeout(
          Promise.all(opened.slice(-command.batch).map((bare) => bare.synced)),
          60_000,
          'idle batch',
        )
      }
    }
  }
  const results = await Promise.allSettled(
    opened.map((bare) => withTimeout(bare.synced, 60_000, 'idle sync')),
  )
  const failed = results.filter((result) => result.status === 'rejected').length
  idle.push(...opened)
  return {
    type: 'connected',
    ms: performance.now() - startedAt,
    failed,
    bytes: opened.reduce((sum, bare) => sum + bare.bytesReceived, 0),
  }
}

/** Closes every connection of this process; returns the close codes of those the server had closed. */
async function closeAll(): Promise<number[]> {
  const all = [...idle, ...readers.map((reader) => reader.bare), ...openWriters]
  const closedByServer = all.flatMap((bare) => (bare.closeCode === undefined ? [] : [bare.closeCode]))
  await Promise.all(
    all.map(
      (bare) =>
        new Promise<void>((resolve) => {
          if (bare.ws.readyState === WebSocket.CLOSED) return resolve()
          const timer = setTimeout(() => {
            bare.ws.terminate()
            resolve()
          }, 5_000)
          bare.ws.once('close', () => {
            clearTimeout(timer)
            resolve()
          })
          bare.ws.close()
        }),
    ),
  )
  idle = []
  readers = []
  openWriters = []
  return closedByServer
}

// ---- Y.Doc clients: verification and catch-up ----------------------------------------------

/** Syncs a Y.Doc from the server once (fresh or from `doc`'s state) and returns what it cost. */
function syncDoc(
  url: string,
  framing: Framing,
  name: string,
  ydoc: Y.Doc,
  expectedLength?: number,
  applyUpdate: (update: Uint8Array) => void = (update) => Y.applyUpdate(ydoc, update),
  timeoutMs = expectedLength === undefined ? 120_000 : 30_000,
): Promise<{ ms: number; bytes: number; ws: WebSocket }> {
  const startedAt = performance.now()
  const ws = new WebSocket(`${url}/${name}`, { perMessageDeflate: false })
  ws.binaryType = 'nodebuffer'
  let bytes = 0
  let hasStep2 = false
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => {
        for (const frame of encodeHello(framing, name, Y.encodeStateVector(ydoc))) ws.send(frame)
      })
      ws.once('error', reject)
      ws.once('close', (code) => reject(new Error(`closed ${code} before sync`)))
      // Synced = step 2 received and, when the content is known, the text equal to it: the classic
      // server answers a client before it has loaded the stored state and sends that state later.
      const check = (): void => {
        if (hasStep2 && (expectedLength === undefined || ydoc.getText('text').length >= expectedLength)) {
          resolve({ ms: performance.now() - startedAt, bytes, ws })
        }
      }
      ws.on('message', (data: Buffer) => {
        bytes += data.byteLength
        const received = decodeReceived(
          framing,
          new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        )
        if (received.kind === 'update') applyUpdate(received.payload)
        if (received.kind === 'step1')
          ws.send(encodeStep2(framing, name, Y.encodeStateAsUpdate(ydoc, received.payload)))
        if (received.kind === 'step2') {
          Y.applyUpdate(ydoc, received.payload)
          hasStep2 = true
        }
        if (received.kind === 'update' || received.kind === 'step2') check()
      })
    }),
    timeoutMs,
    `sync ${name}`,
    // A server that lost part of the session shows here as a text short of what was written.
    () =>
      `step 2 ${hasStep2 ? 'received' : 'not received'}, ${ydoc.getText('text').length} of ${expectedLength ?? '?'} characters, ${bytes} bytes`,
  )
}

async function verify(command: Extract<Command, { type: 'verify' }>): Promise<Reply> {
  const results = await Promise.all(
    command.docs.map(async (name, index) => {
      const ydoc = new Y.Doc()
      const expected = command.texts[index]
      const synced = await syncDoc(
        command.url,
        command.framing,
        name,
        ydoc,
        expected?.length,
        undefined,
        command.timeoutMs,
      )
      synced.ws.close()
      const text = ydoc.getText('text').toString()
      return { ms: synced.ms, bytes: synced.bytes, ok: expected === undefined || text === expected, text }
    }),
  )
  return {
    type: 'verified',
    ok: results.map((result) => result.ok),
    ms: results.map((result) => result.ms),
    bytes: results.map((result) => result.bytes),
    texts: results.map((result) => result.text),
  }
}

const catchup = new Map<string, Y.Doc>()

async function catchupStep(command: Extract<Command, { type: 'catchup' }>): Promise<Reply> {
  // Keyed by server too: scenarios reuse document names against each target.
  const key = `${command.url}/${command.doc}`
  const ydoc = catchup.get(key) ?? new Y.Doc()
  catchup.set(key, ydoc)
  const synced = await syncDoc(command.url, command.framing, command.doc, ydoc, command.expectedLength)
  synced.ws.close()
  return { type: 'caughtUp', ms: synced.ms, bytes: synced.bytes, text: ydoc.getText('text').toString() }
}

let ydocReader:
  | { ydoc: Y.Doc; ws: WebSocket; micros: number[]; updates: number[]; bucketChars: number }
  | undefined

async function openYdocReader(command: Extract<Command, { type: 'ydocReader' }>): Promise<Reply> {
  const ydoc = new Y.Doc()
  // A provider listens to its document's updates (to send local ones); Yjs then encodes every
  // applied update for the listener, which is where the cost of a long text shows.
  ydoc.on('update', () => {})
  const reader = {
    ydoc,
    ws: undefined as unknown as WebSocket,
    micros: [] as number[],
    updates: [] as number[],
    bucketChars: command.bucketChars,
  }
  const text = ydoc.getText('text')
  // The one place updates are applied, timed, by the length of the text when they arrive.
  const synced = await syncDoc(command.url, command.framing, command.doc, ydoc, undefined, (update) => {
    const bucket = Math.floor(text.length / reader.bucketChars)
    const t0 = performance.now()
    Y.applyUpdate(ydoc, update)
    reader.micros[bucket] = (reader.micros[bucket] ?? 0) + (performance.now() - t0) * 1000
    reader.updates[bucket] = (reader.updates[bucket] ?? 0) + 1
  })
  reader.ws = synced.ws
  ydocReader = reader
  return { type: 'ydocReady' }
}

async function ydocResult(command: Extract<Command, { type: 'ydocResult' }>): Promise<Reply> {
  const reader = ydocReader
  if (!reader) throw new Error('no Y.Doc reader')
  // It may be behind the bare readers (its applies cost more as the text grows): wait, bounded.
  const deadline = performance.now() + command.timeoutMs
  const text = reader.ydoc.getText('text')
  while (text.length < command.expectedLength && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  reader.ws.close()
  ydocReader = undefined
  const buckets = Math.max(reader.micros.length, reader.updates.length)
  const updates = Array.from({ length: buckets }, (_, i) => reader.updates[i] ?? 0)
  return {
    type: 'ydocStats',
    applyMicrosPerUpdate: updates.map((n, i) => (n === 0 ? 0 : (reader.micros[i] ?? 0) / n)),
    updates,
    textLength: reader.ydoc.getText('text').length,
    text: reader.ydoc.getText('text').toString(),
  }
}

async function storm(command: Extract<Command, { type: 'storm' }>): Promise<Reply> {
  const startedAt = performance.now()
  const results = await Promise.allSettled(
    command.docs.map(async (name, i) => {
      const ydoc = new Y.Doc()
      const synced = await syncDoc(command.url, command.framing, name, ydoc, command.expectedLengths[i])
      synced.ws.close()
      return { bytes: synced.bytes, length: ydoc.getText('text').length }
    }),
  )
  const ms = performance.now() - startedAt
  let bytes = 0
  let failed = 0
  let mismatched = 0
  results.forEach((result, i) => {
    if (result.status === 'rejected') failed++
    else {
      bytes += result.value.bytes
      if (result.value.length !== command.expectedLengths[i]) mismatched++
    }
  })
  return { type: 'stormed', ms, failed, bytes, mismatched }
}

// ---- dispatch ------------------------------------------------------------------------------

async function handle(command: Command): Promise<Reply> {
  switch (command.type) {
    case 'readers':
      epochMs = command.epochMs
      await withTimeout(
        openReaders(command.url, command.framing, command.docs, command.perDoc, command.urls),
        60_000,
        'readers sync',
      )
      return { type: 'ready' }
    case 'write':
      epochMs = command.epochMs
      return write(command)
    case 'drain':
      return drainReaders(command.expected, command.timeoutMs)
    case 'idle':
      return openIdle(command)
    case 'close':
      return { type: 'closed', closedByServer: await closeAll() }
    case 'verify':
      return verify(command)
    case 'catchup':
      return catchupStep(command)
    case 'ydocReader':
      return openYdocReader(command)
    case 'ydocResult':
      return ydocResult(command)
    case 'storm':
      return storm(command)
    case 'exit':
      setImmediate(() => process.exit(0))
      return { type: 'closed', closedByServer: [] }
  }
}

// The runner went away (killed, crashed): do not linger with open sockets.
process.on('disconnect', () => process.exit(0))

process.on('message', (command: Command) => {
  handle(command).then(send, (error: unknown) => send({ type: 'error', message: String(error) }))
})
