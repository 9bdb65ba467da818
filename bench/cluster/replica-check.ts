// What `colloquy cluster check-replicas` costs on a log of a given size (issue 15): a 3-node
// nats-server cluster, the log stream filled with `--messages` entries of `--size` bytes on 100
// subjects, then a full check of the log and a `--tail` check; prints the time, the messages read
// per second (each replica's copy is read once), and the checking process's peak heap growth.
//
//   npx tsx bench/cluster/replica-check.ts [--messages 100000] [--size 200] [--tail 10000]

import { parseArgs } from 'node:util'
import { jetstream } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { openJetStreamResources } from '../../server/cluster/jetstream-log.js'
import { checkReplicas } from '../../server/cluster/replica-check.js'
import { startNatsCluster } from '../../test/helpers/nats-cluster.js'

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '100000' },
    size: { type: 'string', default: '200' },
    tail: { type: 'string', default: '10000' },
  },
})
const count = Number(values.messages)
const size = Number(values.size)
const tail = Number(values.tail)

const cluster = await startNatsCluster()
const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
try {
  const resources = await openJetStreamResources({ nc, namespace: 'bench' })
  const { stream, subjectPrefix } = resources.names
  const js = jetstream(nc, { timeout: 30_000 })
  const body = new Uint8Array(size).fill(120)
  const started = performance.now()
  for (let sent = 0; sent < count; ) {
    const batch = Math.min(1_000, count - sent)
    await Promise.all(
      Array.from({ length: batch }, (_, i) => js.publish(`${subjectPrefix}.s${(sent + i) % 100}`, body)),
    )
    sent += batch
  }
  console.info(
    `filled ${stream}: ${count} messages of ${size} bytes in ${Math.round(performance.now() - started)} ms`,
  )
  await cluster.waitForStreamLeader(stream, 30_000)

  for (const mode of [
    { name: 'full', options: {} },
    { name: `tail ${tail}`, options: { tail } },
  ]) {
    globalThis.gc?.()
    const heapBefore = process.memoryUsage().heapUsed
    let heapPeak = heapBefore
    const sampler = setInterval(() => {
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
    }, 20)
    const begun = performance.now()
    const [report] = await checkReplicas({ nc, streams: [stream], ...mode.options })
    const ms = performance.now() - begun
    clearInterval(sampler)
    const read = (report?.compared ?? 0) * (report?.peers.length ?? 0)
    console.info(
      `check ${mode.name}: ${report?.compared} seqs × ${report?.peers.length} replicas in ${Math.round(ms)} ms ` +
        `(${Math.round(read / (ms / 1_000))} messages read/s), diverged ${JSON.stringify(report?.diverged)}, ` +
        `heap growth at most ${((heapPeak - heapBefore) / 1e6).toFixed(1)} MB`,
    )
  }
} finally {
  await nc.close()
  await cluster.stop()
}
