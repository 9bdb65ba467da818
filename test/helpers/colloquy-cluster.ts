// A throwaway Colloquy cluster for tests: a 3-node JetStream cluster (test/helpers/nats-cluster.ts,
// optionally behind partition proxies) and 3 Colloquy server processes on port 0, each with its
// own data dir and `--nats` / `--node-id`. Nodes can be killed with SIGKILL and restarted on the
// same data dir. Owns only the processes and temp dirs it creates.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { hasFullMesh, type NatsCluster, startNatsCluster } from './nats-cluster.js'
import { type PartitionProxies, startPartitionedNatsCluster } from './partition-proxy.js'
import { type ServerProcess, startServerProcess } from './server-process.js'

/** One Colloquy node of the test cluster. */
export interface ColloquyNode {
  readonly name: string
  readonly dataDir: string
  /** The running process (a new one after each restart); undefined while killed. */
  readonly process: ServerProcess | undefined
  /** `ws://127.0.0.1:<port>` of the running process; throws while killed. */
  readonly url: string
  /** SIGKILL; resolves once it exited. */
  kill(): Promise<void>
  /** Starts the node again on its data dir (a new port). */
  restart(): Promise<void>
}

export interface ColloquyCluster {
  readonly nats: NatsCluster
  /** Present when started with `partitionable`. */
  readonly proxies: PartitionProxies | undefined
  readonly nodes: readonly ColloquyNode[]
  stop(): Promise<void>
}

export interface ColloquyClusterOptions {
  /** Route every nats route through partition proxies (see partition-proxy.ts). */
  readonly partitionable?: boolean
  /**
   * The nats-servers (by index) Colloquy node `i` may connect to (default: all, its own first).
   * A partition test pins a node to the nats-server it isolates.
   */
  readonly natsOf?: (node: number) => readonly number[]
  /** Extra `serve` arguments for every node. */
  readonly args?: readonly string[]
}

/** Starts a 3-node JetStream cluster and 3 Colloquy nodes on it. */
export async function startColloquyCluster(options: ColloquyClusterOptions = {}): Promise<ColloquyCluster> {
  let nats: NatsCluster
  let proxies: PartitionProxies | undefined
  if (options.partitionable) ({ cluster: nats, proxies } = await startPartitionedNatsCluster())
  else {
    nats = await startNatsCluster()
    // Core NATS forwards one hop only: until every pair of servers has its route, a message can
    // reach some nodes and not others (seen: one node's heartbeats never reached another).
    await waitForFullMesh(nats, 15_000)
  }
  const root = await mkdtemp(path.join(os.tmpdir(), 'colloquy-cluster-'))
  const natsOf = options.natsOf ?? ((i: number) => [i, ...[0, 1, 2].filter((j) => j !== i)])

  const nodes = [0, 1, 2].map((i) => {
    const name = `c${i + 1}`
    const dataDir = path.join(root, name)
    let current: ServerProcess | undefined
    const start = async (): Promise<void> => {
      const urls = natsOf(i)
        .map((j) => nats.urls[j]!)
        .join(',')
      current = await startServerProcess(
        [
          '--data',
          dataDir,
          '--nats',
          urls,
          '--node-id',
          name,
          '--log-level',
          'info',
          '--updates-per-second',
          '0',
          '--update-bytes-per-second',
          '0',
          '--max-connection-attempts-per-ip',
          '0',
          ...(options.args ?? []),
        ],
        { timeoutMs: 30_000 },
      )
    }
    const node: ColloquyNode & { start(): Promise<void> } = {
      name,
      dataDir,
      get process() {
        return current
      },
      get url() {
        if (current === undefined) throw new Error(`${name} is not running`)
        return current.url
      },
      async kill() {
        const running = current
        if (running === undefined) return
        current = undefined
        running.child.kill('SIGKILL')
        await running.exited
      },
      async restart() {
        await node.kill()
        await start()
      },
      start,
    }
    return node
  })

  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node.kill()))
    await nats.stop()
    await proxies?.close()
    await rm(root, { recursive: true, force: true })
  }
  try {
    await Promise.all(nodes.map((node) => node.start()))
  } catch (error) {
    await stop()
    throw error
  }
  return { nats, proxies, nodes, stop }
}

/** Resolves once every running nats-server has a route to every other; rejects after `ms`. */
export async function waitForFullMesh(nats: NatsCluster, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await hasFullMesh(nats.nodes))) {
    if (Date.now() > deadline) throw new Error(`no full route mesh within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

interface Jsz {
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[]
}

/**
 * The server name of the leader of the JetStream stream `name` (default: the first stream that is
 * no KV bucket or object store, i.e. the session log), asked of every running node's monitoring
 * port; undefined when none knows.
 */
export async function streamLeader(nats: NatsCluster, name?: string): Promise<string | undefined> {
  for (const node of nats.nodes) {
    if (!node.isRunning()) continue
    try {
      const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz?accounts=true&streams=true`, {
        signal: AbortSignal.timeout(2_000),
      })
      const jsz = (await response.json()) as Jsz
      for (const account of jsz.account_details ?? []) {
        for (const stream of account.stream_detail ?? []) {
          if (name !== undefined ? stream.name !== name : /^(KV|OBJ)_/.test(stream.name)) continue
          if (stream.cluster?.leader) return stream.cluster.leader
        }
      }
    } catch {
      // That node is starting or down: ask the next.
    }
  }
  return undefined
}
