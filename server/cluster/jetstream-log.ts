// The JetStream resources the cluster store uses, and the low-level reads and writes on them: one
// log stream (a subject per session), KV buckets for session records and the checkpoint index, and
// object stores for checkpoint states and large updates. Knows bytes and stream seqs, not Store.

import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream'
import { type KV, Kvm } from '@nats-io/kv'
import { type ObjectStore, Objm } from '@nats-io/obj'
import { type NatsConnection, nanos } from '@nats-io/transport-node'
import {
  type ApiAnswer,
  agreedAnswer,
  apiError,
  askLeaders,
  checkedInfo,
  decodeGot,
  INFO_ANSWER_STALL_MS,
  LEADER_ACTIVE_MS,
  LEADER_ANSWER_STALL_MS,
  META_ANSWER_STALL_MS,
  messageKey,
  StaleLeaderError,
} from './leader-check.js'

export { StaleLeaderError } from './leader-check.js'

/** Names of the JetStream resources; every node of one cluster must use the same. */
export interface JetStreamNames {
  readonly stream: string
  readonly subjectPrefix: string
  readonly sessions: string
  readonly index: string
  readonly leases: string
  readonly states: string
  readonly updates: string
}

/**
 * The resource names of a deployment: `COLLOQUY_LOG` on `colloquy.log.>` and so on, or with a
 * namespace (`[A-Za-z0-9]+`) appended, so that several deployments (or tests) share one cluster.
 */
export function jetStreamNames(namespace?: string): JetStreamNames {
  if (namespace !== undefined && !/^[A-Za-z0-9]+$/.test(namespace)) {
    throw new TypeError(`namespace must match [A-Za-z0-9]+, got ${JSON.stringify(namespace)}`)
  }
  const suffix = namespace === undefined ? '' : `_${namespace}`
  return {
    stream: `COLLOQUY_LOG${suffix}`,
    subjectPrefix: namespace === undefined ? 'colloquy.log' : `colloquy.${namespace}.log`,
    sessions: `COLLOQUY_SESSIONS${suffix}`,
    index: `COLLOQUY_INDEX${suffix}`,
    leases: `COLLOQUY_LEASES${suffix}`,
    states: `COLLOQUY_STATES${suffix}`,
    updates: `COLLOQUY_UPDATES${suffix}`,
  }
}

/** Message headers of a log entry. */
export const LogHeader = {
  /** Server time of the update (ms since epoch, decimal). */
  time: 'Colloquy-Time',
  /** Bytes of the update (decimal): what `logBytes` counts, readable from headers alone. */
  size: 'Colloquy-Size',
  /** Set when the update is in the updates object store under this name (the body is empty). */
  object: 'Colloquy-Object',
} as const

/** The configuration of the log stream: what every node creates (identical, so idempotent). */
export function logStreamConfig(names: JetStreamNames, replicas: number) {
  return {
    name: names.stream,
    subjects: [`${names.subjectPrefix}.>`],
    num_replicas: replicas,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
  }
}

/** The opened resources. */
export interface JetStreamResources {
  readonly names: JetStreamNames
  /** Replicas of every stream and bucket. */
  readonly replicas: number
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  readonly sessions: KV
  readonly index: KV
  readonly leases: KV
  readonly states: ObjectStore
  readonly updates: ObjectStore
  /** Largest message the servers accept (their `max_payload`). */
  readonly maxPayload: number
}

/** Options of {@link openJetStreamResources}. */
export interface JetStreamResourceOptions {
  readonly nc: NatsConnection
  /** Replicas of every stream and bucket (default 3; 1 for a single nats-server). */
  readonly replicas?: number
  /** JetStream API timeout (default 10 s: a leader election takes a few seconds). */
  readonly timeoutMs?: number
  /** How long a compaction lease lives unless released (default 60 s). */
  readonly leaseTtlMs?: number
  /** See {@link jetStreamNames} (default: none). */
  readonly namespace?: string
}

/**
 * Creates (or opens) the stream, buckets and object stores, idempotently: every node runs this at
 * start with the same configuration, and the server accepts a create of an identical config.
 */
export async function openJetStreamResources(options: JetStreamResourceOptions): Promise<JetStreamResources> {
  const { nc } = options
  const replicas = options.replicas ?? 3
  const timeout = options.timeoutMs ?? 10_000
  const names = jetStreamNames(options.namespace)
  const jsm = await jetstreamManager(nc, { timeout })
  const js = jsm.jetstream()
  const streamConfig = logStreamConfig(names, replicas)
  try {
    await jsm.streams.info(names.stream)
  } catch {
    // Missing (or not reachable yet): create it; an identical concurrent create succeeds too.
    await jsm.streams.add(streamConfig)
  }
  const kvm = new Kvm(js)
  // allow_direct off: a direct get may be answered by any replica, and a follower that has not yet
  // applied a put answers with the older value (or none). Every read of ours must see every write
  // acked before it (a checkpoint listed right after it was put, a session record right after its
  // create), so reads go to the stream leader. Passing false also makes the client read through the
  // leader from a bucket an older version created with direct gets on.
  const bucket = { replicas, history: 1, storage: StorageType.File, timeout, allow_direct: false }
  const leaseTtlMs = options.leaseTtlMs ?? 60_000
  const [sessions, index, leases] = await Promise.all([
    kvm.create(names.sessions, bucket),
    kvm.create(names.index, bucket),
    kvm.create(names.leases, { ...bucket, ttl: leaseTtlMs }),
  ])
  const objm = new Objm(js)
  // One options object each: the client deletes `replicas` from the object it is given, so a shared
  // one left the second store at 1 replica (found by the replica check, issue 15).
  const objects = () => ({ replicas, storage: StorageType.File })
  const [states, updates] = await Promise.all([
    objm.create(names.states, objects()),
    objm.create(names.updates, objects()),
  ])
  return {
    names,
    replicas,
    nc,
    js,
    jsm,
    sessions,
    index,
    leases,
    states,
    updates,
    maxPayload: nc.info?.max_payload ?? 1024 * 1024,
  }
}

/** One message of a session's subject as a scan returns it. */
export interface ScannedMessage {
  readonly streamSeq: number
  readonly time: number
  readonly size: number
  /** The body (empty for a header-only scan, or when the update is in the object store). */
  readonly data: Uint8Array
  /** The object name when the update is in the updates object store. */
  readonly object: string | undefined
}

/** A leader-only JetStream API request of `stream`, every answer gathered (see leader-check.ts). */
function askStreamLeaders(
  resources: JetStreamResources,
  verb: 'STREAM.INFO' | 'STREAM.MSG.GET',
  stream: string,
  body: unknown,
  stallMs = LEADER_ANSWER_STALL_MS,
) {
  const options = resources.jsm.getOptions()
  const prefix = options.apiPrefix ?? '$JS.API'
  return askLeaders(resources.nc, `${prefix}.${verb}.${stream}`, body, options.timeout ?? 10_000, stallMs)
}

/** {@link askStreamLeaders} of the log stream. */
function askLogLeaders(
  resources: JetStreamResources,
  verb: 'STREAM.INFO' | 'STREAM.MSG.GET',
  body: unknown,
  stallMs = LEADER_ANSWER_STALL_MS,
) {
  return askStreamLeaders(resources, verb, resources.names.stream, body, stallMs)
}

/** The seq a `last_by_subj` get agreed on by every server that answered (undefined: none). */
async function agreedLastSeq(answers: Promise<ApiAnswer[]>, subject: string): Promise<number | undefined> {
  try {
    return decodeGot(agreedAnswer(`the last seq of ${subject}`, await answers, messageKey)).seq
  } catch (error) {
    // 10037: no message found for the subject.
    if (isNoMessageError(error)) return undefined
    throw error
  }
}

/**
 * The last message of `subject`: its stream seq, or undefined when the subject is empty. One
 * leader get whose answers are gathered: servers that disagree fail it ({@link StaleLeaderError}).
 *
 * @remarks The relay's log check (once a second per loaded session) asks this, so its stall is
 * short ({@link META_ANSWER_STALL_MS}). A get carries no evidence of its server's leadership: a
 * cut-off leader answering it alone (its rival later than the stall) can delay a repair by a check,
 * or make the check read a range that holds less than it said: the relay's watermark then passes
 * seqs the majority may fill later, whose updates the relay still delivers and announces (see
 * docs/cluster.md). The read it triggers is checked.
 */
export async function lastStreamSeq(
  resources: JetStreamResources,
  subject: string,
): Promise<number | undefined> {
  return inStep(ReadStep.lastSeq, undefined, () =>
    agreedLastSeq(
      askLogLeaders(resources, 'STREAM.MSG.GET', { last_by_subj: subject }, META_ANSWER_STALL_MS).all,
      subject,
    ),
  )
}

/** The log stream's leader as a read checked it: see {@link checkedLeader}. */
export interface CheckedLeader {
  /** The leader's name (undefined for a stream without a cluster). */
  readonly leader: string | undefined
  /** The stream's last seq as the leader answered. */
  readonly streamLast: number
  /** The subject's message count (only when asked with a subject). */
  readonly count: number
}

/**
 * The log stream's leader, from a stream info (with `subjects_filter` when `subject` is given)
 * answered by one server only within {@link INFO_ANSWER_STALL_MS} of its answer, naming a leader
 * that heard from a majority of its replicas (itself counted) within {@link LEADER_ACTIVE_MS};
 * else a transient {@link StaleLeaderError}.
 *
 * @remarks A stream info carries its own evidence: a server that a partition cut off while it led,
 * and that still believes it leads right after the heal, has mostly heard from no replica since
 * the cut; its answer says so (`replicas[].active`, 6–10 s measured, where a healthy leader
 * reports under 1 s, idle or not). Not always: once (1 run in 35) it had heard from them (their
 * answers to its heartbeats, which carry the new term, before it stepped down) and answered first,
 * the real leader a moment later: hence the short stall for a second answer too.
 */
export async function checkedLeader(resources: JetStreamResources, subject?: string): Promise<CheckedLeader> {
  const { stream } = resources.names
  const body = subject === undefined ? undefined : { subjects_filter: subject }
  const info = await inStep(ReadStep.streamInfo, undefined, async () =>
    checkedInfo(stream, await askLogLeaders(resources, 'STREAM.INFO', body, INFO_ANSWER_STALL_MS).all),
  )
  return {
    leader: info.leader,
    streamLast: info.lastSeq,
    count: subject === undefined ? 0 : (info.subjects?.[subject] ?? 0),
  }
}

/** What a meta read knows of the log before it counts: see {@link checkedLeaderView}. */
export interface LeaderView extends CheckedLeader {
  /** The subject's last seq (undefined: the subject is empty). */
  readonly last: number | undefined
}

/**
 * {@link checkedLeader} with the subject's count, and the subject's last seq from a `last_by_subj`
 * get whose answers are all gathered ({@link lastStreamSeq}), both at once.
 */
export async function checkedLeaderView(resources: JetStreamResources, subject: string): Promise<LeaderView> {
  const [checked, last] = await Promise.allSettled([
    checkedLeader(resources, subject),
    lastStreamSeq(resources, subject),
  ])
  // One error whichever answer came first (a read logs each kind of failure once): a stale
  // leader's, else the last seq's, else the info's.
  const failures = [last, checked].flatMap((result) => (result.status === 'rejected' ? [result.reason] : []))
  if (checked.status === 'rejected' || last.status === 'rejected') {
    throw failures.find((error) => error instanceof StaleLeaderError) ?? failures[0]
  }
  return { ...checked.value, last: last.value }
}

/** JetStream's 10008 "JetStream system temporarily unavailable" (no meta leader, or catching up). */
function isMetaUnavailable(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } })?.api_error?.err_code
  return code === 10008 || (error instanceof Error && /temporarily unavailable/i.test(error.message))
}

function isNoMessageError(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number }; code?: unknown })?.api_error?.err_code
  return code === 10037 || (error instanceof Error && /no message found/i.test(error.message))
}

/** The request of a read that failed: {@link scanSubject} names it on the error it throws. */
export const ReadStep = {
  lastSeq: 'last seq (leader get)',
  streamInfo: 'stream info',
  consumerCreate: 'consumer create',
  fetch: 'consumer fetch',
  get: 'leader get',
  kvKeys: 'kv keys (stream info)',
  kvGet: 'kv get (leader get)',
} as const

/** What {@link scanSubject} adds to an error it throws: the step, and the server that served it. */
interface ReadErrorContext {
  readStep?: string
  readServer?: string
}

/** Runs one request of a read; a failure leaves with the step (and server) named on the error. */
async function inStep<T>(step: string, server: string | undefined, request: () => Promise<T>): Promise<T> {
  try {
    return await request()
  } catch (error) {
    if (error !== null && typeof error === 'object' && (error as ReadErrorContext).readStep === undefined) {
      Object.assign(error as ReadErrorContext, { readStep: step, readServer: server })
    }
    throw error
  }
}

/** A failed read as a log line gives it: see {@link describeReadFailure}. */
export interface ReadFailure {
  /** The step and the error without its numbers: one line per kind is enough. */
  readonly kind: string
  readonly step: string | undefined
  /**
   * The server that served the failed request when the read knows it (the server its consumer was
   * placed on), else the server this node's connection is on (the one that relayed the request).
   */
  readonly server: string | undefined
  readonly err: string
}

/**
 * Describes a read's failure for a log line (issue 15: after a partition healed, a node's reads
 * failed for 15 s and more while appends went through, and nothing said with what).
 */
export function describeReadFailure(resources: JetStreamResources, error: unknown): ReadFailure {
  const context = (error ?? {}) as ReadErrorContext
  const err = error instanceof Error ? error.message : String(error)
  const step = context.readStep
  return {
    kind: `${step ?? 'read'}: ${err.replace(/[0-9]+/g, '#')}`,
    step,
    server: context.readServer ?? resources.nc.info?.server_name,
    err,
  }
}

/**
 * How long a read waits for the replica that serves it to catch up with the stream leader before it
 * fails (as `storage-unavailable`: the caller retries). See {@link scanSubject}.
 */
export const REPLICA_CATCH_UP_MS = 15_000

/** Options of {@link scanSubject}. */
export interface ScanOptions {
  /** How long the read may make no progress before it fails (default {@link REPLICA_CATCH_UP_MS}). */
  readonly catchUpMs?: number
  /** Consumers created in a row to get one on the leader (default {@link LEADER_PLACEMENT_ATTEMPTS}; 0: gets only). */
  readonly placementAttempts?: number
  /**
   * Read through a consumer wherever nats-server places it (one create, no placement check), for
   * reads whose answer is an estimate: the meta's header tally, which only steers the compaction
   * policy. A lagging replica still cannot make the read short (it reads through the leader's last
   * seq); a diverged one (see {@link scanSubject}) could miscount sizes, never lose data.
   */
  readonly anyReplica?: boolean
  /** The leader's view checked just before (by a meta read of the same subject): not asked again. */
  readonly view?: LeaderView
}

/** The log's leader checked as {@link checkedLeader}, but from every answer (after the stall). */
async function checkedLeaderOfAll(resources: JetStreamResources): Promise<string | undefined> {
  const { stream } = resources.names
  return inStep(ReadStep.streamInfo, undefined, async () =>
    checkedInfo(stream, await askLogLeaders(resources, 'STREAM.INFO', undefined).all),
  ).then((info) => info.leader)
}

/**
 * Reads the messages of `subject` with stream seqs in [fromSeq, toSeq], at most `limit`, in order,
 * from the **stream leader's** copy: through a short-lived pull consumer placed on the leader (no
 * durable state on the servers; deleted after the read), or, while nats-server keeps placing it on
 * another replica, through one leader message get per message (64 at a time, then it tries again).
 *
 * @remarks Why the leader's copy (issue 15, the partition test, 3 runs in 8 here under load):
 * nats-server 2.9.10 lets a stream leader that a partition cut off go on storing what its clients
 * publish, without a quorum and without an ack, and after the heal that server keeps those
 * messages at the seqs where the majority stored others: its replica diverges for good. Measured
 * here (`quorum-partition.test.ts`): the cut-off leader's store held the minority's never-acked
 * messages at the seqs the majority had acked its own; a read through a consumer nats-server
 * placed there (at random among the replicas) returned them instead of the acked ones. Reads that
 * followed such a consumer (the ordered consumer of the client library, placed anywhere, and
 * placed again elsewhere after a reset) lost acked updates. The leader holds what the majority
 * acked (a server elected after the heal holds its log).
 *
 * It asks the leader first (a stream info, {@link checkedLeader}: the subject's count, so an empty
 * subject costs no consumer), and keeps a consumer only if nats-server placed it on that leader;
 * the consumer reads on until it has delivered what it counted pending at its creation (its
 * server's count: the leader's), so neither a lagging replica nor a stale leader can end it short
 * (the earlier stale read of issue 15 stopped where a catching-up replica counted nothing
 * pending). A read that cannot make progress for `options.catchUpMs` fails (as
 * `storage-unavailable`: the caller retries), never answers short.
 *
 * The guard against a stale leader (a cut-off server that still believes it leads, right after a
 * heal, answering with its own copy): the stream info's answer must name a leader that heard from
 * a majority of its replicas lately, or the read fails with a transient {@link StaleLeaderError};
 * a consumer on that leader reads the majority's copy. Message gets carry no such evidence: each
 * get's answers are gathered and compared when the read ends (one stall for the whole read, not
 * one per get), and the read then asks the stream info again, every answer gathered, which must
 * name the same one leader (a cut-off leader that answered a get alone still believes it leads a
 * moment later, and answers that too).
 */
export async function scanSubject(
  resources: JetStreamResources,
  subject: string,
  range: { fromSeq: number; toSeq: number; limit: number; headersOnly: boolean },
  options: ScanOptions = {},
): Promise<ScannedMessage[]> {
  const catchUpMs = options.catchUpMs ?? REPLICA_CATCH_UP_MS
  const attempts = options.placementAttempts ?? LEADER_PLACEMENT_ATTEMPTS
  const fromSeq = Math.max(1, range.fromSeq)
  if (range.limit <= 0 || fromSeq > range.toSeq) return []
  const isAnyReplica = options.anyReplica === true
  // A consumer placed anywhere may sit on a lagging replica: that read goes on to the subject's last
  // seq (asked with every answer gathered). A leader-placed one goes on to its own count.
  const view: CheckedLeader & { last?: number | undefined } =
    options.view ??
    (isAnyReplica ? await checkedLeaderView(resources, subject) : await checkedLeader(resources, subject))
  if (view.count === 0 || fromSeq > view.streamLast) return []
  // Every message of the subject present when the leader answered has a seq ≤ streamLast.
  const toSeq = Math.min(range.toSeq, isAnyReplica ? (view.last ?? 0) : view.streamLast)
  if (fromSeq > toSeq) return []
  const deadline = Date.now() + catchUpMs
  const found: ScannedMessage[] = []
  /** The answer checks of the leader gets made so far (see getEach). */
  const gotChecks: Promise<void>[] = []
  const checkedGets = async (): Promise<ScannedMessage[]> => {
    if (gotChecks.length === 0) return found
    // Both at once: the read's end waits for one stall, not two.
    const [, after] = await Promise.all([Promise.all(gotChecks), checkedLeaderOfAll(resources)])
    if (after !== view.leader) {
      throw new StaleLeaderError(
        `the leader of the log changed during a read of gets (${view.leader} → ${after})`,
      )
    }
    return found
  }
  let from = fromSeq
  for (;;) {
    const config = {
      filter_subject: subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      headers_only: range.headersOnly,
    }
    const leader = isAnyReplica ? anyServer : view.leader
    const placed = await createLeaderConsumer(resources, attempts, config, leader)
    const rest = { fromSeq: from, toSeq, limit: range.limit - found.length, headersOnly: range.headersOnly }
    if (placed !== undefined) {
      const { consumer, server, pending } = placed
      try {
        const fetched = inStep(ReadStep.fetch, server, () =>
          isAnyReplica
            ? fetchThrough(resources, consumer, subject, rest, deadline, catchUpMs)
            : fetchPending(consumer, subject, pending, rest, deadline, catchUpMs),
        )
        found.push(...(await fetched))
        return await checkedGets()
      } finally {
        consumer.delete().catch(() => undefined) // else the server drops it once inactive
      }
    }
    // No consumer landed on the leader: a few messages by gets, then a consumer is tried again.
    const got = await inStep(ReadStep.get, undefined, () =>
      getEach(
        resources,
        subject,
        { ...rest, limit: Math.min(rest.limit, GETS_BETWEEN_PLACEMENTS) },
        gotChecks,
      ),
    )
    found.push(...got)
    const lastGot = got[got.length - 1]
    if (lastGot === undefined || lastGot.streamSeq >= toSeq || found.length >= range.limit)
      return checkedGets()
    if (got.length < GETS_BETWEEN_PLACEMENTS) return checkedGets() // the subject ends (or was purged) there
    from = lastGot.streamSeq + 1
  }
}

/**
 * Reads through a consumer on the stream leader until it has delivered `pending` messages (what
 * it counted at its creation, from the leader's own copy), one past `toSeq`, or `limit`. A fetch
 * that delivers nothing short of that asks the consumer (answered by its one server) what is
 * pending: nothing means a purge took the rest meanwhile; else it waits, at most `catchUpMs`.
 */
function fetchPending(
  consumer: Consumer,
  subject: string,
  pending: number,
  range: ConsumerRange,
  deadline: number,
  catchUpMs: number,
): Promise<ScannedMessage[]> {
  return fetchRange(
    consumer,
    range,
    pending,
    async () => (await consumer.info()).num_pending === 0,
    (seenThrough, delivered) =>
      new Error(
        `read of ${subject} stalled at stream seq ${seenThrough} after ${delivered} of ${pending} messages for ${catchUpMs} ms`,
      ),
    deadline,
  )
}

/** Messages a read gets one by one before it tries again to place a consumer on the leader. */
const GETS_BETWEEN_PLACEMENTS = 64

/**
 * Reads through a consumer on any replica up to `toSeq` or `limit`. A fetch that delivers nothing
 * short of that asks the subject's last seq: either the leader changed and this replica lags (wait
 * for it, at most `catchUpMs`) or the subject was purged meanwhile through `last` (then what was
 * read is all).
 */
function fetchThrough(
  resources: JetStreamResources,
  consumer: Consumer,
  subject: string,
  range: ConsumerRange,
  deadline: number,
  catchUpMs: number,
): Promise<ScannedMessage[]> {
  return fetchRange(
    consumer,
    range,
    Number.POSITIVE_INFINITY,
    async () => {
      const now = await lastStreamSeq(resources, subject)
      return now === undefined || now < range.fromSeq
    },
    (seenThrough) =>
      new Error(
        `read of ${subject} stalled at stream seq ${seenThrough} of ${range.toSeq} for ${catchUpMs} ms (a lagging replica)`,
      ),
    deadline,
  )
}

interface ConsumerRange {
  readonly fromSeq: number
  readonly toSeq: number
  readonly limit: number
  readonly headersOnly: boolean
}

/**
 * The fetch loop of {@link fetchPending} and {@link fetchThrough}: batches until `pending` messages
 * were delivered, one past `toSeq`, or `limit`; after a fetch that delivered nothing, `isDrained`
 * says whether the read is complete, else it fetches again until `deadline` (then `stalled`).
 */
async function fetchRange(
  consumer: Consumer,
  range: ConsumerRange,
  pending: number,
  isDrained: () => Promise<boolean>,
  stalled: (seenThrough: number, delivered: number) => Error,
  deadline: number,
): Promise<ScannedMessage[]> {
  const found: ScannedMessage[] = []
  let delivered = 0
  let seenThrough = range.fromSeq - 1
  while (delivered < pending) {
    const batch = Math.max(1, Math.min(range.limit - found.length, pending - delivered, 512))
    // Fetches end on their own (expires): a purge racing this read cannot make it wait forever.
    const messages = await consumer.fetch({ max_messages: batch, expires: 2_000 })
    let received = 0
    for await (const message of messages) {
      received++
      delivered++
      const streamSeq = message.info.streamSequence
      seenThrough = streamSeq
      if (streamSeq > range.toSeq) return found
      found.push(scanned(streamSeq, message.headers, message.data, range.headersOnly))
      if (found.length >= range.limit || streamSeq >= range.toSeq || delivered >= pending) return found
    }
    if (received > 0) continue
    if (await isDrained()) return found
    if (Date.now() > deadline) throw stalled(seenThrough, delivered)
  }
  return found
}

function scanned(
  streamSeq: number,
  headers: { get(name: string): string } | undefined,
  data: Uint8Array,
  headersOnly: boolean,
): ScannedMessage {
  return {
    streamSeq,
    time: Number(headers?.get(LogHeader.time) || 0),
    size: Number(headers?.get(LogHeader.size) || data.byteLength),
    // A copy, and a plain Uint8Array: the client may reuse the buffer it parsed this message from.
    // A bound pull consumer's messages carry Node Buffers here, whose slice() is a view, not a
    // copy (the store contract's reopen test saw Buffers until this copied).
    data: headersOnly ? new Uint8Array(0) : new Uint8Array(data),
    object: headers?.get(LogHeader.object) || undefined,
  }
}

/**
 * The fallback of {@link scanSubject}: one `next_by_subj` message get per message, each answered by
 * the stream leader. Slower than a consumer for long reads (one round trip per message).
 *
 * @remarks Each get goes on with its first answer; every answer is gathered meanwhile, and
 * `checks` gets one promise per get that rejects ({@link StaleLeaderError}) if another server
 * answered it differently: the caller awaits them when the read ends.
 */
async function getEach(
  resources: JetStreamResources,
  subject: string,
  range: { fromSeq: number; toSeq: number; limit: number; headersOnly: boolean },
  checks: Promise<void>[],
): Promise<ScannedMessage[]> {
  const found: ScannedMessage[] = []
  let seq = range.fromSeq
  while (seq <= range.toSeq && found.length < range.limit) {
    // nats-server 2.9 answers `next_by_subj` (the first message of the subject at or after seq).
    const answers = askLogLeaders(resources, 'STREAM.MSG.GET', { seq, next_by_subj: subject })
    const first = await answers.first
    const at = seq
    const check = answers.all.then((all) => {
      const key = messageKey(first)
      if (all.some((answer) => messageKey(answer) !== key)) {
        throw new StaleLeaderError(
          `${all.length} servers answered the get of ${subject} at ${at} differently: ${all.map(messageKey).join(' / ')}`,
        )
      }
    })
    check.catch(() => undefined) // awaited by the caller; a read that fails first drops it
    checks.push(check)
    if (first.body.error !== undefined) {
      const error = apiError(first.body.error)
      if (isNoMessageError(error)) break // purged meanwhile
      throw error
    }
    const message = decodeGot(first)
    if (message.seq > range.toSeq) break
    found.push(scanned(message.seq, message.header, message.data, range.headersOnly))
    seq = message.seq + 1
  }
  return found
}

/**
 * How long an attempt to create a read's consumer waits for an answer (then the read goes on with
 * message gets). See {@link createLeaderConsumer}.
 */
export const CONSUMER_CREATE_TIMEOUT_MS = 3_000

/**
 * How many consumers a read creates at most, in a row, to get one on the stream leader
 * (nats-server places each at random among the replicas: all 4 miss 1 time in 5 with 3
 * replicas); then it reads {@link GETS_BETWEEN_PLACEMENTS} messages with gets and tries again.
 */
export const LEADER_PLACEMENT_ATTEMPTS = 4

/** A JetStream manager per resources whose API requests time out after {@link CONSUMER_CREATE_TIMEOUT_MS}. */
const readManagers = new WeakMap<JetStreamResources, Promise<JetStreamManager>>()

/** A read's consumer kept wherever it lands (see {@link ScanOptions.anyReplica}). */
const anyServer = Symbol('any server')

/** The consumer settings {@link createLeaderConsumer} takes from its caller. */
type ReadConsumerConfig = Pick<
  ConsumerConfig,
  'filter_subject' | 'deliver_policy' | 'opt_start_seq' | 'headers_only'
>

/**
 * Creates an ephemeral pull consumer (R1, in memory, no acks) on the log stream and keeps it only if
 * nats-server placed it on the stream leader; else deletes it and creates another, at most
 * {@link LEADER_PLACEMENT_ATTEMPTS} times (undefined then, and at once when JetStream answers
 * "temporarily unavailable" or gives no answer within {@link CONSUMER_CREATE_TIMEOUT_MS}: the read
 * goes on with gets).
 *
 * @remarks Why the leader: see {@link scanSubject}. Why a new consumer rather than a reset: the
 * client's ordered consumer re-creates its server consumer after a gap or missed heartbeats, on
 * any replica. Why no second attempt after no answer (issue 15, the store test's leader kill):
 * right after a stream leader was killed and restarted, consumer creates got no answer at all,
 * made again for over 30 s (2 runs of 3, a quiet machine too; most likely placed on the killed
 * server, still one of the stream's peers), while the new leader answered message gets: the read
 * then goes on with gets ({@link scanSubject}), and tries a consumer again after
 * {@link GETS_BETWEEN_PLACEMENTS} messages.
 */
async function createLeaderConsumer(
  resources: JetStreamResources,
  attempts: number,
  config: ReadConsumerConfig,
  leader: string | undefined | typeof anyServer,
): Promise<{ consumer: Consumer; server: string | undefined; pending: number } | undefined> {
  let manager = readManagers.get(resources)
  if (manager === undefined) {
    manager = jetstreamManager(resources.nc, { timeout: CONSUMER_CREATE_TIMEOUT_MS, checkAPI: false })
    readManagers.set(resources, manager)
  }
  if (attempts <= 0) return undefined
  const jsm = await manager
  const { stream } = resources.names
  for (let attempt = 1; attempt <= attempts; ) {
    let info: ConsumerInfo
    try {
      info = await inStep(ReadStep.consumerCreate, undefined, () =>
        jsm.consumers.add(stream, {
          ...config,
          ack_policy: AckPolicy.None,
          num_replicas: 1,
          mem_storage: true,
          inactive_threshold: nanos(30_000),
        }),
      )
    } catch (error) {
      // The meta layer (which places consumers) is unavailable, as right after a heal, or no
      // answer came: the stream leader still answers gets, so the read goes on with them.
      if (isMetaUnavailable(error) || isTimeout(error)) return undefined
      throw error
    }
    // A stream without a cluster (one nats-server) has one copy: any placement is the leader's.
    const placedOn = info.cluster?.leader
    // Placement unchecked (`anyServer`): one create, kept wherever it lands.
    if (leader === anyServer || leader === undefined || placedOn === undefined || placedOn === leader) {
      const consumer = jsm.jetstream().consumers.getConsumerFromInfo(info)
      return { consumer, server: placedOn, pending: info.num_pending }
    }
    jsm.consumers.delete(stream, info.name).catch(() => undefined)
    attempt++
  }
  return undefined
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && /timeout/i.test(`${error.name} ${error.message}`)
}

/**
 * The keys of a KV bucket under `filter` (a key pattern: `a.b.>`, default every key), including
 * keys whose last operation is a delete or purge (read each key to tell).
 *
 * @remarks Asked of the bucket stream's leader (stream info with a subjects filter), not with
 * `kv.keys()`: that reads through an ordered consumer which nats-server may place on a lagging
 * follower, and it stops when that follower counts nothing pending, so a key put and acked just
 * before could be missing (issue 15; the same stale read as {@link scanSubject}). Its answer is
 * checked as {@link checkedLeader} checks the log's: a cut-off leader of the bucket cannot answer
 * it.
 */
export async function listKvKeys(
  resources: JetStreamResources,
  bucket: string,
  filter = '>',
): Promise<string[]> {
  const prefix = `$KV.${bucket}.`
  const stream = `KV_${bucket}`
  const subjects = new Set<string>()
  // nats-server answers at most 100,000 subjects a stream info, the rest in pages asked with an
  // offset (as the client's `streams.info` does): each page checked as the log's leader is (see
  // checkedLeader).
  let limit = 0
  let pages = 1
  for (let page = 0; page < pages; page++) {
    const filterBody = { subjects_filter: `${prefix}${filter}` }
    const body = page === 0 ? filterBody : { ...filterBody, offset: page * limit }
    const info = await inStep(ReadStep.kvKeys, undefined, async () =>
      checkedInfo(
        stream,
        await askStreamLeaders(resources, 'STREAM.INFO', stream, body, INFO_ANSWER_STALL_MS).all,
      ),
    )
    const names = Object.keys(info.subjects ?? {})
    for (const name of names) subjects.add(name)
    if (page === 0 && info.page !== undefined) {
      limit = info.page.limit
      pages = Math.ceil(info.page.total / limit)
    }
    if (names.length === 0) break
  }
  return [...subjects]
    .filter((subject) => subject.startsWith(prefix))
    .map((subject) => subject.slice(prefix.length))
}

/** A KV entry as {@link getKvEntry} reads it. */
export interface KvValue {
  readonly operation: 'PUT' | 'DEL' | 'PURGE'
  readonly value: Uint8Array
}

/**
 * The latest entry of `key` in a KV bucket (null when it has none), read from the bucket stream's
 * leader (a `last_by_subj` get, what the KV client's `get` sends with direct gets off), every
 * answer gathered: servers that disagree fail it ({@link StaleLeaderError}), as the log's last seq
 * ({@link lastStreamSeq}).
 *
 * @remarks Why not `kv.get`: it takes the first answer, and a bucket is a stream that a partition
 * cuts off as the log (issue 15: a cut-off leader of the sessions bucket answered its never-acked
 * value). Gets of one read run at once, so their stalls overlap.
 */
export async function getKvEntry(
  resources: JetStreamResources,
  bucket: string,
  key: string,
): Promise<KvValue | null> {
  const answers = askStreamLeaders(
    resources,
    'STREAM.MSG.GET',
    `KV_${bucket}`,
    { last_by_subj: `$KV.${bucket}.${key}` },
    META_ANSWER_STALL_MS,
  )
  return inStep(ReadStep.kvGet, undefined, async () => {
    try {
      const got = decodeGot(agreedAnswer(`the key ${key} of ${bucket}`, await answers.all, messageKey))
      const operation = got.header.get('KV-Operation') || 'PUT'
      return { operation: operation as KvValue['operation'], value: got.data }
    } catch (error) {
      if (isNoMessageError(error)) return null
      throw error
    }
  })
}
