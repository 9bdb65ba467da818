// The two clusters the cluster bench compares, each started from nothing on 127.0.0.1 and stopped
// whole: 3 Colloquy nodes on a 3-node JetStream cluster (R3), and 3 Hocuspocus nodes with
// extension-redis on one redis-server. Each exposes its nodes' URLs, their pids (for CPU readings)
// and the pids of its broker (nats-servers, redis).

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { hasNatsServer, NATS_SERVER_MISSING, startNatsCluster } from '../../test/helpers/nats-cluster.js'
import { cpuMicrosOf, freePort, ROOT, type RunningServer, startTarget } from '../lib/targets.js'
import type { Framing } from '../lib/wire.js'

/** Where Debian installs redis-server (`apt-get install -y redis-server`: a bench prerequisite). */
export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'

/** One node of a cluster under test. */
export interface ClusterNode {
  readonly name: string
  readonly url: string
  pid(): number | undefined
  isRunning(): boolean
  /** SIGKILL; resolves once the process has exited. */
  kill(): Promise<void>
}

/** A running cluster: its nodes, its broker, and one switch to stop everything. */
export interface BenchCluster {
  readonly id: ClusterTargetId
  readonly label: string
  readonly framing: Framing
  readonly acks: boolean
  readonly nodes: readonly ClusterNode[]
  /** CPU time of the nodes still running plus what killed ones used before they died (µs). */
  nodesCpuMicros(): number
  /** CPU time of the broker processes (nats-servers or redis), µs. */
  brokerCpuMicros(): number
  /**
   * Messages the broker received so far, summed over its servers (nats-server `/varz` `in_msgs`:
   * from clients and from the other servers' routes); undefined where the broker does not say.
   */
  brokerMessagesIn?(): Promise<number>
  /** The nats-servers' client URLs (the JetStream cluster), where the broker is NATS. */
  readonly natsUrls?: readonly string[]
  /** Each nats-server's Go pprof port, when started with {@link ClusterStartOptions.natsProfile}. */
  readonly natsProfPorts?: readonly number[]
  stop(): Promise<void>
}

export const CLUSTER_TARGETS = {
  'colloquy-nats': {
    label: 'Colloquy ×3 on NATS JetStream ×3 (R3; LevelDB outbox, fsync)',
    framing: 'plain',
    acks: true,
  },
  'hocuspocus-redis': {
    label:
      'Hocuspocus 3.4.4 ×3 + extension-redis on redis-server 7 (Database ext. on that Redis, AOF fsync every second)',
    framing: 'hocuspocus',
    acks: false,
  },
} as const satisfies Record<string, { label: string; framing: Framing; acks: boolean }>

export type ClusterTargetId = keyof typeof CLUSTER_TARGETS

/** Why `id` cannot run on this machine, if it cannot. */
export function missingPrerequisite(id: ClusterTargetId): string | undefined {
  if (id === 'colloquy-nats') return hasNatsServer ? undefined : NATS_SERVER_MISSING
  return existsSync(REDIS_SERVER)
    ? undefined
    : `redis-server is missing (${REDIS_SERVER}): skipping the Hocuspocus + Redis cluster (apt-get install -y redis-server)`
}

/** Options of {@link startBenchCluster}. */
export interface ClusterStartOptions {
  /** Node's own options for each Colloquy process (e.g. `--cpu-prof`; written at a clean stop). */
  readonly colloquyNodeArgs?: readonly string[]
  /** Serve Go's pprof on each nats-server (`prof_port`; see {@link BenchCluster.natsProfPorts}). */
  readonly natsProfile?: boolean
}

/** Starts the cluster `id` with its data under `dataDir`. */
export async function startBenchCluster(
  id: ClusterTargetId,
  dataDir: string,
  options: ClusterStartOptions = {},
): Promise<BenchCluster> {
  return id === 'colloquy-nats'
    ? startColloquyCluster(dataDir, options.colloquyNodeArgs ?? [], options.natsProfile === true)
    : startHocuspocusCluster(dataDir)
}

/** Keeps the CPU a process used before it died (its /proc entry goes with it). */
function cpuTracker(pidOf: () => number | undefined): { read(): number; beforeKill(): void } {
  let banked = 0
  let last = 0
  return {
    read() {
      const pid = pidOf()
      if (pid === undefined) return banked
      try {
        last = cpuMicrosOf(pid)
      } catch {
        // Exited between the check and the read: what we saw last stands.
      }
      return banked + last
    },
    beforeKill() {
      this.read()
      banked += last
      last = 0
    },
  }
}

async function startColloquyCluster(
  dataDir: string,
  nodeArgs: readonly string[],
  natsProfile: boolean,
): Promise<BenchCluster> {
  const nats = await startNatsCluster(natsProfile ? { profile: true } : {})
  const servers: RunningServer[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const dir = path.join(dataDir, `c${i + 1}`)
      await mkdir(dir, { recursive: true })
      // Each node's own nats-server first: its client traffic stays local, as a deployment would.
      const urls = [...nats.urls.slice(i), ...nats.urls.slice(0, i)].join(',')
      servers.push(
        await startTarget('colloquy', dir, ['--nats', urls, '--node-id', `c${i + 1}`], {}, nodeArgs),
      )
    }
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop(2_000)))
    await nats.stop()
    throw error
  }
  const trackers = servers.map((server) => cpuTracker(() => (server.isRunning() ? server.pid : undefined)))
  const brokers = nats.nodes.map((node) => cpuTracker(() => node.pid()))
  return {
    id: 'colloquy-nats',
    ...CLUSTER_TARGETS['colloquy-nats'],
    nodes: servers.map((server, i) => ({
      name: `c${i + 1}`,
      url: server.url,
      pid: () => (server.isRunning() ? server.pid : undefined),
      isRunning: () => server.isRunning(),
      async kill() {
        trackers[i]!.beforeKill()
        process.kill(server.pid, 'SIGKILL')
        await server.stop(0)
      },
    })),
    nodesCpuMicros: () => trackers.reduce((sum, tracker) => sum + tracker.read(), 0),
    brokerCpuMicros: () => brokers.reduce((sum, tracker) => sum + tracker.read(), 0),
    async brokerMessagesIn() {
      const counts = await Promise.all(
        nats.nodes.map(async (node) => {
          const response = await fetch(`http://127.0.0.1:${node.monitorPort}/varz`)
          return ((await response.json()) as { in_msgs?: number }).in_msgs ?? 0
        }),
      )
      return counts.reduce((sum, count) => sum + count, 0)
    },
    natsUrls: nats.urls,
    ...(natsProfile ? { natsProfPorts: nats.nodes.map((node) => node.profPort ?? 0) } : {}),
    async stop() {
      await Promise.all(servers.map((server) => server.stop(5_000)))
      await nats.stop()
    },
  }
}

/** A child process that prints one JSON line with `marker` and its port once listening. */
function spawnListening(
  command: string,
  args: readonly string[],
  marker: string,
  timeoutMs = 30_000,
): Promise<{ child: ChildProcess; port: number; exited: Promise<void> }> {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let output = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${path.basename(command)} did not start within ${timeoutMs} ms:\n${output}`))
    }, timeoutMs)
    const onData = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000)
      for (const line of output.split('\n')) {
        if (!line.includes(marker)) continue
        const port =
          marker === 'Ready to accept connections' ? -1 : (JSON.parse(line) as { port: number }).port
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolve({ child, port, exited })
        return
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000)
    })
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`${path.basename(command)} exited before listening:\n${output}`))
    })
  })
}

async function startHocuspocusCluster(dataDir: string): Promise<BenchCluster> {
  const redisPort = await freePort()
  // Redis relays (pub/sub, locks) and is the nodes' shared database: append-only file fsync'd every
  // second (Redis' own default for AOF), no snapshots.
  const redisDir = path.join(dataDir, 'redis')
  await mkdir(redisDir, { recursive: true })
  const redis = await spawnListening(
    REDIS_SERVER,
    [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--dir',
      redisDir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
    ],
    'Ready to accept connections',
  )
  const started: Array<{ child: ChildProcess; port: number; exited: Promise<void> }> = []
  const stopChild = async (entry: { child: ChildProcess; exited: Promise<void> }): Promise<void> => {
    if (entry.child.exitCode === null && entry.child.signalCode === null) entry.child.kill('SIGKILL')
    await entry.exited
  }
  try {
    for (let i = 0; i < 3; i++) {
      started.push(
        await spawnListening(
          process.execPath,
          [
            '--import',
            'tsx',
            path.join(ROOT, 'bench/peers/hocuspocus-redis-server.ts'),
            '--redis-port',
            String(redisPort),
            '--name',
            `h${i + 1}`,
          ],
          'peer listening',
        ),
      )
    }
  } catch (error) {
    await Promise.all(started.map(stopChild))
    await stopChild(redis)
    throw error
  }
  const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null
  const trackers = started.map(({ child }) => cpuTracker(() => (alive(child) ? child.pid : undefined)))
  const broker = cpuTracker(() => (alive(redis.child) ? redis.child.pid : undefined))
  return {
    id: 'hocuspocus-redis',
    ...CLUSTER_TARGETS['hocuspocus-redis'],
    nodes: started.map((entry, i) => ({
      name: `h${i + 1}`,
      url: `ws://127.0.0.1:${entry.port}`,
      pid: () => (alive(entry.child) ? entry.child.pid : undefined),
      isRunning: () => alive(entry.child),
      async kill() {
        trackers[i]!.beforeKill()
        await stopChild(entry)
      },
    })),
    nodesCpuMicros: () => trackers.reduce((sum, tracker) => sum + tracker.read(), 0),
    brokerCpuMicros: () => broker.read(),
    async stop() {
      // Hocuspocus stores on SIGTERM; the bench has read everything it needs by now.
      await Promise.all(started.map(stopChild))
      await stopChild(redis)
    },
  }
}
