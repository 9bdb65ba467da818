// Automatic turns take their tenant and class from the token of the connection that wrote the
// message (issue #17), not from what the message's metadata claims: a message's metadata is clamped
// to its writer's scope; a message relayed from another node gets no turn here; and a message Yjs
// held pending until another peer's update completed it is not credited to that peer.

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { type TurnScope, turnScopeOf } from '../../../server/auth/turn-scope.js'
import { createSilentLogger } from '../../../server/observability/log.js'
import { createAutoTurns } from '../../../server/turns/auto-turns.js'
import { appendMessage } from '../../../shared/conversation/index.js'
import type { CreateTurnRequest } from '../../../shared/turns/api.js'

const phone = { id: 'phone', kind: 'device' as const }

/** A session document watched by the rule `gpu=` with `scopes` per transaction origin. */
function watched(scopes: ReadonlyMap<unknown, TurnScope>) {
  const created: CreateTurnRequest[] = []
  const auto = createAutoTurns({
    rules: [{ pool: 'gpu', sessionPrefix: '' }],
    create: async (request) => {
      created.push(request)
    },
    refused: () => {},
    scopeOf: (origin) => scopes.get(origin),
    logger: createSilentLogger(),
  })
  const doc = new Y.Doc()
  const stop = auto.watch('s1', doc)
  return { doc, created, stop }
}

const paid = { name: 'paid connection' }
const free = { name: 'free connection' }
const otherNode = { name: 'relayed from another node' }
const scopes = new Map<unknown, TurnScope>([
  [paid, turnScopeOf({ role: 'write', tenant: 'paid', bestPriority: 0 })],
  [free, turnScopeOf({ role: 'write', tenant: 'free', bestPriority: 2 })],
])

/** What a device's own document sends after appending one message. */
function messageUpdate(from: Y.Doc, id: string, metadata: Record<string, unknown> = {}): Uint8Array {
  const before = Y.encodeStateVector(from)
  appendMessage(from, { id, role: 'user', author: phone, content: id, metadata })
  return Y.encodeStateAsUpdate(from, before)
}

describe('automatic turns and the writer token', () => {
  it("give a message its writer token's tenant and clamp its metadata to the token's best class", () => {
    const { doc, created } = watched(scopes)
    const device = new Y.Doc()
    Y.applyUpdate(doc, messageUpdate(device, 'q1', { tenant: 'paid', priority: 0 }), free)
    Y.applyUpdate(doc, messageUpdate(device, 'q2', { priority: 2 }), paid)
    Y.applyUpdate(doc, messageUpdate(device, 'q3'), paid)
    expect(created).toEqual([
      { sessionId: 's1', messageId: 'q1', pool: 'gpu', tenant: 'free', priority: 2 },
      { sessionId: 's1', messageId: 'q2', pool: 'gpu', tenant: 'paid', priority: 2 },
      { sessionId: 's1', messageId: 'q3', pool: 'gpu', tenant: 'paid', priority: 1 },
    ])
  })

  it('leave a message relayed from another node to that node', () => {
    const { doc, created } = watched(scopes)
    Y.applyUpdate(doc, messageUpdate(new Y.Doc(), 'q1'), otherNode)
    expect(created).toEqual([])
  })

  it('do not credit a pending message to the peer whose update completed it', () => {
    const { doc, created, stop } = watched(scopes)
    const paidDevice = new Y.Doc()
    const freeDevice = new Y.Doc()
    Y.applyUpdate(doc, messageUpdate(paidDevice, 'p1'), paid)
    Y.applyUpdate(freeDevice, Y.encodeStateAsUpdate(paidDevice))
    // The free device has seen the paid device's next message before the server has, and appends
    // after it: its message depends on a struct the server does not have yet.
    const p2 = messageUpdate(paidDevice, 'p2')
    Y.applyUpdate(freeDevice, p2)
    Y.applyUpdate(doc, messageUpdate(freeDevice, 'f1', { tenant: 'paid', priority: 0 }), free)
    expect(created.map((request) => request.messageId)).toEqual(['p1'])
    // The paid device's update integrates both in one transaction of the paid connection.
    Y.applyUpdate(doc, p2, paid)
    expect(created).toEqual([
      { sessionId: 's1', messageId: 'p1', pool: 'gpu', tenant: 'paid', priority: 1 },
      { sessionId: 's1', messageId: 'p2', pool: 'gpu', tenant: 'paid', priority: 1 },
      { sessionId: 's1', messageId: 'f1', pool: 'gpu', tenant: 'default', priority: 1 },
    ])
    stop?.()
    Y.applyUpdate(doc, messageUpdate(paidDevice, 'p3'), paid)
    expect(created).toHaveLength(3)
  })

  it('trust the metadata without a scopeOf (a server without tokens)', () => {
    const created: CreateTurnRequest[] = []
    const auto = createAutoTurns({
      rules: [{ pool: 'gpu', sessionPrefix: '' }],
      create: async (request) => {
        created.push(request)
      },
      refused: () => {},
      logger: createSilentLogger(),
    })
    const doc = new Y.Doc()
    auto.watch('s1', doc)
    Y.applyUpdate(doc, messageUpdate(new Y.Doc(), 'q1', { tenant: 'acme', priority: 0 }), paid)
    expect(created).toEqual([{ sessionId: 's1', messageId: 'q1', pool: 'gpu', tenant: 'acme', priority: 0 }])
  })
})
