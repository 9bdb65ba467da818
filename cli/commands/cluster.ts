// `colloquy cluster check-replicas`: compares every replica of the JetStream streams a Colloquy cluster
// keeps, names a replica whose copy differs from the majority's, and with --repair has JetStream
// rebuild it from the leader (server/cluster/replica-check.ts; docs/cluster.md).

import { parseArgs } from 'node:util'
import { connect } from '@nats-io/transport-node'
import {
  checkReplicas,
  colloquyStreamNames,
  repairReplica,
  type StreamReplicaReport,
} from '../../server/cluster/replica-check.js'

export const usage = `Usage: colloquy cluster check-replicas --nats URLS [options]

Reads each stream Colloquy keeps in JetStream (the log, its KV buckets and object stores, the
turns) from every replica, compares the copies seq by seq, and names a replica whose copy differs
from the majority's (a nats-server 2.9 partition can leave one so: docs/cluster.md).
  --nats URLS       nats:// URLs, comma-separated (default: NATS_URL)
  --namespace NS    the resources of namespace NS (default: none)
  --stream NAME     check only this stream (repeatable)
  --tail N          compare only the last N seqs of each stream (quick, after a partition)
  --from-seq N      compare from seq N on
  --repair          rebuild each replica found different from the leader's copy, then check again
  --json            one JSON line per stream
Exit code: 0 every replica agrees (after a repair, if asked), 1 one differs or a stream could not
be compared, 2 a usage mistake.
`

class UsageError extends Error {
  override readonly name = 'UsageError'
}

function count(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${flag} must be an integer ≥ 1`)
  return Number(value)
}

/** Runs the check (and the repair); the exit code as the usage says. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  const { values, positionals } = parsed
  if (positionals[0] !== 'check-replicas' || positionals.length > 1)
    throw new UsageError(`unknown subcommand ${JSON.stringify(positionals.join(' '))}`)
  const urls = (values.nats ?? env.NATS_URL ?? '').split(',').filter((url) => url.length > 0)
  if (urls.length === 0) throw new UsageError('--nats (or NATS_URL) is required')
  const tail = count(values.tail, '--tail')
  const fromSeq = count(values['from-seq'], '--from-seq')
  const started = Date.now()
  // Progress with the time since the start: an operator sees what waits (an election, a copy).
  const say = (line: string) =>
    process.stderr.write(`[${((Date.now() - started) / 1_000).toFixed(1)} s] ${line}\n`)
  let nc: Awaited<ReturnType<typeof connect>>
  try {
    nc = await connect({ servers: urls, name: 'colloquy-check-replicas', timeout: 5_000 })
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    process.stderr.write(`colloquy: cannot reach NATS at ${urls.join(',')} (${reason})\n`)
    return 1
  }
  try {
    const streams = values.stream ?? (await colloquyStreamNames(nc, values.namespace))
    if (streams.length === 0) {
      say('no Colloquy stream found (wrong --nats or --namespace?)')
      return 1
    }
    const range = { ...(tail === undefined ? {} : { tail }), ...(fromSeq === undefined ? {} : { fromSeq }) }
    const print = (reports: readonly StreamReplicaReport[]): void => {
      for (const report of reports) {
        process.stdout.write(
          values.json === true ? `${JSON.stringify(report)}\n` : `${describeReport(report)}\n`,
        )
      }
    }
    let reports = await checkReplicas({ nc, streams, ...range, log: say })
    print(reports)
    const toRepair = reports.filter((report) => report.diverged.length === 1)
    if (values.repair === true && toRepair.length > 0) {
      for (const report of toRepair) {
        await repairReplica({ nc, stream: report.stream, peer: report.diverged[0]!.peer, log: say })
      }
      say('checking the repaired streams again')
      const again = await checkReplicas({
        nc,
        streams: toRepair.map((report) => report.stream),
        ...range,
        log: say,
      })
      print(again)
      reports = reports.map((report) => again.find((next) => next.stream === report.stream) ?? report)
    }
    // A stream with fewer replicas than the log's: before the fix of openJetStreamResources,
    // COLLOQUY_UPDATES was created with 1 replica (docs/cluster.md).
    const logPeers = reports[0]?.peers.length ?? 0
    const short = reports.filter((report) => report.peers.length < logPeers)
    for (const report of short) {
      say(
        `${report.stream} has ${report.peers.length} replica(s) where ${reports[0]?.stream} has ${logPeers}: ` +
          `raise it (nats stream edit ${report.stream} --replicas ${logPeers})`,
      )
    }
    const isClean = reports.every(
      (report) =>
        report.diverged.length === 0 &&
        report.unresolved.length === 0 &&
        (report.skipped === undefined || report.skipped === 'one replica'),
    )
    return isClean && short.length === 0 ? 0 : 1
  } finally {
    await nc.close()
  }
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      nats: { type: 'string' },
      namespace: { type: 'string' },
      stream: { type: 'string', multiple: true },
      tail: { type: 'string' },
      'from-seq': { type: 'string' },
      repair: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  })
}

/** One line per stream: what an operator acts on first. */
export function describeReport(report: StreamReplicaReport): string {
  const where = `${report.stream} (seqs ${report.fromSeq}..${report.toSeq}, ${report.compared} messages, replicas ${report.peers.join(', ')}, leader ${report.leader ?? 'none'})`
  if (report.skipped !== undefined) return `${where}: not compared: ${report.skipped}`
  const parts = report.diverged.map(
    (replica) =>
      `${replica.peer} DIFFERS from the majority at ${replica.count} seqs, ${replica.conflicts} of them holding another message (first: ${replica.seqs.join(', ')})`,
  )
  if (report.unresolved.length > 0)
    parts.push(`no majority at seqs ${report.unresolved.join(', ')} (not repairable by this command)`)
  return parts.length === 0 ? `${where}: replicas agree` : `${where}: ${parts.join('; ')}`
}
