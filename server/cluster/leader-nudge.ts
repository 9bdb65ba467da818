// Asks the log stream's leader to step down when this node's publishes keep finding no subscriber
// ("no responders") while the stream names that leader: nats-server 2.9.10 was seen to elect a
// stream leader that never subscribed to the stream's subjects. A new leader subscribes. Creates
// the stream again when JetStream answers that it has none (its meta state lost the create).

import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream'
import type { Logger } from '../observability/log.js'
import { type JetStreamResources, logStreamConfig } from './jetstream-log.js'
import type { JetStreamStore } from './jetstream-store.js'

/**
 * When the nudge acts: after publishes found no responder for `afterMs` without an ack between
 * them, then again every `everyMs` while that lasts. Why these: an election (the other cause of
 * "no responders": no leader, so no subscriber) was measured here at about 6 s after a leader kill,
 * and the stream info that must name a leader is not answered during one; a fault of the leader
 * lasts (over 60 s, 2 runs in 14), and a needless step-down costs one election.
 */
export const LeaderNudgeTiming = { afterMs: 5_000, everyMs: 10_000 } as const

/** What the store tells the nudge. */
export interface LeaderNudge {
  /** A publish to the log got "no responders": may ask the leader to step down. */
  noResponders(): void
  /** A publish was acked: the streak ends. */
  acked(): void
  /** Step-downs asked since creation. */
  readonly stepDowns: number
  /** Creates of the log stream that succeeded (JetStream knew none while publishes failed). */
  readonly recreates: number
}

/** Options of {@link createLeaderNudge}. */
export interface LeaderNudgeOptions {
  readonly resources: JetStreamResources
  readonly logger: Logger
  /** See {@link LeaderNudgeTiming}. */
  readonly afterMs?: number
  readonly everyMs?: number
  /** Timeout of the stream info and the step-down request (default 3 s). */
  readonly requestTimeoutMs?: number
}

/**
 * Creates the nudge for the log stream of `resources`.
 *
 * @remarks Why (issue 15, the store test's late node, 2 runs in 14, then 1 in 12 instrumented):
 * every publish of a node to the log got "no responders" (nats-server's 503: no subscriber of the
 * subject reachable from the node's server) for over 60 s, while every server named the same
 * leader of the log stream with both followers current, and `/subsz` of every server (the leader's
 * included) held no subscription matching the subject, nor did any route carry one: the leader
 * never subscribed to the stream's subjects. The node cannot fix a server; it can ask the leader
 * to step down (`$JS.API.STREAM.LEADER.STEPDOWN`), and the next leader subscribes. It asks only
 * when the stream info (answered by the stream leader itself) names a leader: a stream without
 * one is electing, and a step-down would not help.
 *
 * And once (1 run in 3 after that, with the nudge): the servers' meta states disagreed on which
 * streams existed (5, 4 and 5 of the 6 streams; the log stream on n1 only, leaderless, while the
 * meta leader had none), so no leader could be elected or asked. When the stream info answers
 * "stream not found", or names no leader, the nudge creates the log stream again with the
 * configuration every node creates at start (an identical create is idempotent). Seen: once the
 * info said "not found" and the re-create let the node open; twice the test ran out its 60 s
 * with the divergence and no re-create (the info named no leader, or got no answer: not printed).
 */
export function createLeaderNudge(options: LeaderNudgeOptions): LeaderNudge {
  const { resources, logger } = options
  const afterMs = options.afterMs ?? LeaderNudgeTiming.afterMs
  const everyMs = options.everyMs ?? LeaderNudgeTiming.everyMs
  const timeout = options.requestTimeoutMs ?? 3_000
  const { stream } = resources.names
  let streakSince: number | undefined
  let lastAskedAt = Number.NEGATIVE_INFINITY
  let isAsking = false
  let stepDowns = 0
  let manager: Promise<JetStreamManager> | undefined
  let recreates = 0

  async function ask(streakMs: number): Promise<void> {
    const server = resources.nc.info?.server_name
    // Its own manager, with the short timeout: an info that gets no answer is asked again at the
    // next turn rather than holding the nudge for the store's 10 s API timeout (seen: the re-create
    // came 26 s into a streak).
    manager ??= jetstreamManager(resources.nc, { timeout, checkAPI: false })
    const jsm = await manager
    let info: Awaited<ReturnType<typeof jsm.streams.info>>
    try {
      info = await jsm.streams.info(stream)
    } catch (error) {
      if (!isStreamNotFound(error)) throw error
      logger.warn(
        { stream, streakMs, server },
        'publishes to the log find no subscriber and JetStream knows no log stream: creating it again',
      )
      await jsm.streams.add(logStreamConfig(resources.names, resources.replicas))
      recreates++
      return
    }
    const leader = info.cluster?.leader
    if (leader === undefined || leader === '') {
      // No leader named: electing, or perhaps the server whose leftover copy of the stream the
      // meta leader forgot answered the info. A step-down would not help; the create every node
      // makes at start (identical: a no-op when JetStream knows the stream) does no harm, and
      // makes the stream again when the meta leader has none.
      await jsm.streams.add(logStreamConfig(resources.names, resources.replicas))
      logger.warn(
        { stream, streakMs, server },
        'publishes to the log find no subscriber and the stream names no leader: created it again (idempotent)',
      )
      recreates++
      return
    }
    // Not asked twice for one streak segment, whatever the answer.
    logger.warn(
      { stream, leader, streakMs, server },
      'publishes to the log find no subscriber while the stream names a leader: asking it to step down',
    )
    stepDowns++
    await resources.nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout })
  }

  return {
    noResponders() {
      const now = Date.now()
      streakSince ??= now
      if (isAsking || now - streakSince < afterMs || now - lastAskedAt < everyMs) return
      isAsking = true
      lastAskedAt = now
      ask(now - streakSince)
        .catch((error: unknown) => {
          logger.debug({ stream, err: error }, 'leader step-down not asked or not answered')
        })
        .finally(() => {
          isAsking = false
        })
    },
    acked() {
      streakSince = undefined
    },
    get stepDowns() {
      return stepDowns
    },
    get recreates() {
      return recreates
    },
  }
}

/** JetStream's 10059 "stream not found". */
function isStreamNotFound(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } })?.api_error?.err_code
  return code === 10059 || (error instanceof Error && /stream not found/i.test(error.message))
}

/** Whether a failed append's error (or its cause) is JetStream's "no responders". */
export function isNoResponders(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++) {
    if (/no responders/i.test(e.message)) return true
  }
  return false
}

/** `store` whose appends tell `nudge` how they ended (every other member unchanged). */
export function withLeaderNudge(store: JetStreamStore, nudge: LeaderNudge): JetStreamStore {
  const append: JetStreamStore['append'] = async (entries) => {
    try {
      const seqs = await store.append(entries)
      if (entries.length > 0) nudge.acked()
      return seqs
    } catch (error) {
      if (isNoResponders(error)) nudge.noResponders()
      throw error
    }
  }
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'append') return append
      const value: unknown = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
