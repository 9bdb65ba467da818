import * as encoding from 'lib0/encoding'
import { afterEach, describe, expect, it } from 'vitest'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import { createMemoryStore } from '../../../../server/persistence/memory-store.js'
import type { Store, StoredSession } from '../../../../server/persistence/store.js'
import { ColloquyError } from '../../../../shared/errors.js'
import { CloseCode } from '../../../../shared/protocol/close-codes.js'
import { encodeAwareness, encodeSyncUpdate } from '../../../../shared/protocol/message.js'
import { createControllableStore } from '../../../helpers/controllable-store.js'
import { createMemoryHarness, drainTasks, type MemoryHarness } from '../../../helpers/memory-server.js'
import { until } from '../../../helpers/wait.js'

let harness: MemoryHarness | undefined
afterEach(async () => {
  await harness?.close()
  harness = undefined
})

function text(doc: Y.Doc): string {
  return doc.getText('t').toString()
}

describe('Session', () => {
  it('relays an update to the other peers and never echoes it to its sender', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    const b = harness.connect('s')
    await harness.settle()
    const before = a.peer.messages.length
    a.peer.doc.getText('t').insert(0, 'hello')
    await harness.settle()
    expect(text(b.peer.doc)).toBe('hello')
    const echoed = a.peer.messages.slice(before).filter((m) => m.type === 'sync-update')
    expect(echoed).toEqual([])
  })

  it('stores an update once, however often it is received', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    const source = new Y.Doc()
    source.getText('t').insert(0, 'x')
    const update = Y.encodeStateAsUpdate(source)
    for (let i = 0; i < 5; i++) a.peer.sendRaw(encodeSyncUpdate(update))
    await harness.settle()
    const stored = await harness.store.load('s')
    expect(stored.log.length).toBe(1)
    expect(stored.meta?.lastSeq).toBe(1)
  })

  it('sends sync step 1 only after the session has loaded, and handles frames queued meanwhile', async () => {
    const inner = createMemoryStore()
    const seed = new Y.Doc()
    seed.getText('t').insert(0, 'stored')
    await inner.append([{ sessionId: 's', time: 1, update: Y.encodeStateAsUpdate(seed) }])
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const slowStore: Store = {
      ...inner,
      load: async (id): Promise<StoredSession> => {
        await gate
        return inner.load(id)
      },
      release: (id) => inner.release(id),
    }
    harness = createMemoryHarness({ store: slowStore })
    const a = harness.connect('s')
    a.peer.doc.getText('t').insert(0, 'early ')
    await drainTasks()
    expect(a.peer.messages).toEqual([])
    release?.()
    await harness.settle()
    expect(a.peer.messages[0]?.type).toBe('sync-step1')
    expect(text(a.peer.doc)).toContain('stored')
    expect(text(a.peer.doc)).toContain('early')
    const stored = await inner.load('s')
    expect(stored.log.length).toBe(2)
  })

  it('closes a connection that floods frames while the session loads', async () => {
    const inner = createMemoryStore()
    const never = new Promise<never>(() => {})
    const stuck: Store = { ...inner, load: () => never, release: (id) => inner.release(id) }
    harness = createMemoryHarness({ store: stuck, maxLoadingQueueMessages: 5 })
    const a = harness.connect('s', { start: false })
    for (let i = 0; i < 6; i++) a.peer.sendRaw(encodeSyncUpdate(new Uint8Array([0, 0])))
    await drainTasks()
    expect(a.transport.closeCode).toBe(CloseCode.TryAgainLater)
  })

  it('queues any number of frames while the session loads when the message limit is 0', async () => {
    const inner = createMemoryStore()
    const never = new Promise<never>(() => {})
    const stuck: Store = { ...inner, load: () => never, release: (id) => inner.release(id) }
    harness = createMemoryHarness({ store: stuck, maxLoadingQueueMessages: 0 })
    const a = harness.connect('s', { start: false })
    for (let i = 0; i < 50; i++) a.peer.sendRaw(encodeSyncUpdate(new Uint8Array([0, 0])))
    await drainTasks()
    expect(a.transport.isClosed).toBe(false)
    expect(a.connection.loadingQueue.length).toBe(50)
  })

  it('closes only the offending connection on an invalid update, storing nothing', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    const b = harness.connect('s')
    await harness.settle()
    a.peer.sendRaw(encodeSyncUpdate(new Uint8Array([1, 2, 3, 4, 5])))
    await harness.settle()
    expect(a.transport.closeCode).toBe(CloseCode.InvalidUpdate)
    expect(b.transport.isClosed).toBe(false)
    expect((await harness.store.load('s')).log).toEqual([])
    b.peer.doc.getText('t').insert(0, 'still fine')
    await harness.settle()
    expect((await harness.store.load('s')).log.length).toBe(1)
  })

  it('closes on a malformed message, and ignores message and sync types it does not know', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    const b = harness.connect('s')
    await harness.settle()
    a.peer.sendRaw(new Uint8Array([0, 2, 200]))
    b.peer.sendRaw(new Uint8Array([77]))
    b.peer.sendRaw(new Uint8Array([0, 9, 1, 42]))
    await harness.settle()
    expect(a.transport.closeCode).toBe(CloseCode.MalformedMessage)
    expect(b.transport.isClosed).toBe(false)
    b.peer.doc.getText('t').insert(0, 'still here')
    await b.peer.whenAcked(b.peer.requestAck())
    expect((await harness.store.load('s')).log.length).toBe(1)
  })

  it('acknowledges a sync-status only once the updates before it are durable', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    a.peer.doc.getText('t').insert(0, 'durable?')
    const counter = a.peer.requestAck()
    await a.peer.whenAcked(counter)
    const stored = await harness.store.load('s')
    expect(stored.log.length).toBe(1)
    expect(harness.writeQueue.pendingFor('s')).toBe(0)
  })

  it('answers a sync-status at once when nothing is pending', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    const counter = a.peer.requestAck()
    await drainTasks()
    expect(a.peer.acks).toEqual([counter])
  })

  it('refuses updates with a retryable close while writes are refused, and accepts them after', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    harness.setWriteRefusal(new ColloquyError('storage-unavailable'))
    a.peer.doc.getText('t').insert(0, 'refused')
    await harness.settle()
    expect(a.transport.closeCode).toBe(CloseCode.StorageUnavailable)
    expect((await harness.store.load('s')).log).toEqual([])
    harness.setWriteRefusal(undefined)
    const again = harness.connect('s', { doc: a.peer.doc })
    await harness.settle()
    expect((await harness.store.load('s')).log.length).toBe(1)
    expect(again.transport.isClosed).toBe(false)
  })

  it("relays awareness and removes a peer's states for everyone when it disconnects", async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    const b = harness.connect('s')
    await harness.settle()
    const awareness = new awarenessProtocol.Awareness(a.peer.doc)
    awareness.setLocalState({ name: 'alice' })
    a.peer.sendRaw(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(awareness, [a.peer.doc.clientID])))
    await harness.settle()
    const seen = new awarenessProtocol.Awareness(new Y.Doc())
    for (const m of b.peer.messages) {
      if (m.type === 'awareness') awarenessProtocol.applyAwarenessUpdate(seen, m.update, 'server')
    }
    expect(seen.getStates().get(a.peer.doc.clientID)).toEqual({ name: 'alice' })
    a.disconnect()
    await harness.settle()
    for (const m of b.peer.messages) {
      if (m.type === 'awareness') awarenessProtocol.applyAwarenessUpdate(seen, m.update, 'server')
    }
    expect(seen.getStates().has(a.peer.doc.clientID)).toBe(false)
    awareness.destroy()
    seen.destroy()
  })

  it('closes a connection whose awareness update holds invalid JSON', async () => {
    harness = createMemoryHarness()
    const a = harness.connect('s')
    await harness.settle()
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint(encoder, 5)
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarString(encoder, '{not json')
    a.peer.sendRaw(encodeAwareness(encoding.toUint8Array(encoder)))
    await harness.settle()
    expect(a.transport.closeCode).toBe(CloseCode.MalformedMessage)
  })

  it('unloads an idle session only after its writes are durable, and reloads it intact', async () => {
    harness = createMemoryHarness({ idleUnloadMs: 0 })
    const a = harness.connect('s')
    await harness.settle()
    a.peer.doc.getText('t').insert(0, 'kept')
    await drainTasks()
    a.disconnect()
    await until(() => harness?.registry.get('s') === undefined, 2_000, 'session unloaded')
    expect(harness.writeQueue.pendingFor('s')).toBe(0)
    const b = harness.connect('s')
    await harness.settle()
    expect(text(b.peer.doc)).toBe('kept')
  })

  it('acks by queue position and gives a live snapshot the seq of its own last update, not of a later one committed with it', async () => {
    const controls = createControllableStore(createMemoryStore())
    harness = createMemoryHarness({ store: controls.store })
    const a = harness.connect('s')
    await harness.settle()
    const release = controls.hold()
    a.peer.doc.getText('t').insert(0, 'x')
    await controls.whenAppendCalls(1)
    // x is in flight; y and z queue behind it and commit together, after it.
    a.peer.doc.getText('t').insert(1, 'y')
    const ackAfterY = a.peer.requestAck()
    await drainTasks()
    const session = harness.registry.get('s')!
    const snapshot = session.snapshot()
    expect(snapshot).toBeDefined()
    a.peer.doc.getText('t').insert(2, 'z')
    await drainTasks()
    // Nothing is durable yet: no ack, and the session knows no seq for its updates.
    expect(a.peer.acks).not.toContain(ackAfterY)
    expect(session.lastSeq).toBe(0)
    release()
    expect(await snapshot!.durable()).toBe(2)
    await a.peer.whenAcked(ackAfterY)
    await harness.settle()
    expect(session.lastSeq).toBe(3)
    const state = new Y.Doc()
    Y.applyUpdate(state, snapshot!.state)
    expect(text(state)).toBe('xy')
  })
})
