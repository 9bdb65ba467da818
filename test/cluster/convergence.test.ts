// A Colloquy cluster serves one session from every node at once: stock y-websocket clients (1.x,
// 2.x, 3.x) spread over 3 nodes converge, see each other's presence, and lose the presence of the
// clients of a node killed with SIGKILL within seconds. Each file starts its own 3-node JetStream
// cluster and 3 Colloquy processes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ColloquyCluster, startColloquyCluster } from '../helpers/colloquy-cluster.js'
import { hasNatsServer, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import {
  connectNodeProvider,
  type NodeProvider,
  untilAll,
  whenAllSynced,
} from '../real-clients/node-providers.js'

warnIfNoNatsServer(import.meta.url)

const VERSIONS = ['v1', 'v2', 'v3'] as const

describe.skipIf(!hasNatsServer)('a 3-node Colloquy cluster with stock y-websocket clients', () => {
  let cluster: ColloquyCluster
  const providers: NodeProvider[] = []

  beforeAll(async () => {
    cluster = await startColloquyCluster()
  }, 90_000)
  afterAll(async () => {
    for (const provider of providers) provider.destroy()
    await cluster?.stop()
  })

  it('converges when clients on every node edit one session at once', async () => {
    const room = 'converge'
    const clients = cluster.nodes.flatMap((node, i) =>
      [0, 1].map((k) => connectNodeProvider(node.url, room, VERSIONS[(i + k) % 3]!)),
    )
    providers.push(...clients)
    await whenAllSynced(clients, 20_000, 'every client synced')
    // Bounded: 6 clients × 30 items, some while others' items are still in flight.
    for (let round = 0; round < 30; round++) {
      for (const [c, client] of clients.entries())
        client.doc.getArray<string>('items').push([`${c}:${round}`])
      if (round % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const expected = clients.length * 30
    await untilAll(
      clients,
      (p) => p.doc.getArray('items').length === expected,
      20_000,
      'every item everywhere',
    )
    const first = JSON.stringify(clients[0]!.doc.getArray('items').toJSON())
    for (const client of clients) expect(JSON.stringify(client.doc.getArray('items').toJSON())).toBe(first)
    // No duplicate: each item once, in the same order everywhere.
    expect(new Set(clients[0]!.doc.getArray<string>('items').toArray()).size).toBe(expected)
  }, 60_000)

  // Regression (session 7): the killed node died within a second of the last node starting, so
  // that node never got a heartbeat of it (its last one went out before) and never dropped its
  // clients. Any message of a node now proves it alive (nats-distribution.test.ts has the unit case).
  it("shows every client's presence on every node, and drops a killed node's clients within seconds", async () => {
    const room = 'presence'
    const clients = cluster.nodes.map((node, i) => connectNodeProvider(node.url, room, VERSIONS[i]!))
    providers.push(...clients)
    await whenAllSynced(clients, 20_000, 'every client synced')
    for (const [i, client] of clients.entries()) client.awareness.setLocalStateField('user', `on c${i + 1}`)
    const ids = clients.map((client) => client.doc.clientID)
    await untilAll(clients, (p) => ids.every((id) => p.awareness.getStates().has(id)), 10_000, 'all presence')

    const victim = clients[2]!
    const survivors = clients.slice(0, 2)
    const victimProcess = cluster.nodes[2]!.process
    const killedAt = Date.now()
    await cluster.nodes[2]!.kill()
    // The victim's provider keeps retrying the dead node: its presence must go from the others anyway.
    await untilAll(
      survivors,
      (p) => !p.awareness.getStates().has(victim.doc.clientID),
      15_000,
      'presence dropped',
    ).catch(async (error: unknown) => {
      const metrics = await Promise.all(
        cluster.nodes.slice(0, 2).map(async (node) => {
          const text = await (await fetch(`${node.url.replace('ws:', 'http:')}/metrics`)).text()
          return text
            .split('\n')
            .filter((line) => line.startsWith('colloquy_cluster'))
            .join('; ')
        }),
      )
      const clocks = survivors.map((p) => p.awareness.meta.get(victim.doc.clientID)?.clock)
      for (const [name, output] of [
        ...cluster.nodes.slice(0, 2).map((node) => [node.name, node.process?.output()] as const),
        ['c3 (killed)', victimProcess?.output()] as const,
      ])
        console.log(
          name,
          (output ?? '')
            .split('\n')
            .filter((line) => /relay|node lost|node heard|malformed|nats|"level":50|nhandled|rror/.test(line))
            .slice(-14)
            .join('\n'),
        )
      throw new Error(`${String(error)}; victim clocks on survivors ${clocks}; ${metrics.join(' | ')}`)
    })
    expect(Date.now() - killedAt).toBeLessThan(10_000)
    victim.destroy()
    for (const client of survivors)
      expect(client.awareness.getStates().has(ids[1 - survivors.indexOf(client)]!)).toBe(true)
  }, 60_000)
})
