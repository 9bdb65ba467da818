// The guard of every leader-only read against a stream leader that lost its leadership without
// knowing it (a server cut off by a partition, for a moment after the heal): a stream info's answer
// is checked on its own evidence, other answers against every other server's. Knows JetStream API
// requests and their JSON answers, not sessions.

import type { NatsConnection } from '@nats-io/transport-node'

/**
 * How long a leader-only request waits, after an answer, for another server's answer (ms). Every
 * nats-server receives a JetStream API request and each one that believes it leads the stream
 * answers it: two answers mean one of them is stale.
 */
export const LEADER_ANSWER_STALL_MS = 50

/**
 * The stall of a read's stream info (ms): the read checks its leader's evidence and that no other
 * server answered as the leader within this time. Why both (issue 15): right after a heal the
 * cut-off leader once answered first with replicas it had heard from lately (it had their answers,
 * not yet its step-down), while the real leader answered too: the read took its copy.
 */
export const INFO_ANSWER_STALL_MS = 10

/**
 * The stall of the frequent gets of meta reads and relay checks (ms): a session's last seq, KV
 * index values and session records. A second server's answer on loopback comes within about a
 * millisecond of the first; a longer stall there multiplied every history request's time (the
 * compaction test's history checks, hundreds of sequential reads: 25 s → over 120 s at 50 ms).
 */
export const META_ANSWER_STALL_MS = 5

/**
 * How recently the answering leader must have heard from a majority of the stream's replicas
 * (counting itself) for its answer to count (ms). A healthy leader hears from its followers about
 * every second, idle or not (0.1–0.9 s measured here); a cut-off one reports the time since the cut.
 */
export const LEADER_ACTIVE_MS = 4_000

/**
 * A read's leader request answered by more than one server that believes it leads the stream, by
 * servers that disagree, or by a leader that has not heard from a majority of its replicas
 * recently. Transient: the store retries the read (the cut-off server learns within about a second
 * that another leads).
 */
export class StaleLeaderError extends Error {
  override readonly name = 'StaleLeaderError'
}

/** A JetStream API error answer, shaped as the client's own (`api_error.err_code`). */
export interface ApiErrorBody {
  readonly code: number
  readonly err_code?: number
  readonly description?: string
}

/** One server's answer to a JetStream API request, parsed. */
export interface ApiAnswer {
  readonly body: Record<string, unknown> & { error?: ApiErrorBody }
}

/** Every answer to one request, and the first as soon as it arrives. */
export interface LeaderAnswers {
  /** The first answer (rejects on no answer within the timeout, or a client error). */
  readonly first: Promise<ApiAnswer>
  /** Every answer, each within {@link LEADER_ANSWER_STALL_MS} of the one before. */
  readonly all: Promise<ApiAnswer[]>
}

/** The error of an API error answer, as the client throws it (so callers tell codes apart). */
export function apiError(error: ApiErrorBody): Error {
  return Object.assign(new Error(error.description ?? `JetStream API error ${error.code}`), {
    api_error: error,
  })
}

/**
 * Sends one JetStream API request (`subject`, e.g. `$JS.API.STREAM.INFO.S`) and gathers every answer: the first as soon
 * as it comes, the rest until {@link LEADER_ANSWER_STALL_MS} pass without another.
 *
 * @remarks One request, no extra subscription (the client's shared reply inbox). The cost is the
 * stall, added to the latency of whoever awaits `all`.
 */
export function askLeaders(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs: number,
  stallMs = LEADER_ANSWER_STALL_MS,
): LeaderAnswers {
  let resolveFirst: (answer: ApiAnswer) => void = () => undefined
  let rejectFirst: (error: unknown) => void = () => undefined
  const first = new Promise<ApiAnswer>((resolve, reject) => {
    resolveFirst = resolve
    rejectFirst = reject
  })
  const all = (async () => {
    const answers: ApiAnswer[] = []
    try {
      const payload = body === undefined ? '' : JSON.stringify(body)
      const messages = await nc.requestMany(subject, payload, {
        strategy: 'stall',
        stall: stallMs,
        maxWait: timeoutMs,
      })
      for await (const message of messages) {
        const answer = { body: message.json<ApiAnswer['body']>() }
        answers.push(answer)
        if (answers.length === 1) resolveFirst(answer)
      }
    } catch (error) {
      rejectFirst(error)
      throw error
    }
    if (answers.length === 0) {
      const error = new Error(`timeout: no answer to ${subject} within ${timeoutMs} ms`)
      rejectFirst(error)
      throw error
    }
    return answers
  })()
  // Callers await one of the two: the other must not be left rejected and unobserved.
  all.catch(() => undefined)
  first.catch(() => undefined)
  return { first, all }
}

/** What a checked stream info answer says: the leader, and the stream's state as it holds it. */
export interface CheckedInfo {
  /** The leader's name; undefined for a stream without a cluster (one nats-server). */
  readonly leader: string | undefined
  readonly lastSeq: number
  /** Messages per subject (only with a `subjects_filter`). */
  readonly subjects: Readonly<Record<string, number>> | undefined
  /**
   * The subjects the filter matched, when more than one answer holds (nats-server answers at most
   * `limit`, 100,000, a page; the next page is asked with `offset`); else undefined.
   */
  readonly page: { readonly total: number; readonly limit: number } | undefined
}

interface StreamInfoBody {
  total?: number
  limit?: number
  config?: { num_replicas?: number }
  state?: { last_seq?: number; subjects?: Record<string, number> }
  cluster?: { leader?: string; replicas?: { name: string; active?: number; offline?: boolean }[] }
}

/**
 * The one leader among the answers to a stream info, checked: exactly one server answered as the
 * leader, no other answered with an error, and it heard from a majority of the stream's replicas
 * (itself included) within {@link LEADER_ACTIVE_MS}. Else a {@link StaleLeaderError}; an error
 * answer alone is thrown as it is.
 */
export function checkedInfo(
  stream: string,
  answers: readonly ApiAnswer[],
  nowActiveMs = LEADER_ACTIVE_MS,
): CheckedInfo {
  const infos = answers.filter((answer) => answer.body.error === undefined)
  const errors = answers.filter((answer) => answer.body.error !== undefined)
  const info = infos[0]?.body as StreamInfoBody | undefined
  if (info === undefined) throw apiError(errors[0]!.body.error!)
  if (infos.length > 1 || errors.length > 0) {
    const said = answers.map((answer) =>
      answer.body.error === undefined
        ? `leader ${(answer.body as StreamInfoBody).cluster?.leader ?? '?'} at last seq ${(answer.body as StreamInfoBody).state?.last_seq ?? '?'}`
        : `error ${answer.body.error.err_code ?? answer.body.error.code}`,
    )
    throw new StaleLeaderError(
      `${answers.length} servers answered the stream info of ${stream}: ${said.join('; ')}`,
    )
  }
  const leader = info.cluster?.leader
  const replicas = info.cluster?.replicas ?? []
  const size = Math.max(info.config?.num_replicas ?? 1, 1 + replicas.length)
  const heard = replicas.filter(
    (replica) => replica.offline !== true && (replica.active ?? Number.POSITIVE_INFINITY) < nowActiveMs * 1e6,
  )
  if (1 + heard.length <= size / 2) {
    const ages = replicas.map((replica) => `${replica.name} ${Math.round((replica.active ?? 0) / 1e6)} ms`)
    throw new StaleLeaderError(
      `${leader ?? 'the leader'} of ${stream} heard from a majority of its replicas more than ${nowActiveMs} ms ago (${ages.join(', ')})`,
    )
  }
  const page =
    info.total !== undefined && info.limit !== undefined && info.limit > 0 && info.total > info.limit
      ? { total: info.total, limit: info.limit }
      : undefined
  return { leader, lastSeq: info.state?.last_seq ?? 0, subjects: info.state?.subjects, page }
}

/**
 * The one answer every server that answered agrees on: its body, or its error thrown. Answers
 * that differ (another message, or a message and an error) are a {@link StaleLeaderError}; equal
 * answers from two servers are the same stored message, so either will do.
 */
export function agreedAnswer(
  what: string,
  answers: readonly ApiAnswer[],
  key: (answer: ApiAnswer) => string,
): ApiAnswer {
  const first = answers[0]!
  const firstKey = key(first)
  const other = answers.find((answer) => key(answer) !== firstKey)
  if (other !== undefined) {
    throw new StaleLeaderError(
      `${answers.length} servers answered ${what} differently: ${answers.map(key).join(' / ')}`,
    )
  }
  if (first.body.error !== undefined) throw apiError(first.body.error)
  return first
}

/** A message get's answer as a key: seq and a digest-free summary (error code, or seq and body). */
export function messageKey(answer: ApiAnswer): string {
  const error = answer.body.error
  if (error !== undefined) return `error ${error.err_code ?? error.code}`
  const message = (answer.body as { message?: { seq?: number; data?: string; hdrs?: string } }).message
  return `seq ${message?.seq} ${message?.hdrs ?? ''}|${message?.data ?? ''}`
}

/** A stored message as a message get answers it. */
export interface GotMessage {
  readonly seq: number
  readonly data: Uint8Array
  readonly header: { get(name: string): string }
}

/** Decodes a message get's answer (`message.data` and `message.hdrs` are base64). */
export function decodeGot(answer: ApiAnswer): GotMessage {
  const message = (answer.body as { message: { seq: number; data?: string; hdrs?: string } }).message
  const data =
    message.data === undefined ? new Uint8Array(0) : new Uint8Array(Buffer.from(message.data, 'base64'))
  const fields = new Map<string, string>()
  if (message.hdrs !== undefined) {
    // `NATS/1.0\r\nName: value\r\n…\r\n\r\n`: the first line is the version (and status).
    const lines = Buffer.from(message.hdrs, 'base64').toString('utf8').split('\r\n').slice(1)
    for (const line of lines) {
      const colon = line.indexOf(':')
      if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
    }
  }
  return { seq: message.seq, data, header: { get: (name) => fields.get(name) ?? '' } }
}
