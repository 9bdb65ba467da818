// Deleting a session on one node of a Colloquy cluster deletes it everywhere: every node that has it
// loaded closes its stock y-websocket clients with 1001 (as a single node does) and drops its
// document, no node serves or stores it afterwards, and nothing written meanwhile brings it back.
// An import onto a session open on another node is refused, as one open on the node itself.
// Starts its own 3-node JetStream cluster and 3 Colloquy processes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider as ProviderV3 } from 'y-websocket'
import { WebsocketProvider as ProviderV1 } from 'y-websocket-classic'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import * as Y from 'yjs'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { type ColloquyCluster, startColloquyCluster } from '../helpers/colloquy-cluster.js'
import { hasNatsServer, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { until } from '../helpers/wait.js'

warnIfNoNatsServer(import.meta.url)

/** A stock provider that stops for good at its first close: it never uploads its copy again. */
interface OneShotClient {
  readonly doc: Y.Doc
  readonly closeCodes: number[]
  readonly synced: () => boolean
  destroy(): void
}

function connectOnce(url: string, room: string, version: 'v1' | 'v2' | 'v3'): OneShotClient {
  const doc = new Y.Doc()
  const options = { WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket, disableBc: true }
  const Provider = version === 'v1' ? ProviderV1 : version === 'v2' ? ProviderV2 : ProviderV3
  const provider = new Provider(url, room, doc, options as never) as unknown as {
    synced: boolean
    on(event: string, listener: (event: { code: number } | null) => void): void
    destroy(): void
  }
  const closeCodes: number[] = []
  let isStopped = false
  provider.on('connection-close', (event) => {
    if (isStopped) return
    isStopped = true
    closeCodes.push(event?.code ?? 0)
    // After the handler (destroy() closes again): its reconnect timer then finds it stopped.
    queueMicrotask(() => provider.destroy())
  })
  return { doc, closeCodes, synced: () => provider.synced, destroy: () => provider.destroy() }
}

const httpOf = (url: string): string => url.replace('ws:', 'http:')

describe.skipIf(!hasNatsServer)('deleting a session in a 3-node Colloquy cluster', () => {
  let cluster: ColloquyCluster
  const clients: OneShotClient[] = []

  beforeAll(async () => {
    cluster = await startColloquyCluster()
  }, 90_000)
  afterAll(async () => {
    for (const client of clients) client.destroy()
    await cluster?.stop()
  })

  it('regression: a delete on one node closes the session on every node, and nothing brings it back', async () => {
    const room = 'doomed'
    const versions = ['v1', 'v2', 'v3'] as const
    const onNodes = cluster.nodes.map((node, i) => connectOnce(node.url, room, versions[i]!))
    clients.push(...onNodes)
    await until(() => onNodes.every((client) => client.synced()), 20_000, 'every client synced')
    for (const [i, client] of onNodes.entries()) client.doc.getArray<string>('items').push([`c${i + 1}`])
    await until(
      () => onNodes.every((client) => client.doc.getArray('items').length === 3),
      20_000,
      'every item on every node',
    )

    // A client of another node keeps writing while the delete runs (bounded: at most 400 items).
    const writer = onNodes[1]!
    let written = 0
    const writing = setInterval(() => {
      if (writer.closeCodes.length > 0 || written >= 400) return
      writer.doc.getArray<string>('items').push([`late ${written++}`])
    }, 10)
    try {
      const response = await fetch(`${httpOf(cluster.nodes[0]!.url)}/sessions/${room}`, {
        method: 'DELETE',
        signal: AbortSignal.timeout(30_000),
      })
      expect(response.status).toBe(204)
      // Every node closed its clients the way a single node does.
      await until(
        () => onNodes.every((client) => client.closeCodes.length > 0),
        10_000,
        'every client closed',
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}; close codes ${JSON.stringify(onNodes.map((c) => c.closeCodes))}`)
      })
    } finally {
      clearInterval(writing)
    }
    for (const client of onNodes) expect(client.closeCodes[0]).toBe(CloseCode.GoingAway)
    expect(written).toBeGreaterThan(0)

    // Gone on every node, and it stays gone: no node writes its old document (or late writes) back.
    const statuses = async (): Promise<number[]> =>
      Promise.all(
        cluster.nodes.map(async (node) => (await fetch(`${httpOf(node.url)}/sessions/${room}`)).status),
      )
    for (let check = 0; check < 5; check++) {
      expect(await statuses()).toEqual([404, 404, 404])
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
    // A new client of the node that had a writer finds an empty session.
    const fresh = connectOnce(cluster.nodes[1]!.url, room, 'v3')
    clients.push(fresh)
    await until(() => fresh.synced(), 20_000, 'a new client synced')
    expect(fresh.doc.getArray('items').length).toBe(0)
  }, 90_000)

  it('refuses an import onto a session another node has open (409), as a single node does', async () => {
    const doc = new Y.Doc()
    doc.getArray<string>('items').push(['imported'])
    const body = Y.encodeStateAsUpdate(doc)
    const importOn = async (node: number, room: string) =>
      fetch(`${httpOf(cluster.nodes[node]!.url)}/sessions/${room}/import`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
        signal: AbortSignal.timeout(30_000),
      })
    // Open on node 3 only, nothing stored yet.
    const holder = connectOnce(cluster.nodes[2]!.url, 'held-elsewhere', 'v3')
    clients.push(holder)
    await until(() => holder.synced(), 20_000, 'the holder synced')
    const refused = await importOn(0, 'held-elsewhere')
    expect(refused.status).toBe(409)
    expect(await refused.text()).toContain('c3')
    // A session no node has open imports as before.
    expect((await importOn(0, 'nobody-holds')).status).toBe(201)
  }, 60_000)
})
