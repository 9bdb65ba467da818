// The session behind the wire seam: it handles decoded messages only, so a classic y-websocket peer
// and a peer of another protocol share one session, and the classic relay stays zero-re-encode.

import { afterEach, describe, expect, it } from 'vitest'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { createMemoryStore } from '../../../../server/persistence/memory-store.js'
import type { Store } from '../../../../server/persistence/store.js'
import { receiveFrame } from '../../../../server/session/peer.js'
import { MemoryPeer } from '../../../../server/transport/memory-transport.js'
import { CloseCode } from '../../../../shared/protocol/close-codes.js'
import { encodeAwareness, encodeSyncStatus, encodeSyncUpdate } from '../../../../shared/protocol/message.js'
import { createMemoryHarness, drainTasks, type MemoryHarness } from '../../../helpers/memory-server.js'
import { ProtocolPeer } from '../../../helpers/protocol-peer.js'
import { frameNamed, namedCodec } from '../named-codec.js'

let harness: MemoryHarness | undefined
afterEach(async () => {
  await harness?.close()
  harness = undefined
})

/** A test peer speaking the named protocol: its frames carry the session name before each message. */
function connectNamed(h: MemoryHarness, sessionId: string): { peer: ProtocolPeer; names: string[] } {
  const names: string[] = []
  let deliverToSession: ((frame: Uint8Array) => void) | undefined
  const peer = new ProtocolPeer((classicFrame) => {
    // The client frames its classic message with the session's name, as the named protocol does.
    const frame = frameNamed(sessionId, classicFrame)
    queueMicrotask(() => deliverToSession?.(frame))
  })
  const transport = new MemoryPeer(
    (frame) =>
      queueMicrotask(() => {
        const message = namedCodec.decode(frame)
        names.push(message.sessionId ?? '')
        peer.handle(message.classicFrame!)
      }),
    { codec: namedCodec, sessionId },
  )
  const { session, connection } = h.registry.connect(sessionId, transport)
  deliverToSession = (frame) =>
    receiveFrame(transport.codec, frame, {
      receive: (message) => session.receive(connection, message),
      refuse: (error) => session.refuse(connection, error),
    })
  peer.start()
  return { peer, names }
}

describe('a session behind the wire seam', () => {
  it('refuses a malformed frame on arrival while it loads, and queues no unknown message', async () => {
    const inner = createMemoryStore()
    const never = new Promise<never>(() => {})
    const stuck: Store = { ...inner, load: () => never, release: (id) => inner.release(id) }
    harness = createMemoryHarness({ store: stuck })
    const a = harness.connect('s', { start: false })
    const b = harness.connect('s', { start: false })
    a.peer.sendRaw(new Uint8Array([0, 2, 200]))
    b.peer.sendRaw(new Uint8Array([77]))
    b.peer.sendRaw(encodeSyncUpdate(new Uint8Array([0, 0])))
    await drainTasks()
    expect(a.transport.closeCode).toBe(CloseCode.MalformedMessage)
    expect(b.transport.isClosed).toBe(false)
    expect(b.connection.loadingQueue.map((m) => m.type)).toEqual(['sync-update'])
  })

  it('relays a sync-update to classic peers as the very frame it received', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    const b = harness.connect('s')
    await harness.settle()
    const source = new Y.Doc()
    source.getText('t').insert(0, 'x')
    const sent = encodeSyncUpdate(Y.encodeStateAsUpdate(source))
    a.peer.sendRaw(sent)
    await harness.settle()
    const relayed = b.peer.messages.filter((m) => m.type === 'sync-update')
    expect(relayed).toHaveLength(1)
    // Same buffer: the bytes delivered are the bytes received, not a re-encoding of them.
    if (relayed[0]?.type !== 'sync-update') throw new Error('no relay')
    expect(relayed[0].update.buffer).toBe(sent.buffer)
  })

  it('echoes a sync-status as the very frame it received, once durable', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    a.peer.doc.getText('t').insert(0, 'x')
    const sent = encodeSyncStatus(7)
    a.peer.sendRaw(sent)
    await a.peer.whenAcked(7)
    expect((await harness.store.load('s')).log.length).toBe(1)
    const status = a.peer.messages.find((m) => m.type === 'sync-status')
    if (status?.type !== 'sync-status') throw new Error('no ack')
    expect(status.payload.buffer).toBe(sent.buffer)
  })

  it('lets a classic peer and a peer of another protocol edit one session and see each other', async () => {
    harness = createMemoryHarness()
    const classic = harness.connect('s')
    const named = connectNamed(harness, 's')
    await harness.settle()
    classic.peer.doc.getText('t').insert(0, 'hello')
    await harness.settle()
    expect(named.peer.doc.getText('t').toString()).toBe('hello')
    named.peer.doc.getText('t').insert(5, ' world')
    await harness.settle()
    expect(classic.peer.doc.getText('t').toString()).toBe('hello world')
    expect(Y.encodeStateVector(classic.peer.doc)).toEqual(Y.encodeStateVector(named.peer.doc))
    expect((await harness.store.load('s')).log.length).toBe(2)
    // Every frame the named peer got was framed for this session.
    expect(new Set(named.names)).toEqual(new Set(['s']))

    const presence = new awarenessProtocol.Awareness(new Y.Doc())
    presence.setLocalState({ name: 'named' })
    named.peer.sendRaw(
      encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(presence, [presence.clientID])),
    )
    await harness.settle()
    expect(classic.peer.messages.some((m) => m.type === 'awareness')).toBe(true)
    const counter = named.peer.requestAck()
    await named.peer.whenAcked(counter)
  })
})
