// Makes a JetStream replica diverge, as nats-server 2.9.10 does after a partition (issue 15): the
// leader of a stream moved to n3, n3 cut off by the partition proxies while a client on n3
// publishes (stored by n3 without quorum, never acked) and the majority publishes too (acked),
// then healed. Also moves a stream's leadership to a given server. For the replica check's tests;
// the steps are those of quorum-partition.test.ts, "return what the majority acked…".

import { jetstream } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { waitForFullMesh } from './colloquy-cluster.js'
import type { NatsCluster } from './nats-cluster.js'
import type { PartitionProxies } from './partition-proxy.js'

/** Asks the leader of `stream` to step down until `name` leads it (at most 30 step-downs). */
export async function moveStreamLeader(
  cluster: NatsCluster,
  nc: NatsConnection,
  stream: string,
  name: string,
): Promise<void> {
  for (let attempt = 0; attempt < 30; attempt++) {
    await cluster.waitForStreamLeader(stream, 20_000)
    if ((await waitForAgreedLeader(cluster, stream, 20_000)) === name) return
    await nc
      .request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, '', { timeout: 10_000 })
      .catch(() => undefined)
    // The old leader reports itself leader until the election ends: wait for it to step down.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
  }
  throw new Error(`${name} never became the leader of ${stream}`)
}

/** What {@link divergeReplicas} did: per target, the seq the majority acked; the cut-off side's acks. */
export interface Divergence {
  readonly majoritySeqs: readonly number[]
  /** Acks the cut-off side got (0: nothing it stored was acked). */
  readonly minorityAcks: number
}

/** A stream to make diverge, and the subject of it to publish on. */
export interface DivergenceTarget {
  readonly stream: string
  readonly subject: string
}

/**
 * Moves each target stream's leadership to the node at `cutIndex`, cuts that node off, publishes
 * `minorityTexts` on each target's subject through `cut` (a connection to that node only) and
 * `majorityText` through `nc` (to another node) until acked, then heals and waits for a full mesh
 * and, for each stream, a leader every server names (bounded: about 90 s in all at most).
 */
export async function divergeReplicas(options: {
  readonly cluster: NatsCluster
  readonly proxies: PartitionProxies
  readonly nc: NatsConnection
  readonly cut: NatsConnection
  readonly cutIndex: number
  readonly targets: readonly DivergenceTarget[]
  readonly minorityTexts: readonly string[]
  readonly majorityText: string
}): Promise<Divergence> {
  const { cluster, proxies, nc, targets } = options
  const cutName = cluster.nodes[options.cutIndex]!.name
  for (const { stream } of targets) await moveStreamLeader(cluster, nc, stream, cutName)
  proxies.isolate(options.cutIndex)
  // The cut-off node still leads on its side for a few seconds: it stores these without a quorum.
  const minority = jetstream(options.cut, { timeout: 2_000 })
  const minorityAcks = Promise.all(
    targets.map(async ({ subject }) => {
      let acks = 0
      for (const text of options.minorityTexts) {
        acks += await minority.publish(subject, text).then(
          () => 1,
          () => 0,
        )
      }
      return acks
    }),
  )
  const js = jetstream(nc, { timeout: 1_000 })
  const deadline = Date.now() + 30_000
  const majoritySeqs = await Promise.all(
    targets.map(async ({ subject }) => {
      let seq = 0
      while (seq === 0 && Date.now() < deadline) {
        seq = await js.publish(subject, options.majorityText).then(
          (ack) => ack.seq,
          () => 0,
        )
      }
      return seq
    }),
  )
  const acks = (await minorityAcks).reduce((sum, count) => sum + count, 0)
  proxies.heal()
  await waitForFullMesh(cluster, 20_000)
  for (const { stream } of targets) {
    await cluster.waitForStreamLeader(stream, 30_000)
    await waitForAgreedLeader(cluster, stream, 30_000)
  }
  return { majoritySeqs, minorityAcks: acks }
}

/**
 * Resolves with the leader of `stream` once every running server names the same one (`/jsz`).
 * Right after a heal the server that was cut off while it led still names itself, with the
 * replicas it saw current before the cut, so `waitForStreamLeader` may take its word.
 */
export async function waitForAgreedLeader(cluster: NatsCluster, stream: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms
  for (;;) {
    const named = await Promise.all(
      cluster.nodes
        .filter((node) => node.isRunning())
        .map(async (node) => {
          try {
            const response = await fetch(
              `http://127.0.0.1:${node.monitorPort}/jsz?accounts=true&streams=true`,
              { signal: AbortSignal.timeout(1_000) },
            )
            const jsz = (await response.json()) as JszStreams
            const details = (jsz.account_details ?? []).flatMap((account) => account.stream_detail ?? [])
            return details.find((detail) => detail.name === stream)?.cluster?.leader
          } catch {
            return undefined
          }
        }),
    )
    const [first] = named
    if (first !== undefined && named.every((leader) => leader === first)) return first
    if (Date.now() > deadline)
      throw new Error(`the servers named leaders ${named.join(', ')} of ${stream} for ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

interface JszStreams {
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[]
}
