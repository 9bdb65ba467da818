import { describe, expect, it } from 'vitest'
import { type AwarenessView, sortAwarenessEntries } from '../../../../server/session/awareness-gate.js'
import type { AwarenessEntry } from '../../../../shared/protocol/awareness-validate.js'

const entry = (clientId: number, clock: number, state: unknown = { n: clientId }): AwarenessEntry => ({
  clientId,
  clock,
  stateJson: JSON.stringify(state),
  isRemoval: state === null,
})

/** Client 1 owned by "alice" at clock 5, client 2 owned by "bob" at clock 3, client 9 left (clock 4). */
const view: AwarenessView<string> = {
  ownerOf: (id) => ({ 1: 'alice', 2: 'bob' })[id],
  clockOf: (id) => ({ 1: 5, 2: 3, 9: 4 })[id] ?? 0,
  hasState: (id) => id === 1 || id === 2,
  // "alice" and "alice-2" are two connections of one authenticated peer.
  isSamePeer: (owner, sender) => owner.split('-')[0] === sender.split('-')[0],
}

describe('sortAwarenessEntries', () => {
  it('accepts every change of the sender’s own ids, removals included', () => {
    const verdict = sortAwarenessEntries([entry(1, 6), entry(1, 7, null)], 'alice', view)
    expect(verdict).toMatchObject({ isWhole: true, introduced: 0, forged: [], echoes: 0 })
    expect(verdict.accepted.length).toBe(2)
  })

  it('lets echoes of states the server already has (or older) pass without counting them', () => {
    const verdict = sortAwarenessEntries([entry(1, 5), entry(2, 1), entry(9, 4, null)], 'carol', view)
    expect(verdict).toMatchObject({ accepted: [], isWhole: false, introduced: 0, forged: [], echoes: 3 })
  })

  it('drops a newer clock or a removal for an id another live connection owns as forged', () => {
    const forged = [entry(1, 6, { name: 'mallory' }), entry(2, 3, null), entry(2, 9, null)]
    const verdict = sortAwarenessEntries([...forged, entry(50, 1)], 'carol', view)
    expect(verdict.forged).toEqual(forged)
    expect(verdict.accepted).toEqual([entry(50, 1)])
    expect(verdict.isWhole).toBe(false)
  })

  it('counts the distinct ids a sender introduces, not removals nor ids it owns', () => {
    const verdict = sortAwarenessEntries(
      [entry(10, 1), entry(10, 2), entry(11, 1), entry(12, 1, null), entry(9, 5), entry(1, 6)],
      'alice',
      view,
    )
    // 10 and 11 are new; 9 (left, newer clock) is reclaimed; 12 is a removal; 1 is alice's own.
    expect(verdict.introduced).toBe(3)
    expect(verdict.isWhole).toBe(true)
  })

  it('lets a second connection of the same peer take its ids over (a reconnect before the old close)', () => {
    const verdict = sortAwarenessEntries([entry(1, 6)], 'alice-2', view)
    expect(verdict).toMatchObject({ forged: [], isWhole: true, introduced: 1 })
    expect(sortAwarenessEntries([entry(1, 6)], 'bob', view).forged).toEqual([entry(1, 6)])
  })
})
