// TCP proxies on the routes of a test nats-server cluster, for partition tests. One proxy per
// ordered pair of nodes (node `from` dials node `to` through it: pass `routeTarget` to
// startNatsCluster), so every configured route passes through a proxy that knows both ends. It can
// then black-hole every route of one node: bytes in both directions are swallowed (nothing is
// closed, as a lost network would do) and new routes to or from it are held open and silent.
// Healing destroys the held connections so the servers dial their routes again.

import type { AddressInfo } from 'node:net'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { type NatsCluster, type NatsClusterOptions, startNatsCluster } from './nats-cluster.js'

/** One proxied route connection and the two nodes it joins (by index, as startNatsCluster counts). */
interface RouteLink {
  readonly client: Socket
  readonly upstream: Socket
  readonly from: number
  readonly to: number
  isHeld: boolean
}

/** Proxies for the routes of a cluster, with one switch to isolate a node. */
export interface PartitionProxies {
  /**
   * For `startNatsCluster({ routeTarget })`: the port node `from` dials to reach `to`'s route port
   * (a proxy started on the first call for that pair).
   */
  routeTarget(from: number, to: number, routePort: number): Promise<number>
  /** Swallows every byte of every route to or from node `index`, now and until {@link heal}. */
  isolate(index: number): void
  /** Ends the isolation: held connections are destroyed, so the servers dial their routes again. */
  heal(): void
  /** Route connections open through the proxies now, and how many of them are held. */
  counts(): { open: number; held: number }
  close(): Promise<void>
}

/** Starts no proxy yet: each pair's proxy starts on 127.0.0.1 port 0 when its route is planned. */
export function createPartitionProxies(): PartitionProxies {
  const links = new Set<RouteLink>()
  const isolated = new Set<number>()
  const servers: Server[] = []

  const isCut = (link: { from: number; to: number }): boolean =>
    isolated.has(link.from) || isolated.has(link.to)

  const hold = (link: RouteLink): void => {
    if (link.isHeld) return
    link.isHeld = true
    // Paused sockets with no reader: what the servers send stays in kernel buffers, nothing arrives.
    link.client.unpipe(link.upstream)
    link.upstream.unpipe(link.client)
    link.client.pause()
    link.upstream.pause()
  }

  const forget = (link: RouteLink): void => {
    links.delete(link)
    link.client.destroy()
    link.upstream.destroy()
  }

  const accept = (from: number, to: number, target: number) => (client: Socket) => {
    const upstream = connect(target, '127.0.0.1')
    const link: RouteLink = { client, upstream, from, to, isHeld: false }
    links.add(link)
    for (const socket of [client, upstream]) {
      socket.on('error', () => forget(link))
      socket.on('close', () => forget(link))
    }
    if (isCut(link)) {
      hold(link)
      return
    }
    client.pipe(upstream)
    upstream.pipe(client)
  }

  return {
    async routeTarget(from, to, routePort) {
      const server = createServer(accept(from, to, routePort))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      servers.push(server)
      return (server.address() as AddressInfo).port
    },
    isolate(index) {
      isolated.add(index)
      for (const link of links) if (isCut(link)) hold(link)
    },
    heal() {
      isolated.clear()
      for (const link of [...links]) if (link.isHeld) forget(link)
    },
    counts() {
      let held = 0
      for (const link of links) if (link.isHeld) held++
      return { open: links.size, held }
    },
    async close() {
      for (const link of [...links]) forget(link)
      await Promise.all(
        servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      )
    },
  }
}

interface Routez {
  routes?: unknown[]
}

async function routeCount(monitorPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${monitorPort}/routez`, {
    signal: AbortSignal.timeout(2_000),
  })
  return ((await response.json()) as Routez).routes?.length ?? 0
}

/**
 * Starts a test cluster whose every route passes through a partition proxy.
 *
 * @remarks A server learns of the others' real route ports by gossip and may dial one directly
 * before its configured route (through the proxy) connects; such a route cannot be cut. So the
 * cluster waits for a full mesh, counts the routes through the proxies, and starts over (bounded)
 * when one went around them.
 */
export async function startPartitionedNatsCluster(
  options: Omit<NatsClusterOptions, 'routeTarget'> = {},
  attempts = 6,
): Promise<{ cluster: NatsCluster; proxies: PartitionProxies }> {
  const size = options.size ?? 3
  const pairs = (size * (size - 1)) / 2
  for (let attempt = 1; ; attempt++) {
    const proxies = createPartitionProxies()
    let cluster: NatsCluster
    try {
      cluster = await startNatsCluster({ ...options, routeTarget: proxies.routeTarget })
    } catch (error) {
      // A port picked free was taken by another process before nats-server bound it (startNatsCluster
      // leaves that retry to the owner of the proxies): start over on new ports, bounded.
      await proxies.close()
      const isPortTaken = error instanceof Error && /address already in use/.test(error.message)
      if (!isPortTaken || attempt >= attempts) throw error
      continue
    }
    const deadline = Date.now() + 10_000
    let meshed = false
    while (!meshed && Date.now() < deadline) {
      const counts = await Promise.all(
        cluster.nodes.map((node) => routeCount(node.monitorPort).catch(() => 0)),
      )
      meshed = counts.every((count) => count === size - 1)
      if (!meshed) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    if (meshed && proxies.counts().open === pairs) return { cluster, proxies }
    await cluster.stop()
    await proxies.close()
    if (attempt >= attempts)
      throw new Error(`no cluster with every route through the proxies in ${attempts} starts`)
  }
}
