import { describe, expect, it } from 'vitest'
import { createAckTracker } from '../../../client/ack-tracker.js'

/** True once `promise` has settled (checked after pending microtasks ran). */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  void promise.then(
    () => {
      settled = true
    },
    () => {
      settled = true
    },
  )
  await Promise.resolve()
  await Promise.resolve()
  return settled
}

describe('ack tracker', () => {
  it('has nothing to flush and no counter to send before any change', async () => {
    const tracker = createAckTracker()
    expect(tracker.hasLocalChanges).toBe(false)
    expect(tracker.takeCounter()).toBeUndefined()
    expect(await isSettled(tracker.whenFlushed())).toBe(true)
  })

  it('covers changes with the next counter and flushes when it is acknowledged', async () => {
    const tracker = createAckTracker()
    tracker.markChange()
    tracker.markChange()
    expect(tracker.hasLocalChanges).toBe(true)
    const flushed = tracker.whenFlushed()
    expect(tracker.takeCounter()).toBe(1)
    // Already covered by counter 1 on this connection: nothing more to send.
    expect(tracker.takeCounter()).toBeUndefined()
    expect(await isSettled(flushed)).toBe(false)
    expect(tracker.acknowledge(1)).toBe(true)
    expect(tracker.hasLocalChanges).toBe(false)
    expect(await isSettled(flushed)).toBe(true)
  })

  it('does not let an older ack flush a newer change', async () => {
    const tracker = createAckTracker()
    tracker.markChange()
    expect(tracker.takeCounter()).toBe(1)
    const first = tracker.whenFlushed()
    tracker.markChange()
    const second = tracker.whenFlushed()
    expect(tracker.takeCounter()).toBe(2)
    expect(tracker.acknowledge(1)).toBe(false)
    expect(await isSettled(first)).toBe(true)
    expect(await isSettled(second)).toBe(false)
    expect(tracker.hasLocalChanges).toBe(true)
    expect(tracker.acknowledge(2)).toBe(true)
    expect(await isSettled(second)).toBe(true)
  })

  it('sends a new counter on the next connection for changes whose ack was lost', async () => {
    const tracker = createAckTracker()
    tracker.markChange()
    expect(tracker.takeCounter()).toBe(1)
    const flushed = tracker.whenFlushed()
    tracker.connectionLost()
    expect(tracker.takeCounter()).toBe(2)
    expect(tracker.acknowledge(2)).toBe(true)
    expect(await isSettled(flushed)).toBe(true)
    // Nothing new changed: a later connection has nothing to ask.
    tracker.connectionLost()
    expect(tracker.takeCounter()).toBeUndefined()
  })

  it('ignores counters it never sent and repeated acks', () => {
    const tracker = createAckTracker()
    tracker.markChange()
    expect(tracker.acknowledge(7)).toBe(false)
    expect(tracker.hasLocalChanges).toBe(true)
    expect(tracker.takeCounter()).toBe(1)
    expect(tracker.acknowledge(1)).toBe(true)
    expect(tracker.acknowledge(1)).toBe(false)
    expect(tracker.ackedCounter).toBe(1)
    expect(tracker.sentCounter).toBe(1)
  })

  it('rejects pending flushes when told to', async () => {
    const tracker = createAckTracker()
    tracker.markChange()
    const flushed = tracker.whenFlushed()
    tracker.rejectAll(new Error('gone'))
    await expect(flushed).rejects.toThrow('gone')
  })
})
