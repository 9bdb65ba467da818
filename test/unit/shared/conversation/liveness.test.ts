import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  appendMessage,
  createAbsenceClock,
  INTERRUPTED_REASON,
  judgeReplies,
  markInterrupted,
  presentWriters,
  readClaims,
  readMessage,
  writeClaim,
} from '../../../../shared/conversation/index.js'
import { agent, alice } from './helpers.js'

function streamingReply(doc: Y.Doc, instanceId: string | undefined, replyTo = 'q'): string {
  return appendMessage(doc, {
    role: 'assistant',
    author: agent,
    status: 'streaming',
    content: 'half an ans',
    metadata: { replyTo, ...(instanceId === undefined ? {} : { instanceId }) },
  }).id
}

describe('reply liveness', () => {
  it('reads instance and author keys from awareness states, leaving out the observer', () => {
    const present = presentWriters(
      [
        [1, { user: { id: 'agent-1' }, instanceId: 'run-1' }],
        [2, { user: { id: 'device-alice' } }],
        [3, null],
        [4, { instanceId: 'mine' }],
      ],
      4,
    )
    expect([...present].sort()).toEqual(['author:agent-1', 'author:device-alice', 'instance:run-1'])
  })

  it('judges a reply dead only after its writer has been absent for the grace period', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { id: 'q', role: 'user', author: alice, content: 'hi' })
    const id = streamingReply(doc, 'run-1')
    const absence = createAbsenceClock(1_000)
    const present = new Set<string>()
    expect(judgeReplies(doc, { present, absence, now: 10_000 })).toEqual({ dead: [], suspect: 1 })
    expect(judgeReplies(doc, { present, absence, now: 10_999 }).dead).toEqual([])
    const { dead } = judgeReplies(doc, { present, absence, now: 11_000 })
    expect(dead.map((m) => m.id)).toEqual([id])
  })

  it('keeps a reply alive while its writer is present, or while its claim is leased', () => {
    const doc = new Y.Doc()
    streamingReply(doc, 'run-1')
    const absence = createAbsenceClock(0)
    expect(judgeReplies(doc, { present: new Set(['instance:run-1']), absence, now: 5 })).toEqual({
      dead: [],
      suspect: 0,
    })
    writeClaim(doc, { promptId: 'q', instanceId: 'run-1', agent, expiresAt: 100 })
    expect(judgeReplies(doc, { present: new Set(), absence, now: 50 }).dead).toEqual([])
    expect(judgeReplies(doc, { present: new Set(), absence, now: 101 }).dead).toHaveLength(1)
  })

  it('judges a reply without an instance id by its author, and never a user message', () => {
    const doc = new Y.Doc()
    appendMessage(doc, { role: 'user', author: alice, status: 'streaming', content: 'typing' })
    streamingReply(doc, undefined)
    const absence = createAbsenceClock(0)
    expect(judgeReplies(doc, { present: new Set(['author:agent-1']), absence, now: 1 }).dead).toEqual([])
    expect(judgeReplies(doc, { present: new Set(), absence, now: 2 }).dead).toHaveLength(1)
  })

  it('lets an agent judge its own replies at once, except the one it is writing', () => {
    const doc = new Y.Doc()
    const old = streamingReply(doc, 'me')
    const current = streamingReply(doc, 'me', 'q2')
    const absence = createAbsenceClock(60_000)
    const { dead } = judgeReplies(doc, {
      present: new Set(['instance:me']),
      absence,
      now: 1,
      self: { instanceId: 'me', currentReplyId: current },
    })
    expect(dead.map((m) => m.id)).toEqual([old])
  })

  it('marks dead replies interrupted and releases their claims, leaving replies finished meanwhile alone', () => {
    const doc = new Y.Doc()
    const a = streamingReply(doc, 'run-1', 'q1')
    const b = streamingReply(doc, 'run-2', 'q2')
    writeClaim(doc, { promptId: 'q1', instanceId: 'run-1', agent, expiresAt: 0 })
    const { dead } = judgeReplies(doc, { present: new Set(), absence: createAbsenceClock(0), now: 1 })
    expect(dead).toHaveLength(2)
    doc.getArray<Y.Map<unknown>>('messages').get(1)?.set('status', 'complete')
    expect(markInterrupted(doc, dead)).toBe(1)
    expect(readMessage(doc, a)).toMatchObject({ status: 'error', error: INTERRUPTED_REASON })
    expect(readMessage(doc, b)?.status).toBe('complete')
    expect(readClaims(doc, 'q1')).toEqual([])
  })

  it('counts absence again from the first look after a reset', () => {
    const absence = createAbsenceClock(100)
    const none = new Set<string>()
    absence.isGone('k', none, 0)
    expect(absence.isGone('k', none, 150)).toBe(true)
    absence.reset()
    expect(absence.isGone('k', none, 200)).toBe(false)
    expect(absence.isGone('k', none, 300)).toBe(true)
  })
})
