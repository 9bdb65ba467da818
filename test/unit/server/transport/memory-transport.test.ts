import { describe, expect, it } from 'vitest'
import type { Peer } from '../../../../server/session/peer.js'
import { createMemoryTopics, MemoryPeer } from '../../../../server/transport/memory-transport.js'
import { encodeSyncUpdate, type Message } from '../../../../shared/protocol/message.js'
import { classicCodec } from '../../../../shared/protocol/wire-codec.js'
import { countEncodes, namedCodec } from '../named-codec.js'

const update: Message = { type: 'sync-update', update: new Uint8Array([0, 0]) }

function subscriber(codec = classicCodec, sessionId = 's'): { peer: MemoryPeer; frames: Uint8Array[] } {
  const frames: Uint8Array[] = []
  return { peer: new MemoryPeer((frame) => frames.push(frame), { codec, sessionId }), frames }
}

describe('memory topics', () => {
  it('encode a published message once for N subscribers of one protocol, and deliver the same bytes', () => {
    const codec = countEncodes(classicCodec)
    const topic = createMemoryTopics()('s')
    const peers = Array.from({ length: 5 }, () => subscriber(codec))
    for (const { peer } of peers) topic.subscribe(peer)
    topic.publish(update)
    expect(codec.encodes).toBe(1)
    topic.publish(update, peers[0]!.peer)
    expect(codec.encodes).toBe(2)
    const first = peers[1]!.frames[0]!
    expect(first).toEqual(encodeSyncUpdate(new Uint8Array([0, 0])))
    for (const { frames } of peers.slice(1)) expect(frames[0]).toBe(first)
    // The sender of the second publish is left out.
    expect(peers[0]!.frames.length).toBe(1)
    for (const { frames } of peers.slice(1)) expect(frames.length).toBe(2)
  })

  it('encode once per protocol when subscribers speak two', () => {
    const classic = countEncodes(classicCodec)
    const named = countEncodes(namedCodec)
    const topic = createMemoryTopics()('s')
    const peers = [
      ...Array.from({ length: 3 }, () => subscriber(classic)),
      ...Array.from({ length: 4 }, () => subscriber(named)),
    ]
    for (const { peer } of peers) topic.subscribe(peer)
    const size = topic.publish(update)
    expect([classic.encodes, named.encodes]).toEqual([1, 1])
    const namedFrame = peers[3]!.frames[0]!
    expect(size).toBe(namedFrame.byteLength)
    expect(namedCodec.decode(namedFrame)).toMatchObject({ type: 'sync-update', sessionId: 's' })
  })

  it('encode nothing when the sender is the only subscriber', () => {
    const codec = countEncodes(classicCodec)
    const topic = createMemoryTopics()('s')
    const only = subscriber(codec)
    topic.subscribe(only.peer)
    expect(topic.publish(update, only.peer)).toBe(0)
    expect(codec.encodes).toBe(0)
  })

  it('hand a peer of another transport the message to encode itself', () => {
    const received: Message[] = []
    const foreign: Peer = {
      id: -1,
      remote: 'elsewhere',
      codec: classicCodec,
      send: (message) => received.push(message),
      close: () => {},
    }
    const topic = createMemoryTopics()('s')
    topic.subscribe(foreign)
    topic.publish(update)
    expect(received).toEqual([update])
  })
})
