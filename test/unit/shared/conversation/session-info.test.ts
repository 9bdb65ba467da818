import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  ensureSessionCreated,
  readSessionInfo,
  SESSION,
  setSessionTitle,
  touchParticipant,
} from '../../../../shared/conversation/index.js'
import { agent, alice, bob, connectedDocs, countUpdates } from './helpers.js'

describe('readSessionInfo', () => {
  it('reads an empty session as no title, no createdAt and no participants', () => {
    expect(readSessionInfo(new Y.Doc())).toEqual({ participants: {} })
  })
})

describe('setSessionTitle', () => {
  it('sets the title in one update and records the creation time once', () => {
    const doc = new Y.Doc()
    const updates = countUpdates(doc)
    setSessionTitle(doc, 'Trip plans')
    expect(updates.count).toBe(1)
    const { title, createdAt } = readSessionInfo(doc)
    expect(title).toBe('Trip plans')
    expect(createdAt).toEqual(expect.any(Number))
    setSessionTitle(doc, 'Renamed')
    expect(readSessionInfo(doc)).toMatchObject({ title: 'Renamed', createdAt })
  })
})

describe('touchParticipant', () => {
  it('records each participant under its own key with the time it was last seen', () => {
    const doc = new Y.Doc()
    touchParticipant(doc, alice, 10)
    touchParticipant(doc, agent, 20)
    touchParticipant(doc, alice, 30)
    expect(readSessionInfo(doc)).toEqual({
      createdAt: 10,
      participants: {
        [alice.id]: { ...alice, lastSeenAt: 30 },
        [agent.id]: { ...agent, lastSeenAt: 20 },
      },
    })
    expect(doc.getMap<unknown>(SESSION).has(`participant:${alice.id}`)).toBe(true)
  })

  it('keeps both participants when two replicas touch themselves concurrently', () => {
    const a = new Y.Doc()
    const b = new Y.Doc()
    touchParticipant(a, alice, 1)
    touchParticipant(b, bob, 2)
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b))
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    expect(Object.keys(readSessionInfo(a).participants).sort()).toEqual([alice.id, bob.id].sort())
    expect(readSessionInfo(b)).toEqual(readSessionInfo(a))
  })

  it('syncs to other replicas and keeps an id such as __proto__ as an ordinary key', () => {
    const { a, b } = connectedDocs()
    touchParticipant(a, { id: '__proto__', kind: 'device' }, 5)
    const { participants } = readSessionInfo(b)
    expect(Object.keys(participants)).toEqual(['__proto__'])
    expect(Object.getPrototypeOf(participants)).toBe(Object.prototype)
  })
})

describe('ensureSessionCreated', () => {
  it('writes createdAt only when no peer has', () => {
    const doc = new Y.Doc()
    ensureSessionCreated(doc, 7)
    const updates = countUpdates(doc)
    ensureSessionCreated(doc, 8)
    expect(updates.count).toBe(0)
    expect(readSessionInfo(doc).createdAt).toBe(7)
  })
})
