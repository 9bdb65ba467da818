// Stock y-websocket 3.1.0 providers (with `ws`) writing documents into a classic server, run as a
// plain Node process. Usage: node import-classic-clients.mjs <port> <name>... Prints one JSON line:
// { "<name>": "<base64 Yjs state>" } once every document converged on two writers and a reader.
// Run outside vitest: inside the vitest worker these providers received the classic server's
// relayed updates but did not integrate them (not investigated further); a plain Node process does.

import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const [portArg, ...names] = process.argv.slice(2)
const url = `ws://127.0.0.1:${portArg}`
const deadline = Date.now() + 20_000
const providers = []

function connect(name, doc) {
  const provider = new WebsocketProvider(url, name, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  providers.push(provider)
  return provider
}

async function until(predicate, label) {
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${label}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Content and state vector, with map keys sorted (Y.Map key order differs between replicas). */
const canonical = (doc) =>
  JSON.stringify({
    t: doc.getText('t').toString(),
    m: Object.entries(doc.getMap('m').toJSON()).sort(),
    a: doc.getArray('a').toJSON(),
    sv: [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort((x, y) => x[0] - y[0]),
  })
const same = (a, b) => canonical(a) === canonical(b)

const states = {}
for (const [n, name] of names.entries()) {
  const first = new Y.Doc()
  const second = new Y.Doc()
  const pair = [connect(name, first), connect(name, second)]
  await until(() => pair.every((provider) => provider.synced), `${name} synced`)
  // The second document gets more than 500 updates: y-leveldb merges such logs on load.
  const count = n === 1 ? 600 : 40
  for (let i = 0; i < count; i++) {
    const doc = i % 2 === 0 ? first : second
    doc.getText('t').insert(doc.getText('t').length, `${i % 10}`)
    if (i % 7 === 0) doc.getMap('m').set(`k${i % 5}`, i)
    if (i % 11 === 0) doc.getArray('a').push([{ i }])
    if (i % 13 === 0 && doc.getText('t').length > 3) doc.getText('t').delete(1, 2)
    if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await until(() => same(first, second), `${name} converged`)
  // A fresh reader gets everything the server holds.
  const reader = new Y.Doc()
  connect(name, reader)
  await until(() => same(reader, first), `${name} on the server`)
  states[name] = Buffer.from(Y.encodeStateAsUpdate(first)).toString('base64')
}
for (const provider of providers) provider.destroy()
process.stdout.write(`${JSON.stringify(states)}\n`)
process.exit(0)
