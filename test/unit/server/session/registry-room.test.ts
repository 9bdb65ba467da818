// The cap on sessions in memory: at the cap the registry unloads the least recently active idle
// sessions, a hundredth of the cap at once, so a burst of new sessions at the cap sorts the loaded
// sessions once per batch instead of once per open; a session with a connection is never unloaded.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHarness, drainTasks, type MemoryHarness } from '../../../helpers/memory-server.js'

const CAP = 200
const BATCH = CAP / 100

describe('sessions in memory at the cap', () => {
  let harness: MemoryHarness | undefined
  afterEach(async () => {
    await harness?.close()
    harness = undefined
    vi.useRealTimers()
  })

  /** Whether each of `ids` is loaded now, in order. */
  const loaded = (...ids: string[]): boolean[] => ids.map((id) => harness!.registry.get(id) !== undefined)

  /** Opens `id` at time `at` (its last activity), waits until it is ready, and leaves it idle unless `stay`. */
  async function open(id: string, at: number, stay = false): Promise<void> {
    vi.setSystemTime(at)
    const client = harness!.connect(id)
    for (let round = 0; round < 50 && client.session.state !== 'ready'; round++) await drainTasks(2)
    expect(client.session.state).toBe('ready')
    if (!stay) client.disconnect()
    await drainTasks(2)
  }

  it('unloads the least recently active idle sessions a batch at a time, never one in use', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    harness = createMemoryHarness({ maxSessionsInMemory: CAP, idleUnloadMs: 600_000 })
    const base = Date.UTC(2026, 0, 1)
    // s0 is the least recently active but has a connection; s1 … s199 idle, older first.
    await open('s0', base, true)
    for (let i = 1; i < CAP; i++) await open(`s${i}`, base + i)
    expect(harness.registry.size).toBe(CAP)

    await open('new-0', base + 1_000)
    // A batch unloaded: the two least recently active idle sessions, not s0 (in use).
    expect(loaded('s0', 's1', 's2', 's3')).toEqual([true, false, false, true])
    expect(harness.registry.size).toBe(CAP - BATCH + 1)

    // The next open finds room without unloading anything …
    await open('new-1', base + 1_001)
    expect(harness.registry.size).toBe(CAP)
    expect(loaded('s3')).toEqual([true])
    // … and the one after it, at the cap again, unloads the next batch.
    await open('new-2', base + 1_002)
    expect(loaded('s3', 's4', 's5', 'new-0')).toEqual([false, false, true, true])
    expect(harness.registry.size).toBe(CAP - BATCH + 1)
  })

  it('refuses a new session when every loaded one is in use', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    harness = createMemoryHarness({ maxSessionsInMemory: 3, idleUnloadMs: 600_000 })
    for (let i = 0; i < 3; i++) await open(`busy-${i}`, Date.UTC(2026, 0, 1) + i, true)
    expect(harness.registry.admission('one-more')?.code).toBe('too-many-connections')
    expect(() => harness!.connect('one-more')).toThrow('too many sessions in memory')
    expect(harness.registry.size).toBe(3)
  })
})
