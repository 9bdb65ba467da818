import { afterEach, describe, expect, it, vi } from 'vitest'
import { createSilentLogger } from '../../../../server/observability/log.js'
import type { Peer } from '../../../../server/session/peer.js'
import {
  createHocuspocusMux,
  type DocumentPeerHooks,
  type HocuspocusMuxOptions,
  type MuxSocket,
} from '../../../../server/transport/hocuspocus-mux.js'
import type { Admission, ConnectionHandler } from '../../../../server/transport/uws-transport.js'
import { ColloquyError } from '../../../../shared/errors.js'
import { encodeHocuspocus, hocuspocusCodec } from '../../../../shared/protocol/hocuspocus-codec.js'
import { AuthScope, type Message } from '../../../../shared/protocol/message.js'

/** A socket that records frames and its end, and peers that record what they are sent. */
function fakeSocket() {
  const frames: Message[] = []
  const peers = new Map<string, { peer: Peer; hooks: DocumentPeerHooks; sent: Message[] }>()
  let ended: [number, string] | undefined
  const socket: MuxSocket = {
    remote: 'test',
    sendFrame: (frame) => frames.push(hocuspocusCodec.decode(frame)),
    end(code, reason) {
      ended = [code, reason]
    },
    documentPeer(documentName, hooks) {
      const sent: Message[] = []
      let isClosed = false
      const peer: Peer = {
        id: peers.size + 1,
        remote: 'test',
        codec: hocuspocusCodec,
        send(message) {
          const out = hooks.outgoing(message)
          if (!isClosed && out !== undefined) sent.push(out)
        },
        close(code, reason) {
          if (isClosed) return
          isClosed = true
          hooks.closed(code, reason)
        },
      }
      peers.set(documentName, { peer, hooks, sent })
      return peer
    },
  }
  return {
    socket,
    frames,
    peers,
    get ended() {
      return ended
    },
  }
}

/** Handlers that record what reaches the session. */
function recordingAccept() {
  const received = new Map<string, Message[]>()
  const closed = new Map<string, number>()
  const accept = (sessionId: string): ConnectionHandler => {
    const list: Message[] = []
    received.set(sessionId, list)
    return {
      receive: (message) => list.push(message),
      refuse: () => {},
      closed: (code) => closed.set(sessionId, code),
    }
  }
  return { accept, received, closed }
}

function options(overrides: Partial<HocuspocusMuxOptions> = {}): HocuspocusMuxOptions {
  return {
    logger: createSilentLogger(),
    authenticate: (): Admission => ({ admitted: 'claims' }),
    scopeOf: () => AuthScope.ReadWrite,
    accept: recordingAccept().accept,
    maxDocuments: 10,
    opensPerSecond: 0,
    maxQueuedMessages: 3,
    maxQueuedBytes: 1024,
    authDeadlineMs: 0,
    ...overrides,
  }
}

const frame = (message: Message, name: string): Uint8Array => encodeHocuspocus(message, name)
const update = { type: 'sync-update', update: new Uint8Array([0, 0]) } as const

afterEach(() => {
  vi.useRealTimers()
})

describe('createHocuspocusMux', () => {
  it('queues a document’s messages while its token is checked and delivers them in order after', async () => {
    const fake = fakeSocket()
    const sessions = recordingAccept()
    let admit: (admission: Admission) => void = () => {}
    const mux = createHocuspocusMux(
      fake.socket,
      options({
        accept: sessions.accept,
        authenticate: () => new Promise<Admission>((resolve) => (admit = resolve)),
      }),
    )
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    mux.receive(frame({ type: 'sync-step1', stateVector: new Uint8Array([0]) }, 'doc'))
    mux.receive(frame({ type: 'awareness', update: new Uint8Array([0]) }, 'doc'))
    expect(sessions.received.get('doc')).toBeUndefined()
    admit({ admitted: 'claims' })
    await Promise.resolve()
    expect(fake.frames).toEqual([{ type: 'authenticated', scope: 'read-write', sessionId: 'doc' }])
    expect(sessions.received.get('doc')!.map((m) => m.type)).toEqual(['sync-step1', 'awareness'])
  })

  it('follows every update and step 2 with a sync-status for the session to echo once durable', () => {
    const fake = fakeSocket()
    const sessions = recordingAccept()
    const mux = createHocuspocusMux(fake.socket, options({ accept: sessions.accept }))
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    mux.receive(frame(update, 'doc'))
    mux.receive(frame({ type: 'sync-step2', update: new Uint8Array([0, 0]) }, 'doc'))
    mux.receive(frame({ type: 'awareness', update: new Uint8Array([0]) }, 'doc'))
    expect(sessions.received.get('doc')!.map((m) => m.type)).toEqual([
      'sync-update',
      'sync-status',
      'sync-step2',
      'sync-status',
      'awareness',
    ])
  })

  it('turns a refused write into sync-status 0 and drops that update’s own sync-status 1', () => {
    const fake = fakeSocket()
    const mux = createHocuspocusMux(fake.socket, options())
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    const { peer, sent } = fake.peers.get('doc')!
    peer.send({ type: 'auth', authType: 0, reason: 'read-only' })
    peer.send({ type: 'sync-status', payload: Uint8Array.of(1) })
    peer.send({ type: 'sync-status', payload: Uint8Array.of(1) })
    expect(sent).toEqual([
      { type: 'sync-status', payload: Uint8Array.of(0) },
      { type: 'sync-status', payload: Uint8Array.of(1) },
    ])
  })

  it('refuses one more message than the queue holds before authentication by closing that document', () => {
    const fake = fakeSocket()
    const mux = createHocuspocusMux(
      fake.socket,
      options({ authenticate: () => new Promise<Admission>(() => {}) }),
    )
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    for (let i = 0; i < 4; i++) mux.receive(frame(update, 'doc'))
    expect(fake.frames).toEqual([
      { type: 'close', reason: '4503 too many messages before authentication', sessionId: 'doc' },
    ])
    expect(fake.ended).toBeUndefined()
  })

  it('drops a document the client closes while its token is checked', async () => {
    const fake = fakeSocket()
    const sessions = recordingAccept()
    let admit: (admission: Admission) => void = () => {}
    const mux = createHocuspocusMux(
      fake.socket,
      options({ accept: sessions.accept, authenticate: () => new Promise<Admission>((r) => (admit = r)) }),
    )
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    mux.receive(frame({ type: 'close', reason: '' }, 'doc'))
    admit({ admitted: 'claims' })
    await Promise.resolve()
    expect(sessions.received.has('doc')).toBe(false)
    expect(fake.frames).toEqual([])
  })

  it('detaches every open document when the socket closes, with the socket’s code', () => {
    const fake = fakeSocket()
    const sessions = recordingAccept()
    const mux = createHocuspocusMux(fake.socket, options({ accept: sessions.accept }))
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'a'))
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'b'))
    mux.closed(1006)
    expect([...sessions.closed.entries()]).toEqual([
      ['a', 1006],
      ['b', 1006],
    ])
  })

  it('closes the whole socket when its session says the server is going away, so the provider reconnects', () => {
    const fake = fakeSocket()
    const mux = createHocuspocusMux(fake.socket, options())
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    fake.peers.get('doc')!.peer.close(1001, 'server shutting down')
    expect(fake.ended).toEqual([1001, 'server shutting down'])
    void mux
  })

  it('closes a socket that authenticates no document before the deadline with 4401', () => {
    vi.useFakeTimers()
    const fake = fakeSocket()
    createHocuspocusMux(
      fake.socket,
      options({ authDeadlineMs: 1_000, authenticate: () => ({ error: new ColloquyError('unauthorized') }) }),
    )
    vi.advanceTimersByTime(999)
    expect(fake.ended).toBeUndefined()
    vi.advanceTimersByTime(2)
    expect(fake.ended).toEqual([4401, 'no document authenticated'])
  })

  it('lets a socket that authenticated a document in time live past the deadline', () => {
    vi.useFakeTimers()
    const fake = fakeSocket()
    const mux = createHocuspocusMux(fake.socket, options({ authDeadlineMs: 1_000 }))
    mux.receive(frame({ type: 'auth-token', token: 't' }, 'doc'))
    vi.advanceTimersByTime(5_000)
    expect(fake.ended).toBeUndefined()
  })
})
