// The turn service over the memory store with a recording document writer and fake timers: idempotent
// creation, claims under leases and concurrency, lease expiry and redelivery, failure after N
// attempts, cancel while queued and while running, deadlines, queue limits, long polls, restart.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { RecordStore } from '../../../server/persistence/store.js'
import type { TurnDocuments } from '../../../server/turns/turn-documents.js'
import {
  MAX_WAITING_CLAIMS,
  openTurnService,
  type TurnService,
  type TurnServiceOptions,
} from '../../../server/turns/turn-service.js'
import { createTurnStore } from '../../../server/turns/turn-store.js'
import type { Author } from '../../../shared/conversation/index.js'
import { ColloquyError } from '../../../shared/errors.js'
import type { TurnEntry } from '../../../shared/turns/document.js'
import { capturingLogger } from '../../helpers/test-server.js'

const LEASE_MS = 3_000
const device: Author = { id: 'phone', kind: 'device', name: 'Ada' }

/**
 * Records what the service shows devices, per session and message. With `watched`, only the
 * sessions in it count as open (else the writer cannot tell: all do).
 */
function recordingDocuments(watched?: Set<string>, options: { listsWatched?: boolean } = {}) {
  const entries = new Map<string, TurnEntry>()
  const cancels: string[] = []
  let writes = 0
  let watchChecks = 0
  const documents: TurnDocuments = {
    write(sessionId, messageId, entry) {
      writes++
      entries.set(`${sessionId}/${messageId}`, entry)
    },
    requestCancel(_sessionId, replyId) {
      cancels.push(replyId)
    },
    ...(watched === undefined
      ? {}
      : {
          isWatched: (sessionId: string) => {
            watchChecks++
            return watched.has(sessionId)
          },
        }),
    ...(watched !== undefined && options.listsWatched === true ? { watchedSessions: () => watched } : {}),
    pendingSessions: 0,
    flush: async () => undefined,
    close: () => undefined,
  }
  return {
    documents,
    entries,
    cancels,
    get writes() {
      return writes
    },
    get watchChecks() {
      return watchChecks
    },
  }
}

let records: RecordStore
let shown: ReturnType<typeof recordingDocuments>
const opened: TurnService[] = []

async function open(overrides: Partial<TurnServiceOptions> = {}): Promise<TurnService> {
  const service = await openTurnService({
    pools: [
      { name: 'gpu', concurrency: 2, maxQueued: 100, maxQueuedPerTenant: 50 },
      { name: 'tiny', concurrency: 1, maxQueued: 2, maxQueuedPerTenant: 1 },
    ],
    store: createTurnStore({ records, logger: createSilentLogger() }),
    logger: createSilentLogger(),
    leaseMs: LEASE_MS,
    maxAttempts: 3,
    starvationMs: 30_000,
    positionRefreshMs: 500,
    retentionMs: 0,
    documents: shown.documents,
    ...overrides,
  })
  opened.push(service)
  return service
}

const worker = (instanceId: string, max = 1, waitMs = 0) => ({
  max,
  waitMs,
  instanceId,
  peerId: `agent-${instanceId}`,
  isAborted: () => false,
})

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    if (error instanceof ColloquyError) return error.code
    throw error
  }
  return 'no error'
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  vi.setSystemTime(1_800_000_000_000)
  const store = createMemoryStore()
  records = store.records!
  shown = recordingDocuments()
})

afterEach(async () => {
  for (const service of opened.splice(0)) await service.close()
  vi.useRealTimers()
})

describe('the turn service', () => {
  it('treats creating the same turn twice as a no-op', async () => {
    const service = await open()
    const first = await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const second = await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu', priority: 0 })
    expect(first.isNew).toBe(true)
    expect(second.isNew).toBe(false)
    expect(second.turn.id).toBe(first.turn.id)
    expect(second.turn.priority).toBe(1)
    expect(service.pool('gpu').queued).toBe(1)
    expect(await records.scan({ gte: Uint8Array.of(0x54), lt: Uint8Array.of(0x55) })).toHaveLength(1)
  })

  it('shows a queued turn with its position, then the agent that claimed it, then done', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    await service.create({ sessionId: 's2', messageId: 'm2', pool: 'gpu' })
    expect(shown.entries.get('s2/m2')).toMatchObject({ state: 'queued', attempts: 0 })
    await vi.advanceTimersByTimeAsync(600)
    expect(shown.entries.get('s2/m2')).toMatchObject({ state: 'queued', position: 2 })
    expect(service.get('gpu~s2~m2').position).toBe(2)
    const [claimed] = await service.claim('gpu', worker('w1'))
    expect(shown.entries.get('s1/m1')).toMatchObject({
      state: 'claimed',
      attempts: 1,
      agent: { peerId: 'agent-w1', instanceId: 'w1' },
    })
    await vi.advanceTimersByTimeAsync(600)
    expect(shown.entries.get('s2/m2')?.position).toBe(1)
    await service.renew(claimed!.turn.id, { leaseId: claimed!.lease.id, state: 'streaming', replyId: 'r1' })
    expect(shown.entries.get('s1/m1')).toMatchObject({ state: 'streaming', replyId: 'r1' })
    await service.complete(claimed!.turn.id, { leaseId: claimed!.lease.id })
    expect(shown.entries.get('s1/m1')).toMatchObject({ state: 'done', replyId: 'r1' })
  })

  it('gives turns past the starvation guard 1 claim in --turn-starvation-share, the others in class order', async () => {
    const claimedAfterGuard = async (overrides: Partial<TurnServiceOptions>) => {
      const service = await open(overrides)
      for (const id of ['old1', 'old2'])
        await service.create({ sessionId: id, messageId: 'm', pool: 'gpu', priority: 2 })
      await vi.advanceTimersByTimeAsync(31_000)
      for (const id of ['new1', 'new2'])
        await service.create({ sessionId: id, messageId: 'm', pool: 'gpu', priority: 0 })
      const claimed = await service.claim('gpu', worker('w1', 2))
      await service.close()
      return claimed.map((claim) => claim.turn.sessionId)
    }
    expect(await claimedAfterGuard({})).toEqual(['old1', 'new1'])
    expect(await claimedAfterGuard({ starvationShare: 1 })).toEqual(['old1', 'old2'])
  })

  it('never runs more turns of a pool than its concurrency', async () => {
    const service = await open()
    for (let i = 0; i < 5; i++) await service.create({ sessionId: `s${i}`, messageId: 'm', pool: 'gpu' })
    expect(await service.claim('gpu', worker('w1', 5))).toHaveLength(2)
    expect(await service.claim('gpu', worker('w2', 5))).toHaveLength(0)
    expect(service.pool('gpu')).toMatchObject({ running: 2, queued: 3 })
  })

  it('gives a turn whose lease expired to another worker, with the reply to continue', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [first] = await service.claim('gpu', worker('w1'))
    await service.renew(first!.turn.id, { leaseId: first!.lease.id, state: 'streaming', replyId: 'r1' })
    await vi.advanceTimersByTimeAsync(LEASE_MS + 10)
    expect(service.get(first!.turn.id).turn.state).toBe('queued')
    const [second] = await service.claim('gpu', worker('w2'))
    expect(second!.turn).toMatchObject({ id: first!.turn.id, attempts: 2, replyId: 'r1', state: 'claimed' })
    expect(await service.renew(first!.turn.id, { leaseId: first!.lease.id })).toEqual({ status: 'lost' })
    expect(await codeOf(service.complete(first!.turn.id, { leaseId: first!.lease.id }))).toBe('lease-lost')
    await service.complete(second!.turn.id, { leaseId: second!.lease.id })
    expect(service.get(first!.turn.id).turn.state).toBe('done')
  })

  it('keeps a turn whose worker renews past the lease length', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [claimed] = await service.claim('gpu', worker('w1'))
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(claimed!.lease.renewIntervalMs)
      expect(await service.renew(claimed!.turn.id, { leaseId: claimed!.lease.id })).toMatchObject({
        status: 'ok',
      })
    }
    expect(service.get(claimed!.turn.id).turn).toMatchObject({ state: 'claimed', attempts: 1 })
  })

  it('fails a turn whose lease was lost as many times as the attempts allow, with a visible reason', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect(await service.claim('gpu', worker(`w${attempt}`))).toHaveLength(1)
      await vi.advanceTimersByTimeAsync(LEASE_MS + 10)
    }
    const { turn } = service.get('gpu~s1~m1')
    expect(turn).toMatchObject({ state: 'failed', attempts: 3, reason: 'lease-lost-too-often' })
    expect(shown.entries.get('s1/m1')).toMatchObject({ state: 'failed', reason: 'lease-lost-too-often' })
    expect(await service.claim('gpu', worker('w4'))).toHaveLength(0)
  })

  it('requeues a turn a worker gave up with retry, and fails it without', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [first] = await service.claim('gpu', worker('w1'))
    await service.fail(first!.turn.id, { leaseId: first!.lease.id, reason: 'model-busy', retry: true })
    const [second] = await service.claim('gpu', worker('w2'))
    expect(second!.turn.attempts).toBe(2)
    const { turn } = await service.fail(second!.turn.id, { leaseId: second!.lease.id, reason: 'model-error' })
    expect(turn).toMatchObject({ state: 'failed', reason: 'model-error' })
  })

  it('removes a cancelled queued turn from the queue', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const { turn } = await service.cancel('gpu~s1~m1', device)
    expect(turn).toMatchObject({ state: 'cancelled', reason: 'cancelled-by-device' })
    expect(await service.claim('gpu', worker('w1'))).toHaveLength(0)
    expect(await codeOf(service.cancel('gpu~s1~m1', device))).toBe('turn-finished')
  })

  it("stops a running turn on its worker's next renew and frees its slot", async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'tiny' })
    const [claimed] = await service.claim('tiny', worker('w1'))
    await service.renew(claimed!.turn.id, { leaseId: claimed!.lease.id, state: 'streaming', replyId: 'r1' })
    await service.create({ sessionId: 's2', messageId: 'm2', pool: 'tiny' })
    await service.cancel(claimed!.turn.id, device)
    expect(shown.cancels).toEqual(['r1'])
    expect(service.get(claimed!.turn.id).turn.isCancelRequested).toBe(true)
    expect(await service.renew(claimed!.turn.id, { leaseId: claimed!.lease.id })).toEqual({
      status: 'cancelled',
    })
    expect(service.get(claimed!.turn.id).turn.state).toBe('cancelled')
    expect(await service.claim('tiny', worker('w2'))).toHaveLength(1)
  })

  it("ends a running turn a device cancelled as cancelled when its worker gives it back (regression: it ended failed with the worker's reason)", async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [claimed] = await service.claim('gpu', worker('w1'))
    await service.cancel(claimed!.turn.id, device, 'never mind')
    const { turn } = await service.fail(claimed!.turn.id, {
      leaseId: claimed!.lease.id,
      reason: 'worker-stopped',
      retry: true,
    })
    expect(turn).toMatchObject({
      state: 'cancelled',
      reason: 'cancelled-by-device',
      reasonText: 'never mind',
    })
    expect(shown.entries.get('s1/m1')).toMatchObject({ state: 'cancelled', reason: 'cancelled-by-device' })
    expect(service.pool('gpu')).toMatchObject({ queued: 0, running: 0 })
  })

  it('expires a queued turn whose deadline passed, with a reason', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu', timeoutMs: 1_000 })
    await vi.advanceTimersByTimeAsync(1_001)
    expect(service.get('gpu~s1~m1').turn).toMatchObject({ state: 'expired', reason: 'deadline-passed' })
    expect(shown.entries.get('s1/m1')?.state).toBe('expired')
  })

  it('expires a turn back in the queue after its deadline instead of handing it out again (regression: a lost lease or a retry requeued it without re-arming the deadline timer)', async () => {
    const service = await open()
    // Its lease runs out after its deadline, while a worker waits on the pool.
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu', timeoutMs: 1_000 })
    const [first] = await service.claim('gpu', worker('w1'))
    expect(first!.turn.id).toBe('gpu~s1~m1')
    const waiting = service.claim('gpu', worker('w2', 1, LEASE_MS + 500))
    await vi.advanceTimersByTimeAsync(LEASE_MS + 10)
    expect(service.get('gpu~s1~m1').turn).toMatchObject({ state: 'expired', reason: 'deadline-passed' })
    await vi.advanceTimersByTimeAsync(500)
    expect(await waiting).toEqual([])
    // Given up with retry after its deadline, nobody waiting: expired too, not left for the next claim.
    await service.create({ sessionId: 's2', messageId: 'm2', pool: 'gpu', timeoutMs: 1_000 })
    const [second] = await service.claim('gpu', worker('w3'))
    expect(second!.turn.id).toBe('gpu~s2~m2')
    await vi.advanceTimersByTimeAsync(1_500)
    await service.fail(second!.turn.id, { leaseId: second!.lease.id, reason: 'model-busy', retry: true })
    await vi.advanceTimersByTimeAsync(100)
    expect(service.get('gpu~s2~m2').turn).toMatchObject({ state: 'expired', reason: 'deadline-passed' })
    expect(await service.claim('gpu', worker('w4'))).toHaveLength(0)
    expect(service.pool('gpu')).toMatchObject({ queued: 0, running: 0 })
  })

  it('refuses a turn beyond the queue limits of its pool and tenant with queue-full', async () => {
    const service = await open()
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'tiny', tenant: 'a' })
    expect(
      await codeOf(service.create({ sessionId: 's2', messageId: 'm2', pool: 'tiny', tenant: 'a' })),
    ).toBe('queue-full')
    await service.create({ sessionId: 's3', messageId: 'm3', pool: 'tiny', tenant: 'b' })
    expect(
      await codeOf(service.create({ sessionId: 's4', messageId: 'm4', pool: 'tiny', tenant: 'c' })),
    ).toBe('queue-full')
    expect(await codeOf(service.create({ sessionId: 's4', messageId: 'm4', pool: 'nope' }))).toBe(
      'unknown-pool',
    )
  })

  it('answers a waiting claim as soon as a turn is created', async () => {
    const service = await open()
    const waiting = service.claim('gpu', worker('w1', 1, 10_000))
    await vi.advanceTimersByTimeAsync(100)
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const claimed = await waiting
    expect(claimed.map((c) => c.turn.id)).toEqual(['gpu~s1~m1'])
  })

  it('refuses a claim beyond the claims a pool lets wait, rather than holding it', async () => {
    const service = await open()
    const waiting = Array.from({ length: MAX_WAITING_CLAIMS }, (_, i) =>
      service.claim('gpu', worker(`w${i}`, 1, 5_000)),
    )
    expect(await codeOf(service.claim('gpu', worker('one-more', 1, 5_000)))).toBe('too-many-connections')
    await vi.advanceTimersByTimeAsync(5_001)
    expect((await Promise.all(waiting)).flat()).toEqual([])
  })

  it('answers a waiting claim with nothing once its wait is over', async () => {
    const service = await open()
    const waiting = service.claim('gpu', worker('w1', 1, 1_000))
    await vi.advanceTimersByTimeAsync(1_001)
    expect(await waiting).toEqual([])
  })

  it('finds its queued and claimed turns again after a restart, leases included', async () => {
    const before = await open()
    await before.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    await before.create({ sessionId: 's2', messageId: 'm2', pool: 'gpu', priority: 0 })
    const [claimed] = await before.claim('gpu', worker('w1'))
    expect(claimed!.turn.id).toBe('gpu~s2~m2')
    await before.close()
    const after = await open()
    expect(after.pool('gpu')).toMatchObject({ queued: 1, running: 1 })
    expect(await after.renew(claimed!.turn.id, { leaseId: claimed!.lease.id })).toMatchObject({
      status: 'ok',
    })
    const [next] = await after.claim('gpu', worker('w2'))
    expect(next!.turn.id).toBe('gpu~s1~m1')
    expect(await after.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })).toMatchObject({
      isNew: false,
    })
  })

  it('shows running and lately ended turns again after a restart (regression: a crash between record and entry left the entry stale)', async () => {
    const before = await open()
    await before.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    await before.create({ sessionId: 's2', messageId: 'm2', pool: 'gpu' })
    const [first, second] = await before.claim('gpu', worker('w1', 2))
    await before.complete(first!.turn.id, { leaseId: first!.lease.id })
    await before.close()
    // The crash: neither change reached the documents.
    shown.entries.clear()
    await open()
    expect(shown.entries.get('s1/m1')?.state).toBe('done')
    expect(shown.entries.get(`${second!.turn.sessionId}/${second!.turn.messageId}`)?.state).toBe('claimed')
  })

  it('rewrites a bounded number of positions per refresh, however deep the queue', async () => {
    const service = await open({
      pools: [{ name: 'gpu', concurrency: 1, maxQueued: 20_000, maxQueuedPerTenant: 20_000 }],
      maxPositionWritesPerRefresh: 200,
    })
    for (let i = 0; i < 2_000; i++) await service.create({ sessionId: `s${i}`, messageId: 'm', pool: 'gpu' })
    const afterCreate = shown.writes
    for (let i = 0; i < 5; i++) {
      const [claimed] = await service.claim('gpu', worker('w1'))
      await service.complete(claimed!.turn.id, { leaseId: claimed!.lease.id })
    }
    await vi.advanceTimersByTimeAsync(600)
    const rewritten = shown.writes - afterCreate - 10
    expect(rewritten).toBeGreaterThan(0)
    expect(rewritten).toBeLessThanOrEqual(200)
    expect(shown.entries.get('s5/m')?.position).toBe(1)
  })

  it.each([
    ['asked session by session', false],
    ['listed by the documents', true],
  ])(
    'rewrites queue positions only into sessions someone has open (%s), and catches up when one is opened (regression: issue 17, every refresh changed up to 250 documents nobody watched, loading each unloaded session again)',
    async (_how, listsWatched) => {
      const watched = new Set<string>()
      shown = recordingDocuments(watched, { listsWatched })
      const service = await open({
        pools: [{ name: 'gpu', concurrency: 1, maxQueued: 100, maxQueuedPerTenant: 100 }],
      })
      for (let i = 1; i <= 4; i++) await service.create({ sessionId: `s${i}`, messageId: 'm', pool: 'gpu' })
      const afterCreate = shown.writes
      await vi.advanceTimersByTimeAsync(1_100)
      expect(shown.writes).toBe(afterCreate)
      expect(shown.entries.get('s3/m')).toMatchObject({ state: 'queued' })
      expect(shown.entries.get('s3/m')?.position).toBeUndefined()
      // The API still answers the position of a turn nobody watches.
      expect(service.get('gpu~s3~m').position).toBe(3)

      watched.add('s3')
      await vi.advanceTimersByTimeAsync(600)
      expect(shown.entries.get('s3/m')?.position).toBe(3)
      expect(shown.writes).toBe(afterCreate + 1)

      const [claimed] = await service.claim('gpu', worker('w1'))
      await service.complete(claimed!.turn.id, { leaseId: claimed!.lease.id })
      const afterDone = shown.writes
      await vi.advanceTimersByTimeAsync(600)
      expect(shown.entries.get('s3/m')?.position).toBe(2)
      expect(shown.entries.get('s2/m')?.position).toBeUndefined()
      expect(shown.writes).toBe(afterDone + 1)
    },
  )

  it('looks only at the watched sessions when the documents list them (regression: issue 17, each refresh walked all 10,000 queued turns of the burst to find the few someone had open)', async () => {
    const watched = new Set<string>(['s7'])
    shown = recordingDocuments(watched, { listsWatched: true })
    const service = await open({
      pools: [{ name: 'gpu', concurrency: 1, maxQueued: 2_000, maxQueuedPerTenant: 2_000 }],
    })
    for (let i = 1; i <= 1_000; i++) await service.create({ sessionId: `s${i}`, messageId: 'm', pool: 'gpu' })
    const checksBefore = shown.watchChecks
    await vi.advanceTimersByTimeAsync(1_100)
    expect(shown.entries.get('s7/m')?.position).toBe(7)
    expect(shown.entries.get('s8/m')?.position).toBeUndefined()
    // Two refreshes: one check of the one watched session each, not one per queued turn.
    expect(shown.watchChecks - checksBefore).toBeLessThanOrEqual(2)
  })
})

describe('the turn service when its store fails (regression: failed saves and deletes were swallowed)', () => {
  /** A turn store over `records` whose saves and deletes fail once `state.failing` is set, and a logger whose lines are kept. */
  function failingStore() {
    const inner = createTurnStore({ records, logger: createSilentLogger() })
    const state = { failing: false }
    const store: typeof inner = {
      ...inner,
      save: (turn) => (state.failing ? Promise.reject(new Error('disk full')) : inner.save(turn)),
      delete: (turnId) => (state.failing ? Promise.reject(new Error('disk full')) : inner.delete(turnId)),
    }
    const { logger, lines } = capturingLogger()
    const logged = (): string[] => lines.map((line) => (JSON.parse(line) as { msg: string }).msg)
    return { store, logger, logged, state }
  }

  it('logs a requeued turn it could not store, and still runs it again', async () => {
    const { store, logger, logged, state } = failingStore()
    const service = await open({ store, logger })
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [first] = await service.claim('gpu', worker('w1'))
    state.failing = true
    await vi.advanceTimersByTimeAsync(LEASE_MS + 10)
    expect(service.get(first!.turn.id).turn.state).toBe('queued')
    expect(logged()).toContain('requeued turn not stored')
  })

  it('logs an ended turn whose record it could not delete at retention', async () => {
    const { store, logger, logged, state } = failingStore()
    const service = await open({ store, logger, retentionMs: 1_000 })
    await service.create({ sessionId: 's1', messageId: 'm1', pool: 'gpu' })
    const [claimed] = await service.claim('gpu', worker('w1'))
    await service.complete(claimed!.turn.id, { leaseId: claimed!.lease.id })
    state.failing = true
    await vi.advanceTimersByTimeAsync(5_000)
    expect(logged()).toContain('expired turn record not deleted')
  })
})
