// Reference launcher: the floor under every server in the suite. A uWebSockets.js relay with no
// Y.Doc, no validation and no persistence: it keeps each document's updates in a list, answers a
// client's sync step 1 with their merge (Y.mergeUpdates, no diff), and publishes every update to
// the document's other sockets. Whatever a real server spends above this row's CPU per update is
// its own work (CRDT, storage, checks); what this row spends is the kernel, the loopback and the
// WebSocket framing, which no server on this machine can go below.
// Prints `{"msg":"floor listening","port":N}`. Usage: relay-floor.ts [--port 0]

import { parseArgs } from 'node:util'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { loadNativeUws } from '../../server/transport/uws.js'

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } })
const uws = loadNativeUws()

interface Data {
  readonly doc: string
}

const updates = new Map<string, Uint8Array[]>()

function frame(syncType: number, payload: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  encoding.writeVarUint(encoder, syncType)
  encoding.writeVarUint8Array(encoder, payload)
  return encoding.toUint8Array(encoder)
}

const app = uws.App()
app.ws<Data>('/*', {
  maxPayloadLength: 16 * 1024 * 1024,
  upgrade(res, req, context) {
    res.upgrade(
      { doc: req.getUrl().slice(1) },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    )
  },
  open(ws) {
    const { doc } = ws.getUserData()
    ws.subscribe(doc)
    if (!updates.has(doc)) updates.set(doc, [])
    ws.send(frame(0, new Uint8Array([0])), true)
  },
  message(ws, message) {
    const { doc } = ws.getUserData()
    const bytes = new Uint8Array(message)
    const decoder = decoding.createDecoder(bytes)
    if (decoding.readVarUint(decoder) !== 0) return // awareness and the rest: not relayed here
    const syncType = decoding.readVarUint(decoder)
    const payload = decoding.readVarUint8Array(decoder)
    const list = updates.get(doc) ?? []
    if (syncType === 0) {
      ws.send(frame(1, list.length === 0 ? new Uint8Array([0, 0]) : Y.mergeUpdates(list)), true)
      return
    }
    if (payload.byteLength <= 2) return // an empty step 2
    list.push(payload.slice())
    ws.publish(doc, message, true)
  },
})
app.listen('127.0.0.1', Number(values.port), (socket) => {
  if (!socket) throw new Error('could not listen')
  process.stdout.write(
    `${JSON.stringify({ msg: 'floor listening', port: uws.us_socket_local_port(socket) })}\n`,
  )
})
