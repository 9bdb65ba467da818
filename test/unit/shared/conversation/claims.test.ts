import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  CLAIMS,
  claimKey,
  compareClaims,
  readClaims,
  releaseClaim,
  writeClaim,
} from '../../../../shared/conversation/index.js'
import { agent, connectedDocs } from './helpers.js'

describe('claims', () => {
  it('records one entry per instance and message, so concurrent claims never overwrite each other', () => {
    const { a, b } = connectedDocs()
    writeClaim(a, { promptId: 'q1', instanceId: 'i-a', agent, expiresAt: 2_000, claimedAt: 1_000 })
    writeClaim(b, { promptId: 'q1', instanceId: 'i-b', agent, expiresAt: 2_000, claimedAt: 999 })
    const claims = readClaims(a, 'q1').sort(compareClaims)
    expect(claims.map((c) => c.instanceId)).toEqual(['i-b', 'i-a'])
    expect(readClaims(b, 'q1').sort(compareClaims)).toEqual(claims)
    expect(a.getMap(CLAIMS).has(claimKey('q1', 'i-a'))).toBe(true)
  })

  it('keeps claimedAt and the reply id when a claim is renewed', () => {
    const doc = new Y.Doc()
    writeClaim(doc, { promptId: 'q', instanceId: 'i', agent, expiresAt: 10, claimedAt: 5, replyId: 'r' })
    writeClaim(doc, { promptId: 'q', instanceId: 'i', agent, expiresAt: 40 })
    expect(readClaims(doc)).toEqual([
      { promptId: 'q', instanceId: 'i', agent, claimedAt: 5, expiresAt: 40, replyId: 'r' },
    ])
  })

  it('orders equal times by instance id, so every replica picks the same first claim', () => {
    const base = { promptId: 'q', agent, claimedAt: 7, expiresAt: 9 }
    expect(
      [
        { ...base, instanceId: 'z' },
        { ...base, instanceId: 'a' },
      ].sort(compareClaims)[0]?.instanceId,
    ).toBe('a')
  })

  it("releases only the given instance's claim", () => {
    const doc = new Y.Doc()
    writeClaim(doc, { promptId: 'q', instanceId: 'a', agent, expiresAt: 1 })
    writeClaim(doc, { promptId: 'q', instanceId: 'b', agent, expiresAt: 1 })
    releaseClaim(doc, 'q', 'a')
    expect(readClaims(doc).map((c) => c.instanceId)).toEqual(['b'])
  })

  it('skips entries a foreign peer wrote that name no prompt or instance, and defaults bad fields', () => {
    const doc = new Y.Doc()
    const map = doc.getMap(CLAIMS)
    map.set('junk', 42)
    map.set('half', { promptId: 'q' })
    map.set('odd', { promptId: 'q', instanceId: 'i', claimedAt: 'yesterday', agent: 'agent:x' })
    expect(readClaims(doc)).toEqual([
      {
        promptId: 'q',
        instanceId: 'i',
        agent: { id: 'agent:x', kind: 'device' },
        claimedAt: 0,
        expiresAt: 0,
      },
    ])
  })
})
