// The shared turn model: ids derived from (session, message, pool) and parsed back, the name rules,
// and the tolerant reading of the `turns` map a foreign peer may have written anything into.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  isFinalTurnState,
  parseTurnEntry,
  parseTurnId,
  readTurnEntries,
  readTurnEntry,
  turnIdOf,
  turnsMap,
  writeTurnEntry,
} from '../../../../shared/turns/index.js'

describe('turn ids', () => {
  it('are derived from the session, the message and the pool, and parse back', () => {
    const id = turnIdOf('chat:42', 'msg-1', 'gpu')
    expect(id).toBe('gpu~chat:42~msg-1')
    expect(parseTurnId(id)).toEqual({ pool: 'gpu', sessionId: 'chat:42', messageId: 'msg-1' })
  })

  it('refuse anything that is not three valid parts', () => {
    for (const bad of [
      'gpu~s',
      'gpu~s~m~x',
      'GPU~s~m',
      'gpu~s s~m',
      'gpu~s~m/1',
      `gpu~s~${'m'.repeat(129)}`,
      '',
    ]) {
      expect(parseTurnId(bad), bad).toBeUndefined()
    }
  })

  it('name the final states', () => {
    expect(['queued', 'claimed', 'streaming'].map((s) => isFinalTurnState(s as never))).toEqual([
      false,
      false,
      false,
    ])
    expect(['done', 'cancelled', 'expired', 'failed'].map((s) => isFinalTurnState(s as never))).toEqual([
      true,
      true,
      true,
      true,
    ])
  })
})

describe('the turns map', () => {
  it('reads back what the server wrote', () => {
    const doc = new Y.Doc()
    writeTurnEntry(doc, 'm1', {
      turnId: 'gpu~s~m1',
      pool: 'gpu',
      state: 'claimed',
      attempts: 1,
      updatedAt: 5,
      agent: { peerId: 'w', instanceId: 'i' },
    })
    expect(readTurnEntry(doc, 'm1')).toEqual({
      turnId: 'gpu~s~m1',
      pool: 'gpu',
      state: 'claimed',
      attempts: 1,
      updatedAt: 5,
      agent: { peerId: 'w', instanceId: 'i' },
    })
  })

  it('skips entries a foreign peer wrote badly and defaults bad fields', () => {
    const doc = new Y.Doc()
    const map = turnsMap(doc)
    map.set('a', 'not an object')
    map.set('b', { turnId: 'x', pool: 'gpu', state: 'thinking' })
    map.set('c', {
      turnId: 'x',
      pool: 'gpu',
      state: 'queued',
      attempts: -3,
      position: 'first',
      agent: { peerId: 1 },
    })
    expect([...readTurnEntries(doc).keys()]).toEqual(['c'])
    expect(parseTurnEntry(map.get('c'))).toEqual({
      turnId: 'x',
      pool: 'gpu',
      state: 'queued',
      attempts: 0,
      updatedAt: 0,
    })
  })
})
