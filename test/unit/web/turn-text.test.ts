// The words the web app shows for a question's turn (web/src/turn-text.ts): a place in line reads
// as English, every state says what happens, and the pool comes from the hash route.

import { describe, expect, it } from 'vitest'
import type { TurnEntry } from '../../../shared/turns/index.js'
import { describeTurn, ordinal, poolFromHash } from '../../../web/src/turn-text.js'

const entry = (patch: Partial<TurnEntry>): TurnEntry => ({
  turnId: 'main~s~m',
  pool: 'main',
  state: 'queued',
  attempts: 0,
  updatedAt: 0,
  ...patch,
})

describe('the turn display', () => {
  it('says a place in line the way people do', () => {
    expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111, 112].map(ordinal)).toEqual([
      '1st',
      '2nd',
      '3rd',
      '4th',
      '11th',
      '12th',
      '13th',
      '21st',
      '22nd',
      '101st',
      '111th',
      '112th',
    ])
  })

  it('describes each state, with the agent, the reason and the attempts', () => {
    const agent = { peerId: 'agent:w', instanceId: 'i', name: 'helper' }
    expect(describeTurn(entry({ position: 12 }))).toBe('queued · 12th in line')
    expect(describeTurn(entry({ position: 1, attempts: 1 }))).toBe('queued · 1st in line (again, after 1)')
    expect(describeTurn(entry({ state: 'claimed', agent }))).toBe('thinking… (helper)')
    expect(describeTurn(entry({ state: 'streaming', agent: { peerId: 'agent:x', instanceId: 'i' } }))).toBe(
      'answering… (agent:x)',
    )
    expect(describeTurn(entry({ state: 'done' }))).toBe('answered')
    expect(describeTurn(entry({ state: 'cancelled' }))).toBe('cancelled')
    expect(describeTurn(entry({ state: 'expired', reasonText: 'waited past its deadline' }))).toBe(
      'expired: waited past its deadline',
    )
    expect(describeTurn(entry({ state: 'failed', attempts: 3, reasonText: 'lost its agent 3 times' }))).toBe(
      'failed after 3 attempts: lost its agent 3 times',
    )
  })

  it('reads the pool from the hash route, and none without one', () => {
    expect(poolFromHash('#/s/abc?pool=main')).toBe('main')
    expect(poolFromHash('#/s/abc')).toBeUndefined()
    expect(poolFromHash('#/s/abc?pool=')).toBeUndefined()
  })
})
