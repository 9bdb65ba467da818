// The uWS transport's side of the wire seam, on 127.0.0.1 port 0: frames decoded at the edge with
// the socket's codec, and a topic's publish encoded once per protocol, not once per socket.

import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSilentLogger } from '../../../../server/observability/log.js'
import type { Peer, Topic } from '../../../../server/session/peer.js'
import { loadNativeUws } from '../../../../server/transport/uws.js'
import { createUwsTransport, type UwsTransport } from '../../../../server/transport/uws-transport.js'
import { ColloquyError } from '../../../../shared/errors.js'
import { encodeSyncUpdate, type Message } from '../../../../shared/protocol/message.js'
import { classicCodec } from '../../../../shared/protocol/wire-codec.js'
import { until, withTimeout } from '../../../helpers/wait.js'
import { countEncodes } from '../named-codec.js'

interface Client {
  readonly socket: WebSocket
  readonly frames: Uint8Array[]
}

interface Accepted {
  readonly peer: Peer
  readonly messages: Message[]
  readonly refusals: unknown[]
}

let transport: UwsTransport | undefined
const sockets: WebSocket[] = []

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate()
  await until(() => (transport?.connectionCount ?? 0) === 0, 5_000, 'sockets closed')
  transport?.stopListening()
  transport = undefined
})

async function start(codec = classicCodec): Promise<{ topic: Topic; accepted: Accepted[] }> {
  const accepted: Accepted[] = []
  let topic: Topic | undefined
  transport = await createUwsTransport({
    uws: loadNativeUws(),
    host: '127.0.0.1',
    port: 0,
    maxMessageBytes: 1 << 20,
    maxBackpressureBytes: 1 << 20,
    logger: createSilentLogger(),
    codec,
    admit: () => ({ admitted: null }),
    accept(_sessionId, peer) {
      const entry: Accepted = { peer, messages: [], refusals: [] }
      accepted.push(entry)
      topic!.subscribe(peer)
      return {
        receive: (message) => entry.messages.push(message),
        refuse: (error) => entry.refusals.push(error),
        closed: () => {},
      }
    },
    http: (res) => {
      res.writeStatus('404 Not Found').end()
    },
  })
  topic = transport.topic('s')
  return { topic, accepted }
}

async function connect(count: number): Promise<Client[]> {
  const clients: Client[] = []
  for (let i = 0; i < count; i++) {
    const socket = new WebSocket(`ws://127.0.0.1:${transport!.port}/s`)
    sockets.push(socket)
    const frames: Uint8Array[] = []
    socket.on('message', (data: Buffer) => frames.push(new Uint8Array(data)))
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve())
        socket.once('error', reject)
      }),
      10_000,
      'websocket open',
    )
    clients.push({ socket, frames })
  }
  await until(() => transport!.connectionCount === count, 5_000, 'all accepted')
  return clients
}

const update: Message = { type: 'sync-update', update: new Uint8Array([0, 0]) }
const frame = encodeSyncUpdate(new Uint8Array([0, 0]))

describe('the uWS transport', () => {
  it('encodes a published message once for every socket of its protocol, leaving out the sender', async () => {
    const codec = countEncodes(classicCodec)
    const { topic, accepted } = await start(codec)
    const clients = await connect(4)
    expect(topic.publish(update)).toBe(frame.length)
    expect(codec.encodes).toBe(1)
    topic.publish(update, accepted[0]!.peer)
    expect(codec.encodes).toBe(2)
    await until(() => clients.slice(1).every((c) => c.frames.length === 2), 5_000, 'relays arrived')
    for (const client of clients.slice(1)) expect(client.frames).toEqual([frame, frame])
    await until(() => clients[0]!.frames.length >= 1, 5_000, 'first relay arrived')
    expect(clients[0]!.frames).toEqual([frame])
  })

  it('decodes each frame at the edge with the codec, keeping the frame, and refuses what it cannot decode', async () => {
    const { accepted } = await start()
    const [client] = await connect(1)
    client!.socket.send(frame)
    client!.socket.send(new Uint8Array([0, 2, 200]))
    client!.socket.send(new Uint8Array([77]))
    const entry = accepted[0]!
    await until(() => entry.messages.length + entry.refusals.length === 3, 5_000, 'frames handled')
    expect(entry.messages).toHaveLength(1)
    expect(entry.messages[0]).toMatchObject({ type: 'sync-update', update: new Uint8Array([0, 0]) })
    expect(entry.messages[0]!.classicFrame).toEqual(frame)
    const codes = entry.refusals.map((error) => (error instanceof ColloquyError ? error.code : 'foreign'))
    expect(codes).toEqual(['malformed-message', 'unknown-message-type'])
  })

  it("sends a peer's messages encoded with its codec", async () => {
    const codec = countEncodes(classicCodec)
    const { accepted } = await start(codec)
    const [client] = await connect(1)
    accepted[0]!.peer.send({ type: 'query-awareness' })
    await until(() => client!.frames.length === 1, 5_000, 'message arrived')
    expect(client!.frames[0]).toEqual(new Uint8Array([3]))
    expect(codec.encodes).toBe(1)
  })
})
