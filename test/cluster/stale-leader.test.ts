// Regression (issue 15): right after a partition heals, the nats-server that led the log stream
// while cut off still believes it leads for a moment and answers leader-only JetStream requests
// with its own copy. A read that took the first answer was short, or returned a message the
// majority never acked. Here fake stream leaders answer a read's requests on a plain nats-server
// (no JetStream: the fakes are the only answers), so each case is exact: two leaders answering, a
// leader that heard from no majority recently, gets answered differently, and one healthy leader.

import { type ChildProcess, spawn } from 'node:child_process'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  checkedLeaderView,
  type JetStreamResources,
  jetStreamNames,
  lastStreamSeq,
  StaleLeaderError,
  scanSubject,
} from '../../server/cluster/jetstream-log.js'
import { freePort, hasNatsServer, NATS_SERVER, warnIfNoNatsServer } from '../helpers/nats-cluster.js'

warnIfNoNatsServer(import.meta.url)

const names = jetStreamNames('stale')
const subject = `${names.subjectPrefix}.s`
const encode = (text: string) => Buffer.from(text).toString('base64')

/** What a fake leader holds: the subject's messages by stream seq. */
type Copy = ReadonlyMap<number, string>

/** The majority's copy (acked) and the cut-off leader's (seq 2 never acked). */
const majority: Copy = new Map([
  [1, 'before'],
  [2, 'majority'],
])
const cutOff: Copy = new Map([
  [1, 'before'],
  [2, 'minority-0'],
])

/** How a fake leader answers. */
interface FakeLeader {
  readonly name: string
  readonly copy: Copy
  /** Nanoseconds since it last heard from each of its two replicas. */
  readonly activeNs: number
  /** Which requests it answers (default all). */
  readonly answers?: { info?: boolean; last?: boolean; gets?: boolean }
}

/** Answers the log stream's info and message gets as `leader` would, on its own connection. */
async function startFakeLeader(url: string, leader: FakeLeader): Promise<NatsConnection> {
  const nc = await connect({ servers: url })
  const answers = { info: true, last: true, gets: true, ...leader.answers }
  const seqs = [...leader.copy.keys()].sort((a, b) => a - b)
  const lastSeq = seqs[seqs.length - 1] ?? 0
  nc.subscribe(`$JS.API.STREAM.INFO.${names.stream}`, {
    callback: (_error, message) => {
      if (!answers.info) return
      const replicas = ['r1', 'r2'].map((name) => ({ name, current: true, active: leader.activeNs }))
      message.respond(
        JSON.stringify({
          type: 'io.nats.jetstream.api.v1.stream_info_response',
          config: { name: names.stream, num_replicas: 3 },
          state: { messages: seqs.length, last_seq: lastSeq, subjects: { [subject]: seqs.length } },
          cluster: { name: 'c', leader: leader.name, replicas },
        }),
      )
    },
  })
  nc.subscribe(`$JS.API.STREAM.MSG.GET.${names.stream}`, {
    callback: (_error, message) => {
      const request = message.json<{ last_by_subj?: string; seq?: number; next_by_subj?: string }>()
      const isLast = request.last_by_subj !== undefined
      if ((isLast && !answers.last) || (!isLast && !answers.gets)) return
      const seq = isLast ? lastSeq : seqs.find((at) => at >= (request.seq ?? 0))
      const text = seq === undefined ? undefined : leader.copy.get(seq)
      message.respond(
        JSON.stringify(
          text === undefined
            ? { error: { code: 404, err_code: 10037, description: 'no message found' } }
            : { message: { subject, seq, data: encode(text), time: new Date(0).toISOString() } },
        ),
      )
    },
  })
  await nc.flush()
  return nc
}

const healthy = 300e6
const cutOffFor = 9e9

describe.skipIf(!hasNatsServer)('reads against a stale stream leader', () => {
  let server: ChildProcess | undefined
  let url = ''
  let nc: NatsConnection | undefined
  let resources: JetStreamResources

  beforeAll(async () => {
    const port = await freePort()
    url = `nats://127.0.0.1:${port}`
    server = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        nc = await connect({ servers: url, timeout: 1_000 })
        break
      } catch (error) {
        if (Date.now() > deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    const jsm = await jetstreamManager(nc, { timeout: 2_000, checkAPI: false })
    // A read uses the connection, the manager and the names only.
    resources = { names, nc, jsm, js: jsm.jetstream() } as unknown as JetStreamResources
  })

  afterAll(async () => {
    await nc?.close()
    server?.kill('SIGKILL')
  })

  /** Runs `read` with these fake leaders answering, then stops them. */
  async function withLeaders<T>(leaders: readonly FakeLeader[], read: () => Promise<T>): Promise<T> {
    const started = await Promise.all(leaders.map((leader) => startFakeLeader(url, leader)))
    try {
      return await read()
    } finally {
      await Promise.all(started.map((fake) => fake.close()))
    }
  }

  const readAll = () =>
    scanSubject(
      resources,
      subject,
      { fromSeq: 1, toSeq: Number.MAX_SAFE_INTEGER, limit: 100, headersOnly: false },
      { placementAttempts: 0 }, // gets: a fake cannot place consumers
    ).then((messages) => messages.map((message) => new TextDecoder().decode(message.data)))

  it('reads the one healthy leader’s copy', async () => {
    const leaders = [{ name: 'n1', copy: majority, activeNs: healthy }]
    expect(await withLeaders(leaders, readAll)).toEqual(['before', 'majority'])
    expect(await withLeaders(leaders, () => checkedLeaderView(resources, subject))).toEqual({
      leader: 'n1',
      last: 2,
      streamLast: 2,
      count: 2,
    })
  })

  it('fails a read that two servers answer as the leader, whichever answers first', async () => {
    const leaders = [
      { name: 'n3', copy: cutOff, activeNs: healthy },
      { name: 'n1', copy: majority, activeNs: healthy },
    ]
    await expect(withLeaders(leaders, readAll)).rejects.toThrow(StaleLeaderError)
    await expect(withLeaders(leaders, readAll)).rejects.toThrow(/2 servers answered/)
  })

  it('fails a read answered by a leader that heard from no majority of its replicas recently', async () => {
    // The cut-off leader alone: the others have not answered yet (the stall passed).
    const leaders = [{ name: 'n3', copy: cutOff, activeNs: cutOffFor }]
    await expect(withLeaders(leaders, readAll)).rejects.toThrow(
      /heard from a majority of its replicas more than/,
    )
  })

  it('fails a read whose message gets two servers answer differently', async () => {
    // n1 alone answers the read's first requests; the cut-off n3 answers only the gets.
    const leaders = [
      { name: 'n1', copy: majority, activeNs: healthy },
      { name: 'n3', copy: cutOff, activeNs: healthy, answers: { info: false, last: false } },
    ]
    await expect(withLeaders(leaders, readAll)).rejects.toThrow(/answered the get of .* at 2 differently/)
  })

  it('fails the last seq (the relay’s log check) when two servers give different ones', async () => {
    const shorter: Copy = new Map([[1, 'before']])
    const leaders = [
      { name: 'n1', copy: majority, activeNs: healthy },
      { name: 'n3', copy: shorter, activeNs: healthy },
    ]
    await expect(withLeaders(leaders, () => lastStreamSeq(resources, subject))).rejects.toThrow(
      StaleLeaderError,
    )
    const one = [{ name: 'n1', copy: majority, activeNs: healthy }]
    expect(await withLeaders(one, () => lastStreamSeq(resources, subject))).toBe(2)
  })
})
