// The writer of turn entries into sessions: the entries of one session gathered within its delay go
// out as one server change, the latest entry of a message wins, and a session that refuses is tried
// again a bounded number of times, then left (logged).

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createTurnDocuments, type DocumentChanger } from '../../../server/turns/turn-documents.js'
import { readTurnEntry, type TurnEntry } from '../../../shared/turns/document.js'

const entry = (state: TurnEntry['state'], position?: number): TurnEntry => ({
  turnId: 'gpu~s~m',
  pool: 'gpu',
  state,
  attempts: 0,
  updatedAt: 1,
  ...(position === undefined ? {} : { position }),
})

function changer(refuse: (sessionId: string) => boolean) {
  const docs = new Map<string, Y.Doc>()
  const calls: string[] = []
  const target: DocumentChanger = {
    async change(sessionId, apply) {
      calls.push(sessionId)
      if (refuse(sessionId)) return false
      let doc = docs.get(sessionId)
      if (doc === undefined) {
        doc = new Y.Doc()
        docs.set(sessionId, doc)
      }
      apply(doc, 'server')
      return true
    },
  }
  return { target, docs, calls }
}

describe('turn documents', () => {
  it("writes one session's entries in one change, the latest entry of a message winning", async () => {
    const { target, docs, calls } = changer(() => false)
    const documents = createTurnDocuments({ changer: target, logger: createSilentLogger(), delayMs: 5 })
    documents.write('s1', 'm1', entry('queued', 3))
    documents.write('s1', 'm1', entry('queued', 2))
    documents.write('s1', 'm2', entry('claimed'))
    documents.write('s2', 'm1', entry('queued', 1))
    await documents.flush()
    expect(calls.sort()).toEqual(['s1', 's2'])
    expect(readTurnEntry(docs.get('s1')!, 'm1')?.position).toBe(2)
    expect(readTurnEntry(docs.get('s1')!, 'm2')?.state).toBe('claimed')
    documents.close()
  })

  it('tries a refusing session again, a bounded number of times', async () => {
    let refusals = 2
    const { target, docs, calls } = changer((sessionId) => sessionId === 'flaky' && refusals-- > 0)
    const documents = createTurnDocuments({ changer: target, logger: createSilentLogger(), delayMs: 1 })
    documents.write('flaky', 'm1', entry('queued', 1))
    await documents.flush()
    expect(calls).toEqual(['flaky', 'flaky', 'flaky'])
    expect(readTurnEntry(docs.get('flaky')!, 'm1')?.state).toBe('queued')

    const stubborn = changer(() => true)
    const giving = createTurnDocuments({ changer: stubborn.target, logger: createSilentLogger(), delayMs: 1 })
    giving.write('never', 'm1', entry('queued', 1))
    await giving.flush()
    expect(stubborn.calls.length).toBe(5)
    expect(giving.pendingSessions).toBe(0)
    documents.close()
    giving.close()
  })
})
