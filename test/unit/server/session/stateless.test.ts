// Stateless messages (the Hocuspocus protocol's): relayed by the session to its other peers whose
// protocol carries them, encoded once per protocol, never stored, never sent to classic peers.

import { afterEach, describe, expect, it } from 'vitest'
import { MemoryPeer } from '../../../../server/transport/memory-transport.js'
import { hocuspocusCodec } from '../../../../shared/protocol/hocuspocus-codec.js'
import type { Message } from '../../../../shared/protocol/message.js'
import { createMemoryHarness, type MemoryHarness } from '../../../helpers/memory-server.js'

let harness: MemoryHarness | undefined
afterEach(async () => {
  await harness?.close()
  harness = undefined
})

/** A Hocuspocus peer attached to `sessionId`, recording the messages it is sent. */
function attachHocuspocus(h: MemoryHarness, sessionId: string) {
  const received: Message[] = []
  const transport = new MemoryPeer((frame) => received.push(hocuspocusCodec.decode(frame)), {
    codec: hocuspocusCodec,
    sessionId,
  })
  const { session, connection } = h.registry.connect(sessionId, transport)
  return { received, send: (message: Message) => session.receive(connection, message) }
}

describe('a stateless message', () => {
  it('reaches the other Hocuspocus peers of its session only: not its sender, not classic peers, not the store', async () => {
    harness = createMemoryHarness()
    const classic = harness.connect('s')
    const sender = attachHocuspocus(harness, 's')
    const receiver = attachHocuspocus(harness, 's')
    const elsewhere = attachHocuspocus(harness, 'other')
    await harness.settle()
    const classicBefore = classic.peer.messages.length

    sender.send({ type: 'stateless', payload: 'typing' })
    await harness.settle()

    expect(receiver.received.filter((m) => m.type === 'stateless')).toEqual([
      { type: 'stateless', payload: 'typing', sessionId: 's' },
    ])
    expect(sender.received.some((m) => m.type === 'stateless')).toBe(false)
    expect(elsewhere.received.some((m) => m.type === 'stateless')).toBe(false)
    expect(classic.peer.messages.length).toBe(classicBefore)
    expect(classic.transport.isClosed).toBe(false)
    expect(classic.session.lastSeq).toBe(0)
  })
})
