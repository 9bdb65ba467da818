// What the guard against a stale stream leader costs a read (issue 15): a 3-node nats-server
// cluster, one session subject of `--messages` entries; then `--reads` reads of each kind one after
// another: the whole subject through a consumer, the same with gets only, the relay's last seq, the
// checked leader view, and, for comparison, one plain leader get (the first answer taken). Prints
// each kind's p50/p99 latency and the JetStream API requests per read (counted on `$JS.API.>`).
//
//   npx tsx bench/cluster/read-guard.ts [--messages 20] [--reads 40]

import { parseArgs } from 'node:util'
import { jetstream } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import {
  checkedLeaderView,
  lastStreamSeq,
  openJetStreamResources,
  scanSubject,
} from '../../server/cluster/jetstream-log.js'
import { formatJsApiCounts, startJsApiCounter } from '../../test/helpers/js-api-counter.js'
import { startNatsCluster } from '../../test/helpers/nats-cluster.js'

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20' },
    reads: { type: 'string', default: '40' },
  },
})
const messages = Number(values.messages)
const reads = Number(values.reads)

const cluster = await startNatsCluster()
const nc = await connect({ servers: [...cluster.urls], timeout: 5_000 })
try {
  const resources = await openJetStreamResources({ nc, namespace: 'guard' })
  const { stream, subjectPrefix } = resources.names
  const subject = `${subjectPrefix}.s`
  const js = jetstream(nc, { timeout: 30_000 })
  for (let i = 0; i < messages; i++) await js.publish(subject, `entry-${i}`)
  await cluster.waitForStreamLeader(stream, 30_000)
  const whole = {
    fromSeq: 1,
    toSeq: Number.MAX_SAFE_INTEGER,
    limit: Number.POSITIVE_INFINITY,
    headersOnly: false,
  }
  const kinds: Record<string, () => Promise<unknown>> = {
    'read (consumer)': () => scanSubject(resources, subject, whole),
    'read (gets)': () => scanSubject(resources, subject, whole, { placementAttempts: 0 }),
    'last seq (relay check)': () => lastStreamSeq(resources, subject),
    'checked leader view': () => checkedLeaderView(resources, subject),
    'plain leader get (unguarded)': () => resources.jsm.streams.getMessage(stream, { last_by_subj: subject }),
  }
  for (const [kind, read] of Object.entries(kinds)) {
    await read() // warm
    const counter = await startJsApiCounter(cluster.urls[0]!)
    const times: number[] = []
    for (let i = 0; i < reads; i++) {
      const started = performance.now()
      const result = await read()
      times.push(performance.now() - started)
      if (Array.isArray(result) && result.length !== messages)
        throw new Error(`${kind}: read ${result.length}`)
    }
    await counter.flush()
    const { total, byKind } = await counter.stop()
    times.sort((a, b) => a - b)
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1)
    const perRead = Object.fromEntries(
      Object.entries(byKind).map(([name, count]) => [
        name.replace(`.${stream}`, ''),
        +(count / reads).toFixed(2),
      ]),
    )
    console.log(
      `${kind}: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms; ${(total / reads).toFixed(2)} JS API requests per read (${formatJsApiCounts(perRead)})`,
    )
  }
} finally {
  await nc.close()
  await cluster.stop()
}
