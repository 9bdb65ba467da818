// `colloquy serve --nats …` on a real 3-node JetStream cluster: any node serves any session from
// the shared log, /readyz and the metric say what an ack means, the HTTP history API answers on
// every node, a kill -9 of a Colloquy node loses nothing acked, and while JetStream has no quorum
// nothing is acked (writes refused with 4505) but loaded sessions keep serving reads.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { appendMessage, readMessages } from '../../shared/conversation/index.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { startServerProcess } from '../helpers/server-process.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

warnIfNoNatsServer(import.meta.url)

const alice = { id: 'alice', kind: 'device' as const, name: 'Alice' }
const ACK_MODE = 'jetstream-r3-lazy-fsync+local-fsync'

let cluster: NatsCluster | undefined
let root = ''
const servers: SyncServer[] = []

async function startNode(name: string): Promise<SyncServer> {
  const server = await startSyncServer({
    config: {
      ...DEFAULT_CONFIG,
      port: 0,
      logLevel: 'silent',
      dataDir: path.join(root, name),
      nats: cluster!.urls,
      nodeId: name,
      compaction: false,
    },
  })
  servers.push(server)
  return server
}

function write(doc: Parameters<typeof appendMessage>[0], content: string): void {
  appendMessage(doc, { id: `m-${content}`, role: 'user', author: alice, content, createdAt: 1 })
}

describe.skipIf(!hasNatsServer)('colloquy serve --nats (3-node JetStream cluster)', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'colloquy-cluster-serve-'))
    cluster = await startNatsCluster()
  }, 60_000)
  afterAll(async () => {
    for (const server of servers) await server.close().catch(() => undefined)
    await cluster?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('serves a session written on one node from another, and says what an ack means', async () => {
    const [a, b] = [await startNode('a'), await startNode('b')]
    const writer = await connectWsPeer(`ws://127.0.0.1:${a.port}`, 'shared')
    await writer.whenSynced()
    write(writer.peer.doc, 'hello from a')
    await writer.peer.whenAcked(writer.peer.requestAck())
    const reader = await connectWsPeer(`ws://127.0.0.1:${b.port}`, 'shared')
    await reader.whenSynced()
    expect(readMessages(reader.peer.doc).map((m) => m.content)).toEqual(['hello from a'])

    for (const server of [a, b]) {
      const ready = await fetch(`http://127.0.0.1:${server.port}/readyz`)
      expect(ready.status).toBe(200)
      expect(await ready.json()).toMatchObject({ status: 'ready', ack: ACK_MODE })
      const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
      expect(metrics).toContain(`colloquy_ack_durability_info{mode="${ACK_MODE}"} 1`)
    }
    // The history API of either node reads the shared log (sparse seqs included).
    const meta = (await (await fetch(`http://127.0.0.1:${b.port}/sessions/shared`)).json()) as {
      lastSeq: number
    }
    expect(meta.lastSeq).toBeGreaterThan(0)
    const state = await fetch(
      `http://127.0.0.1:${a.port}/sessions/shared/state?seq=${meta.lastSeq}&format=json`,
    )
    expect(state.status).toBe(200)
    expect(JSON.stringify(await state.json())).toContain('hello from a')
    writer.close()
    reader.close()
  })

  it('keeps every acked update when a Colloquy node is killed with SIGKILL', async () => {
    const node = await startServerProcess([
      '--data',
      path.join(root, 'killed'),
      '--nats',
      cluster!.urls.join(','),
      '--node-id',
      'killed',
      '--log-level',
      'info',
    ])
    const writer = await connectWsPeer(node.url, 'survivor')
    await writer.whenSynced()
    // Bounded: 30 acked messages.
    for (let i = 0; i < 30; i++) {
      write(writer.peer.doc, `acked ${i}`)
      await writer.peer.whenAcked(writer.peer.requestAck())
    }
    node.child.kill('SIGKILL')
    await node.exited
    const other = servers[0] ?? (await startNode('c'))
    const reader = await connectWsPeer(`ws://127.0.0.1:${other.port}`, 'survivor')
    await reader.whenSynced()
    expect(readMessages(reader.peer.doc)).toHaveLength(30)
    reader.close()
    writer.close()
  })

  it('acks nothing while JetStream has no quorum, keeps serving reads, and acks once it is back', async () => {
    const node = servers[0] ?? (await startNode('d'))
    const url = `ws://127.0.0.1:${node.port}`
    const writer = await connectWsPeer(url, 'quorum')
    await writer.whenSynced()
    write(writer.peer.doc, 'before')
    await writer.peer.whenAcked(writer.peer.requestAck())

    // Two of three JetStream servers gone: no majority, no stream leader.
    const [, second, third] = cluster!.nodes
    await second!.kill('SIGKILL')
    await third!.kill('SIGKILL')
    write(writer.peer.doc, 'during')
    const during = writer.peer.requestAck()
    // The publish cannot be stored anywhere: the server turns to refusing writes, never acking.
    await until(() => !node.isReady, 30_000, 'server reports storage failing')
    expect(writer.peer.acks).not.toContain(during)
    const ready = await fetch(`http://127.0.0.1:${node.port}/readyz`)
    expect(ready.status).toBe(503)
    // Reads keep working for the loaded session (served from memory).
    const reader = await connectWsPeer(url, 'quorum')
    await reader.whenSynced()
    expect(readMessages(reader.peer.doc).map((m) => m.content)).toContain('before')
    // A new write from another client is refused with the transient storage code.
    const late = await connectWsPeer(url, 'quorum')
    await late.whenSynced()
    write(late.peer.doc, 'refused while no quorum')
    expect(await withTimeout(late.closed, 10_000, 'late writer closed')).toBe(CloseCode.StorageUnavailable)

    await second!.restart()
    await third!.restart()
    await cluster!.waitForMetaLeader()
    // The queued update is retried until stored, and only then acked.
    await writer.peer.whenAcked(during, 60_000)
    expect(node.isReady).toBe(true)
    // Every acked update is in the log: read back through the HTTP API of another node, which
    // loads from the stream (its leader may still be settling: 503s and lagging reads are retried,
    // bounded; an acked update that never shows up fails the test).
    const other = servers.find((server) => server !== node) ?? node
    const deadline = Date.now() + 30_000
    let body = ''
    while (Date.now() < deadline && !body.includes('during')) {
      const after = await fetch(`http://127.0.0.1:${other.port}/sessions/quorum/state?format=json`)
      if (after.status === 200) body = JSON.stringify(await after.json())
      else expect(after.status).toBe(503)
      if (!body.includes('during')) await new Promise((resolve) => setTimeout(resolve, 250))
    }
    expect(body).toContain('before')
    expect(body).toContain('during')
    writer.close()
    reader.close()
  }, 120_000)

  it('re-publishes on restart what a killed node held in its outbox but JetStream never stored', async () => {
    const dataDir = path.join(root, 'outbox-node')
    const args = ['--data', dataDir, '--nats', cluster!.urls.join(','), '--node-id', 'outbox-node']
    const first = await startServerProcess(args)
    const writer = await connectWsPeer(first.url, 'outboxed')
    await writer.whenSynced()
    write(writer.peer.doc, 'stored')
    await writer.peer.whenAcked(writer.peer.requestAck())
    const [, second, third] = cluster!.nodes
    await second!.kill('SIGKILL')
    await third!.kill('SIGKILL')
    write(writer.peer.doc, 'only in the outbox')
    const never = writer.peer.requestAck()
    // The failed commit settled (outbox written, publish refused): the node reports it.
    const readyz = `http://127.0.0.1:${first.port}/readyz`
    const deadline = Date.now() + 30_000
    while ((await fetch(readyz)).status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect((await fetch(readyz)).status).toBe(503)
    first.child.kill('SIGKILL')
    await first.exited
    expect(writer.peer.acks).not.toContain(never)
    writer.close()

    await second!.restart()
    await third!.restart()
    await cluster!.waitForMetaLeader()
    // Same data directory: the outbox is re-published before the node listens.
    const restarted = await startServerProcess(args, { timeoutMs: 60_000 })
    try {
      const reader = await connectWsPeer(restarted.url, 'outboxed')
      await reader.whenSynced()
      expect(readMessages(reader.peer.doc).map((m) => m.content)).toEqual(['stored', 'only in the outbox'])
      reader.close()
      expect(restarted.output()).toContain('outbox re-published after restart')
    } finally {
      restarted.child.kill('SIGKILL')
      await restarted.exited
    }
  }, 120_000)
})
