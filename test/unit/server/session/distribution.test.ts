// The session's side of the Distribution seam: what it hands to other processes (queued updates,
// stored seqs, awareness) and what it does with theirs (apply and relay, never store again).

import { afterEach, describe, expect, it } from 'vitest'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import type { AppendEntry } from '../../../../server/persistence/store.js'
import type { Distribution, DistributionSink } from '../../../../server/session/distribution.js'
import { encodeAwareness } from '../../../../shared/protocol/message.js'
import { createMemoryHarness, type MemoryHarness } from '../../../helpers/memory-server.js'

let harness: MemoryHarness | undefined
afterEach(async () => {
  await harness?.close()
  harness = undefined
})

/** A distribution that records every call. */
function createRecordingDistribution() {
  const calls: string[] = []
  const sinks = new Map<string, DistributionSink>()
  const queued: Uint8Array[] = []
  const stored: { entries: AppendEntry[]; seqs: number[] }[] = []
  const awareness: Uint8Array[] = []
  const distribution: Distribution = {
    mode: 'recording',
    join(sessionId, sink) {
      calls.push(`join ${sessionId}`)
      sinks.set(sessionId, sink)
    },
    leave(sessionId, sink) {
      calls.push(`leave ${sessionId}`)
      if (sinks.get(sessionId) === sink) sinks.delete(sessionId)
    },
    updateQueued(sessionId, update) {
      calls.push(`queued ${sessionId}`)
      queued.push(update)
    },
    updatesStored(entries, seqs) {
      calls.push(`stored ${seqs.join(',')}`)
      stored.push({ entries: [...entries], seqs: [...seqs] })
    },
    awarenessChanged(sessionId, update) {
      calls.push(`awareness ${sessionId}`)
      awareness.push(update)
    },
    bindHost() {},
    retireEverywhere: async () => ({ nodes: [], release() {} }),
    openElsewhere: async () => [],
    close: async () => {},
  }
  return { distribution, calls, sinks, queued, stored, awareness }
}

describe('Session and its Distribution', () => {
  it('joins once loaded, hands over a queued update, then its stored seq before the ack', async () => {
    const recording = createRecordingDistribution()
    harness = createMemoryHarness({ distribution: recording.distribution })
    const a = harness.connect('s')
    await harness.settle()
    expect(recording.calls).toEqual(['join s'])
    expect(recording.sinks.get('s')?.knownSeq).toBe(0)
    a.peer.doc.getText('t').insert(0, 'hello')
    const ack = a.peer.requestAck()
    await harness.settle()
    await a.peer.whenAcked(ack)
    expect(recording.calls).toEqual(['join s', 'queued s', 'stored 1'])
    expect(recording.stored[0]?.entries.map((e) => e.sessionId)).toEqual(['s'])
    expect(recording.stored[0]?.entries[0]?.update).toEqual(recording.queued[0])
    // The session learnt the seq the store gave its update.
    expect(recording.sinks.get('s')?.knownSeq).toBe(1)
  })

  it('applies and relays a remote update, never stores it and never hands it back', async () => {
    const recording = createRecordingDistribution()
    harness = createMemoryHarness({ distribution: recording.distribution })
    const a = harness.connect('s')
    await harness.settle()
    const remote = new Y.Doc()
    remote.getText('t').insert(0, 'from another node')
    const update = Y.encodeStateAsUpdate(remote)
    const sink = recording.sinks.get('s')!
    sink.applyRemoteUpdate(update, 42)
    // A repeat (relay and gap repair of the same update) changes nothing.
    sink.applyRemoteUpdate(update, 42)
    await harness.settle()
    expect(a.peer.doc.getText('t').toString()).toBe('from another node')
    expect(sink.knownSeq).toBe(42)
    expect(await harness.store.getMeta('s')).toBeUndefined()
    expect(recording.calls).toEqual(['join s'])
    // Its document now interleaves other nodes' updates: no live snapshot may claim a seq prefix.
    expect(harness.registry.get('s')?.snapshot()).toBeUndefined()
  })

  it('carries awareness both ways and leaves when the session ends', async () => {
    const recording = createRecordingDistribution()
    harness = createMemoryHarness({ distribution: recording.distribution })
    const a = harness.connect('s')
    await harness.settle()
    const local = new awarenessProtocol.Awareness(new Y.Doc())
    local.setLocalState({ name: 'local' })
    a.peer.sendRaw(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(local, [local.clientID])))
    await harness.settle()
    expect(recording.awareness).toHaveLength(1)
    const other = new awarenessProtocol.Awareness(new Y.Doc())
    other.setLocalState({ name: 'remote' })
    recording.sinks
      .get('s')!
      .applyRemoteAwareness(awarenessProtocol.encodeAwarenessUpdate(other, [other.clientID]))
    await harness.settle()
    expect(a.peer.messages.some((m) => m.type === 'awareness')).toBe(true)
    // Remote awareness is not handed back to the distribution.
    expect(recording.awareness).toHaveLength(1)
    harness.registry.get('s')!.end(1001, 'test')
    expect(recording.calls.at(-1)).toBe('leave s')
    expect(recording.sinks.has('s')).toBe(false)
  })
})
