// What one message costs the nats-servers, to weigh the cluster path's options (issue 15): a core
// relay message (published on one server, delivered to a subscriber on each of the two others)
// against an R3 JetStream log message (pipelined, with the store's headers), one message per
// socket write or many per write, and a log message packing several updates. Prints µs of
// nats-server CPU (all three summed) per message and per update.
//
//   npx tsx bench/cluster/nats-costs.ts [--messages 20000] [--pack 10]

import { parseArgs } from 'node:util'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, headers, type NatsConnection } from '@nats-io/transport-node'
import { createPipelinedPublisher } from '../../server/cluster/pipelined-publisher.js'
import { startNatsCluster } from '../../test/helpers/nats-cluster.js'
import { cpuMicrosOf } from '../lib/targets.js'

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    pack: { type: 'string', default: '10' },
    size: { type: 'string', default: '60' },
  },
})
const count = Number(values.messages)
const pack = Number(values.pack)
const size = Number(values.size)

const cluster = await startNatsCluster()
const serversCpu = (): number => cluster.nodes.reduce((sum, node) => sum + cpuMicrosOf(node.pid()!), 0)
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const rows: string[] = []

/** Runs `work` and reports the servers' CPU per message and per update. */
async function measure(name: string, messages: number, updates: number, work: () => Promise<void>) {
  await turn()
  const before = serversCpu()
  const started = performance.now()
  await work()
  const ms = performance.now() - started
  const micros = serversCpu() - before
  rows.push(
    `| ${name} | ${messages} | ${updates} | ${(micros / messages).toFixed(1)} | ${(micros / updates).toFixed(1)} | ${ms.toFixed(0)} |`,
  )
}

const connections: NatsConnection[] = []
try {
  const publisherNc = await connect({ servers: cluster.urls[0]!, noEcho: true })
  connections.push(publisherNc)
  const receivers = await Promise.all(cluster.urls.slice(1).map((url) => connect({ servers: url })))
  connections.push(...receivers)
  const payload = new Uint8Array(size).fill(7)

  // Core relay: both receivers subscribed, on the two other servers.
  for (const [label, perWrite] of [
    ['core relay, 1 message per write', 1],
    [`core relay, ${pack} messages per write`, pack],
  ] as const) {
    let received = 0
    const subs = receivers.map((nc) =>
      nc.subscribe(`bench.relay.${perWrite}`, {
        callback: () => {
          received++
        },
      }),
    )
    await Promise.all(receivers.map((nc) => nc.flush()))
    await new Promise((resolve) => setTimeout(resolve, 500)) // the interest reaches the first server
    await measure(label, count, count, async () => {
      for (let i = 0; i < count; i += perWrite) {
        for (let k = 0; k < perWrite; k++) publisherNc.publish(`bench.relay.${perWrite}`, payload)
        await turn() // the client writes once per turn
      }
      const deadline = Date.now() + 30_000
      while (received < 2 * count * 0.99 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    })
    for (const sub of subs) sub.unsubscribe()
  }

  // The log: one R3 stream, a subject per "session", the store's two headers.
  const jsm = await jetstreamManager(publisherNc)
  await jsm.streams.add({ name: 'BENCH_LOG', subjects: ['bench.log.>'], num_replicas: 3 })
  const publisher = createPipelinedPublisher(publisherNc)
  const logRun = async (perCommit: number, bytes: number, messages: number) => {
    for (let i = 0; i < messages; i += perCommit) {
      const acks: Promise<number>[] = []
      for (let k = 0; k < perCommit; k++) {
        const h = headers()
        h.set('Colloquy-Time', String(Date.now()))
        h.set('Colloquy-Size', String(bytes))
        acks.push(publisher.publish(`bench.log.s${(i + k) % 10}`, new Uint8Array(bytes).fill(7), h))
      }
      await Promise.all(acks)
    }
  }
  await measure('log R3, 1 message per commit', count, count, () => logRun(1, size, count))
  await measure(`log R3, ${pack} messages per commit`, count, count, () => logRun(pack, size, count))
  await measure(`log R3, ${pack} updates packed per message, 1 message per commit`, count / pack, count, () =>
    logRun(1, size * pack, count / pack),
  )
  publisher.close()
} finally {
  for (const nc of connections) await nc.close()
  await cluster.stop()
}
process.stdout.write(
  `${[
    `nats-server CPU (3 servers summed), ${size}-byte updates, nats-server ${cluster.nodes.length} nodes:`,
    '',
    '| what | messages | updates | µs per message | µs per update | ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n')}\n`,
)
