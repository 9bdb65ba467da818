// What one filtered consumer read costs nats-server 2.9.10 depending on where in the stream's file
// block it starts (issue 15, session 9): 500 header-only entries of one of 10 interleaved subjects,
// read from the block's first half and from its second half, by a consumer and by message gets.
// Prints the three servers' CPU per read.
//
//   npx tsx bench/cluster/consumer-walk.ts [--sessions 10] [--messages 20000]

import { parseArgs } from 'node:util'
import { AckPolicy, DeliverPolicy, jetstreamManager, type MsgRequest } from '@nats-io/jetstream'
import { connect, headers, nanos } from '@nats-io/transport-node'
import { createPipelinedPublisher } from '../../server/cluster/pipelined-publisher.js'
import { startNatsCluster } from '../../test/helpers/nats-cluster.js'
import { cpuMicrosOf } from '../lib/targets.js'

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '10' },
    messages: { type: 'string', default: '20000' },
    read: { type: 'string', default: '500' },
  },
})
const sessions = Number(values.sessions)
const total = Number(values.messages)
const toRead = Number(values.read)

const cluster = await startNatsCluster()
const serversCpuMs = (): number =>
  cluster.nodes.reduce((sum, node) => sum + cpuMicrosOf(node.pid()!), 0) / 1000
try {
  const nc = await connect({ servers: cluster.urls[0]! })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: 'WALK', subjects: ['walk.>'], num_replicas: 3 })
  const publisher = createPipelinedPublisher(nc)
  for (let i = 0; i < total; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, total - i) }, (_, j) =>
        publisher.publish(`walk.s${(i + j) % sessions}`, new Uint8Array(60), headers()),
      ),
    )
  }
  const js = jsm.jetstream()
  /** Reads `toRead` entries of subject s0 from stream seq `start`: the servers' CPU in ms. */
  async function read(start: number): Promise<number> {
    const before = serversCpuMs()
    const info = await jsm.consumers.add('WALK', {
      filter_subject: 'walk.s0',
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: start,
      headers_only: true,
      ack_policy: AckPolicy.None,
      num_replicas: 1,
      mem_storage: true,
      inactive_threshold: nanos(30_000),
    })
    const consumer = await js.consumers.get('WALK', info.name)
    for (let got = 0; got < toRead; ) {
      const batch = await consumer.fetch({ max_messages: Math.min(512, toRead - got), expires: 2_000 })
      for await (const _ of batch) got++
    }
    await consumer.delete()
    // The servers' CPU is read from /proc: let the delete's work land first (bounded, no polling).
    await new Promise((resolve) => setTimeout(resolve, 300))
    return serversCpuMs() - before
  }
  /** The same entries by one `next_by_subj` message get each (what a read falls back to). */
  async function getEach(start: number): Promise<number> {
    const before = serversCpuMs()
    let seq = start
    for (let got = 0; got < toRead; got++) {
      const query = { seq, next_by_subj: 'walk.s0' } as unknown as MsgRequest
      const message = await jsm.streams.getMessage('WALK', query)
      if (message === null) break
      seq = message.seq + 1
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    return serversCpuMs() - before
  }
  const early = Math.round(total * 0.1) + 1
  const late = Math.round(total * 0.7) + 1
  for (const [label, start] of [
    [`from seq ${early} (first half of the block)`, early],
    [`from seq ${late} (second half)`, late],
    [`from seq ${early} again`, early],
    [`from seq ${late} again`, late],
  ] as const) {
    process.stdout.write(
      `${label}: ${toRead} entries of 1 of ${sessions} subjects, nats-servers' CPU ${(await read(start)).toFixed(0)} ms\n`,
    )
  }
  for (const [label, start] of [
    [`by gets from seq ${early}`, early],
    [`by gets from seq ${late}`, late],
  ] as const) {
    process.stdout.write(
      `${label}: ${toRead} entries, nats-servers' CPU ${(await getEach(start)).toFixed(0)} ms\n`,
    )
  }
  publisher.close()
  await nc.close()
} finally {
  await cluster.stop()
}
