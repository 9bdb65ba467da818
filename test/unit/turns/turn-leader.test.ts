// The pool scheduler lease over a fake KV bucket (create refused while the key exists, put, get,
// expiry by the test): one leader at a time, a leader whose key another node overwrote steps down
// at its next check, a leader whose renewals fail stops before its key expires, and a start that
// fails is tried again while the lease is held.

import type { KV } from '@nats-io/kv'
import { afterEach, describe, expect, it } from 'vitest'
import { type PoolLeadership, startPoolLeadership } from '../../../server/cluster/turn-leader.js'
import { createSilentLogger } from '../../../server/observability/log.js'
import { until } from '../../helpers/wait.js'

const TTL_MS = 1_000

interface FakeEntry {
  revision: number
  value: Uint8Array
  writtenAt: number
}

/** A bucket of one node's view; `failing` makes every call reject (a node cut off from NATS). */
function fakeBucket(store: Map<string, FakeEntry>, counter: { revision: number }) {
  const bucket = {
    failing: false,
    /** Takes of the lease left without an answer (a lost JetStream reply). */
    unansweredTakes: 0,
    async put(key: string, value: Uint8Array, options: { previousSeq?: number } = {}): Promise<number> {
      if (bucket.failing) throw new Error('connection closed')
      if (options.previousSeq === 0 && bucket.unansweredTakes > 0) {
        bucket.unansweredTakes--
        return new Promise<number>(() => undefined)
      }
      expire(store)
      if (options.previousSeq === 0 && store.has(key)) throw new Error('wrong last sequence: 3')
      const revision = ++counter.revision
      store.set(key, { revision, value, writtenAt: Date.now() })
      return revision
    },
    async get(key: string) {
      if (bucket.failing) throw new Error('connection closed')
      expire(store)
      const entry = store.get(key)
      return entry === undefined ? null : { revision: entry.revision, operation: 'PUT' as const }
    },
  }
  return bucket
}

/** The servers' max_age: a key not written for the ttl is gone. */
function expire(store: Map<string, FakeEntry>): void {
  for (const [key, entry] of store) if (Date.now() - entry.writtenAt >= TTL_MS) store.delete(key)
}

const started: PoolLeadership[] = []
afterEach(async () => {
  for (const leadership of started.splice(0)) await leadership.close()
})

function contender(
  bucket: ReturnType<typeof fakeBucket>,
  holder: string,
  log: string[],
  failStarts = 0,
  startMs = 0,
) {
  let starts = 0
  const leadership = startPoolLeadership({
    bucket: bucket as unknown as KV,
    pool: 'main',
    holder,
    ttlMs: TTL_MS,
    logger: createSilentLogger(),
    lead: async () => {
      starts++
      if (starts <= failStarts) throw new Error('rebuild failed')
      if (startMs > 0) await new Promise((resolve) => setTimeout(resolve, startMs))
      log.push(`${holder} leads`)
      return async () => {
        log.push(`${holder} stops`)
      }
    },
  })
  started.push(leadership)
  return leadership
}

describe('pool scheduler lease', () => {
  it('lets one of two nodes lead, and keeps it while it renews', async () => {
    const store = new Map<string, FakeEntry>()
    const counter = { revision: 0 }
    const log: string[] = []
    const one = contender(fakeBucket(store, counter), 'n1', log)
    const two = contender(fakeBucket(store, counter), 'n2', log)
    await until(() => one.isLeader || two.isLeader, 2_000, 'a leader')
    const deadline = Date.now() + 2 * TTL_MS
    await until(() => Date.now() > deadline, 3 * TTL_MS, 'two lease periods')
    expect([one.isLeader, two.isLeader].filter(Boolean)).toHaveLength(1)
    expect(log).toHaveLength(1)
  })

  it('steps down at its next check when another node overwrote its key (a late renewal)', async () => {
    const store = new Map<string, FakeEntry>()
    const counter = { revision: 0 }
    const log: string[] = []
    const one = contender(fakeBucket(store, counter), 'n1', log)
    await until(() => one.isLeader, 2_000, 'n1 leads')
    // Another node's write lands on the key (its put sent in time, applied after n1 took over).
    await fakeBucket(store, counter).put('pool.main', new Uint8Array([1]))
    const overwrittenAt = Date.now()
    await until(() => !one.isLeader, 2_000, 'n1 steps down')
    expect(Date.now() - overwrittenAt).toBeLessThan(TTL_MS)
    expect(log).toEqual(['n1 leads', 'n1 stops'])
  })

  it('stops a leader whose renewals fail before its key expires, and only then lets another lead', async () => {
    const store = new Map<string, FakeEntry>()
    const counter = { revision: 0 }
    const log: string[] = []
    const cutOff = fakeBucket(store, counter)
    const one = contender(cutOff, 'n1', log)
    await until(() => one.isLeader, 2_000, 'n1 leads')
    const two = contender(fakeBucket(store, counter), 'n2', log)
    cutOff.failing = true
    const lastWrite = store.get('pool.main')!.writtenAt
    await until(() => !one.isLeader, 2 * TTL_MS, 'n1 stops')
    const stoppedAt = Date.now()
    expect(stoppedAt).toBeLessThan(lastWrite + TTL_MS)
    await until(() => two.isLeader, 4 * TTL_MS, 'n2 takes over')
    expect(log).toEqual(['n1 leads', 'n1 stops', 'n2 leads'])
  })

  it('tries again at its next tick when a take of the lease gets no answer (regression: held 10 s)', async () => {
    const store = new Map<string, FakeEntry>()
    const bucket = fakeBucket(store, { revision: 0 })
    bucket.unansweredTakes = 1
    const log: string[] = []
    const startedAt = Date.now()
    const one = contender(bucket, 'n1', log)
    await until(() => one.isLeader, 2_000, 'n1 leads after its lost take')
    expect(Date.now() - startedAt).toBeLessThan(TTL_MS)
  })

  it('tries a failed start again while it holds the lease', async () => {
    const store = new Map<string, FakeEntry>()
    const log: string[] = []
    const one = contender(fakeBucket(store, { revision: 0 }), 'n1', log, 2)
    await until(() => one.isLeader, 3_000, 'n1 leads after two failed starts')
    expect(log).toEqual(['n1 leads'])
  })

  it('keeps renewing its lease while a start takes longer than the lease (regression: lease lapsed)', async () => {
    // Regression (issue 17, no quorum): after quorum returned, the node that took the lease could
    // not read the queue back for 10 s (JetStream still electing stream leaders); its lease loop
    // waited on the start and renewed nothing, the lease lapsed to another node, and the pool went
    // 17–29 s without a scheduler.
    const store = new Map<string, FakeEntry>()
    const counter = { revision: 0 }
    const log: string[] = []
    const one = contender(fakeBucket(store, counter), 'n1', log, 0, 3 * TTL_MS)
    await until(() => store.has('pool.main'), 2_000, 'n1 takes the lease')
    const two = contender(fakeBucket(store, counter), 'n2', log)
    await until(() => one.isLeader, 6 * TTL_MS, 'n1 leads once started')
    expect(two.isLeader).toBe(false)
    expect(log).toEqual(['n1 leads'])
  })
})
