// Makes a JetStream replica diverge, as nats-server 2.9.10 does after a partition (issue 15): the
// leader of a stream moved to n3, n3 cut off by the partition proxies while a client on n3
// publishes (stored by n3 without quorum, never acked) and the majority publishes too (acked),
// then healed. Also moves a stream's leadership to a given server. For the replica check's tests;
// the steps are those of quorum-partition.test.ts, "return what the majority acked…".

import { jetstream } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { waitForFullMesh } from './colloquy-cluster.js'
import { jszStreams, type NatsCluster } from './nats-cluster.js'
import type { PartitionProxies } from './partition-proxy.js'

/**
 * Asks the leader of `stream` to step down until `name` leads it (bounded: at most 30 step-downs,
 * and 120 s in all).
 */
export async function moveStreamLeader(
  cluster: NatsCluster,
  nc: NatsConnection,
  stream: string,
  name: string,
): Promise<void> {
  const deadline = Date.now() + 120_000
  let stepDowns = 0
  while (stepDowns < 30 && Date.now() < deadline) {
    await cluster.waitForStreamLeader(stream, 20_000)
    const leader = await waitForAgreedLeader(cluster, stream, 20_000)
    if (leader === name) return
    if (!(await stepDown(nc, stream))) {
      // Refused ("JetStream system temporarily unavailable" right after a heal) or unanswered:
      // nothing changed, ask again shortly.
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    stepDowns++
    // Until the election ends, the servers that followed `leader` still name it (and so may
    // waitForAgreedLeader): wait until one no longer does, then the loop waits for the new leader.
    await waitForStepDown(cluster, stream, leader, 10_000)
  }
  throw new Error(`${name} never became the leader of ${stream} (${stepDowns} step-downs)`)
}

/** Asks the leader of `stream` to step down; true if it answered that it did. */
async function stepDown(nc: NatsConnection, stream: string): Promise<boolean> {
  try {
    const answer = await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, '', { timeout: 10_000 })
    return (answer.json() as { success?: boolean }).success === true
  } catch {
    // No responders or no answer in time: as a refusal.
    return false
  }
}

/**
 * Resolves once some running server no longer names `previous` the leader of `stream` (the
 * step-down seen), or after `ms` without that (the old leader elected again at once: the caller's
 * loop finds it leading and asks again).
 */
async function waitForStepDown(
  cluster: NatsCluster,
  stream: string,
  previous: string,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    const named = await namedLeaders(cluster, stream)
    if (named.some((leader) => leader !== previous) || Date.now() > deadline) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
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
    const named = await namedLeaders(cluster, stream)
    const [first] = named
    if (first !== undefined && named.every((leader) => leader === first)) return first
    if (Date.now() > deadline)
      throw new Error(`the servers named leaders ${named.join(', ')} of ${stream} for ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The leader of `stream` each running server names (`/jsz`; undefined: none, or no answer in 1 s). */
function namedLeaders(cluster: NatsCluster, stream: string): Promise<(string | undefined)[]> {
  return Promise.all(
    cluster.nodes
      .filter((node) => node.isRunning())
      .map(async (node) => {
        try {
          const { streams } = await jszStreams(node, 1_000)
          return streams.find((detail) => detail.name === stream)?.cluster?.leader
        } catch {
          return undefined
        }
      }),
  )
}
