// Seeded property: several peers make random edits; frames between them and the server's session
// logic travel in random order, some twice, some lost to reconnects. After a final exchange every
// peer, the server and a document rebuilt from storage hold the same content and state vector.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createSilentLogger } from '../../server/observability/log.js'
import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { createWriteQueue } from '../../server/persistence/write-queue.js'
import type { Connection } from '../../server/session/connection.js'
import { receiveFrame } from '../../server/session/peer.js'
import { createSessionRegistry, type SessionRegistry } from '../../server/session/registry.js'
import type { Session } from '../../server/session/session.js'
import { createMemoryTopics, MemoryPeer } from '../../server/transport/memory-transport.js'
import { ColloquyError } from '../../shared/errors.js'
import { ProtocolPeer } from '../helpers/protocol-peer.js'

type Command =
  | { kind: 'insert'; peer: number; at: number; text: string }
  | { kind: 'delete'; peer: number; at: number; length: number }
  | { kind: 'set'; peer: number; key: string; value: number }
  | { kind: 'toServer'; peer: number; pick: number; isDuplicate: boolean }
  | { kind: 'toPeer'; peer: number; pick: number; isDuplicate: boolean }
  | { kind: 'reconnect'; peer: number }

const PEERS = 3

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    peer: fc.nat(PEERS - 1),
    at: fc.nat(),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    peer: fc.nat(PEERS - 1),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 3 }),
  }),
  fc.record({
    kind: fc.constant('set' as const),
    peer: fc.nat(PEERS - 1),
    key: fc.constantFrom('a', 'b', 'c'),
    value: fc.nat(100),
  }),
  fc.record({
    kind: fc.constant('toServer' as const),
    peer: fc.nat(PEERS - 1),
    pick: fc.nat(),
    isDuplicate: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('toPeer' as const),
    peer: fc.nat(PEERS - 1),
    pick: fc.nat(),
    isDuplicate: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('reconnect' as const), peer: fc.nat(PEERS - 1) }),
)

interface Link {
  transport: MemoryPeer
  connection: Connection
  toServer: Uint8Array[]
  toPeer: Uint8Array[]
}

function summary(doc: Y.Doc): unknown {
  const map = doc.getMap('m').toJSON()
  return {
    text: doc.getText('t').toString(),
    map: Object.keys(map)
      .sort()
      .map((k) => [k, map[k]]),
    sv: Buffer.from(Y.encodeStateVector(doc)).toString('hex'),
  }
}

async function runScenario(commands: readonly Command[]): Promise<void> {
  const store = createMemoryStore()
  let registry: SessionRegistry | undefined
  const writes = createWriteQueue({ store, flushDelayMs: 0, onCommit: (d) => registry?.handleCommit(d) })
  registry = createSessionRegistry({
    store,
    writes,
    topics: createMemoryTopics(),
    logger: createSilentLogger(),
    limits: { maxLoadingQueueMessages: 100_000, maxLoadingQueueBytes: 1 << 30 },
    idleUnloadMs: 60_000,
    writeRefusal: () => (writes.isFailing ? new ColloquyError('storage-unavailable') : undefined),
  })
  const sessions = registry
  let session: Session | undefined
  const peers: ProtocolPeer[] = []
  const links: Link[] = []

  const connect = (index: number): Link => {
    const link = { toServer: [], toPeer: [] } as unknown as Link
    link.transport = new MemoryPeer((frame) => link.toPeer.push(frame), { sessionId: 'prop' })
    const attached = sessions.connect('prop', link.transport)
    session = attached.session
    link.connection = attached.connection
    const peer = peers[index]
    if (peer !== undefined) {
      peer.rebind((frame) => link.toServer.push(frame))
      peer.start()
    }
    return link
  }

  for (let i = 0; i < PEERS; i++) {
    links.push(connect(i))
    const link = links[i]!
    const peer = new ProtocolPeer((frame) => link.toServer.push(frame))
    peers.push(peer)
    peer.start()
  }
  await session!.whenLoaded

  // The edge: a frame is decoded with the link's codec, as a transport does, then handed over.
  const toSession = (link: Link, frame: Uint8Array): void => {
    receiveFrame(link.transport.codec, frame, {
      receive: (message) => session!.receive(link.connection, message),
      refuse: (error) => session!.refuse(link.connection, error),
    })
  }

  const take = (queue: Uint8Array[], pick: number, isDuplicate: boolean): Uint8Array | undefined => {
    if (queue.length === 0) return undefined
    const index = pick % queue.length
    const frame = queue[index]!
    if (!isDuplicate) queue.splice(index, 1)
    return frame
  }

  for (const cmd of commands) {
    const peer = peers[cmd.peer]!
    const link = links[cmd.peer]!
    switch (cmd.kind) {
      case 'insert': {
        const text = peer.doc.getText('t')
        text.insert(cmd.at % (text.length + 1), cmd.text)
        break
      }
      case 'delete': {
        const text = peer.doc.getText('t')
        if (text.length > 0) {
          const at = cmd.at % text.length
          text.delete(at, Math.min(cmd.length, text.length - at))
        }
        break
      }
      case 'set':
        peer.doc.getMap('m').set(cmd.key, cmd.value)
        break
      case 'toServer': {
        const frame = take(link.toServer, cmd.pick, cmd.isDuplicate)
        if (frame !== undefined) toSession(link, frame)
        break
      }
      case 'toPeer': {
        const frame = take(link.toPeer, cmd.pick, cmd.isDuplicate)
        if (frame !== undefined) peer.handle(frame)
        break
      }
      case 'reconnect': {
        // Frames in flight on the old connection are lost, as on a real network.
        link.transport.close(1006, 'dropped')
        session!.detach(link.connection)
        links[cmd.peer] = connect(cmd.peer)
        break
      }
    }
  }

  // Invariant before healing: storage holds exactly what the server's document holds, including
  // updates still pending on missing dependencies (their sender may never come back).
  await writes.flush()
  const midway = await store.load('prop')
  const replayed = new Y.Doc()
  for (const entry of midway.log) Y.applyUpdate(replayed, entry.update)
  const serverDoc = session!.document
  expect(summary(replayed)).toEqual(summary(serverDoc))
  expect(Y.encodeStateAsUpdate(replayed)).toEqual(Y.encodeStateAsUpdate(serverDoc))

  // Final exchange: twice every peer reconnects and all frames are delivered in order.
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < PEERS; i++) {
      links[i]!.transport.close(1006, 'final')
      session!.detach(links[i]!.connection)
      links[i] = connect(i)
    }
    let isBusy = true
    while (isBusy) {
      isBusy = false
      for (let i = 0; i < PEERS; i++) {
        const link = links[i]!
        while (link.toServer.length > 0) {
          isBusy = true
          toSession(link, link.toServer.shift()!)
        }
        while (link.toPeer.length > 0) {
          isBusy = true
          peers[i]!.handle(link.toPeer.shift()!)
        }
      }
    }
  }

  await writes.flush()
  const expected = summary(peers[0]!.doc)
  for (const peer of peers) expect(summary(peer.doc)).toEqual(expected)
  expect(summary(session!.document)).toEqual(expected)

  // What the store holds rebuilds the same document.
  const stored = await store.load('prop')
  const rebuilt = new Y.Doc()
  for (const entry of stored.log) Y.applyUpdate(rebuilt, entry.update)
  expect(summary(rebuilt)).toEqual(expected)
  expect(stored.log.map((e) => e.seq)).toEqual(stored.log.map((_, i) => i + 1))

  await writes.close()
  sessions.endAll(1001, 'done')
  await store.close()
}

describe('convergence through the session logic', () => {
  it('brings every peer, the server and storage to the same state', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
    console.log(`convergence property seed: ${seed}`)
    await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 120 }), runScenario), {
      seed,
      numRuns: 300,
    })
  })
})
