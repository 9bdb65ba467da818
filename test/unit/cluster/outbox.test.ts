// The node-local outbox of a cluster node: an append is acked only once both the store and the
// outbox hold it; the outbox keeps entries for its retention, and a restart re-publishes them.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Outbox, openOutbox, republishOutbox, withOutbox } from '../../../server/cluster/outbox.js'
import { createMemoryStore } from '../../../server/persistence/memory-store.js'
import type { AppendEntry } from '../../../server/persistence/store.js'
import { createControllableStore } from '../../helpers/controllable-store.js'

const encoder = new TextEncoder()

function entry(sessionId: string, tag: number): AppendEntry {
  return { sessionId, time: 1000 + tag, update: encoder.encode(`${sessionId}#${tag}`) }
}

function tags(entries: readonly { update: Uint8Array }[]): string[] {
  return entries.map((e) => new TextDecoder().decode(e.update))
}

describe('the cluster outbox', () => {
  let location: string
  let clock = 0
  const now = (): number => clock

  beforeEach(async () => {
    location = await mkdtemp(path.join(tmpdir(), 'colloquy-outbox-'))
    clock = 1_000_000
  })
  afterEach(async () => {
    await rm(location, { recursive: true, force: true })
  })

  it('acks an append only once the outbox holds it, and keeps it for the retention', async () => {
    const outbox = await openOutbox({ location, retainMs: 60_000, now })
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const slowOutbox: Outbox = {
      ...outbox,
      add: async (entries) => {
        await gate
        return outbox.add(entries)
      },
      settled: (firstKey, count) => outbox.settled(firstKey, count),
      get size() {
        return outbox.size
      },
    }
    const inner = createMemoryStore()
    const store = withOutbox(inner, slowOutbox)
    let isAcked = false
    const appended = store.append([entry('s', 1), entry('s', 2)]).then((seqs) => {
      isAcked = true
      return seqs
    })
    // The store has it already; the outbox does not: no ack yet.
    await new Promise((resolve) => setImmediate(resolve))
    expect((await inner.getMeta('s'))?.logCount).toBe(2)
    expect(isAcked).toBe(false)
    release()
    expect(await appended).toEqual([1, 2])
    expect(tags((await outbox.held()).map((row) => row.entry))).toEqual(['s#1', 's#2'])
    await outbox.close()
  })

  it('re-publishes after a restart what it held, including appends that never succeeded', async () => {
    const first = await openOutbox({ location, retainMs: 60_000, now })
    const controls = createControllableStore(createMemoryStore())
    const store = withOutbox(controls.store, first)
    await store.append([entry('a', 1)])
    controls.failNext(1, new Error('JetStream: no quorum'))
    await expect(store.append([entry('a', 2), entry('b', 1)])).rejects.toThrow('no quorum')
    // kill -9 here: nothing of the process survives but the outbox directory.
    await first.close()

    const second = await openOutbox({ location, retainMs: 60_000, now })
    const fresh = createMemoryStore()
    expect(await republishOutbox(fresh, second)).toBe(3)
    expect(tags((await fresh.load('a')).log)).toEqual(['a#1', 'a#2'])
    expect(tags((await fresh.load('b')).log)).toEqual(['b#1'])
    expect(await second.held()).toEqual([])
    // New keys continue after the old ones: nothing overwrites a held entry.
    const key = await second.add([entry('c', 1)])
    expect(key).toBeGreaterThanOrEqual(3)
    await second.close()
  })

  it('removes settled entries once the retention has passed, and keeps the newer ones', async () => {
    const outbox = await openOutbox({ location, retainMs: 50, now })
    const store = withOutbox(createMemoryStore(), outbox)
    await store.append([entry('s', 1)])
    clock += 40
    await store.append([entry('s', 2)])
    clock += 20
    // The first append's retention passed, the second's did not: bounded wait for the timer.
    const deadline = Date.now() + 5_000
    while ((await outbox.held()).length !== 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(tags((await outbox.held()).map((row) => row.entry))).toEqual(['s#2'])
    await outbox.close()
  })
})
