// Regression (issue #18, items 2 and 3 of "what got through"): a token's scope covers every
// session a request names, not only the one in the path. A fork may not write outside the scope
// (POST /sessions/A/fork?to=B created B whatever B was), 409 versus 201 may not tell whether a
// session outside it exists, and GET /sessions lists only the sessions the token covers.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'

const secret = 'security-scope-test-secret-0123456789'
let server: SyncServer
let base: string

const admin = (scope: { sessionId?: string; sessionPrefix?: string }) =>
  mintToken({ secret, peerId: 'ops', role: 'admin', ...scope })

async function post(path: string, token: string, body?: Uint8Array): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    ...(body === undefined ? {} : { body }),
  })
}

async function listed(token: string): Promise<string[]> {
  const response = await fetch(`${base}/sessions`, { headers: { authorization: `Bearer ${token}` } })
  expect(response.status).toBe(200)
  const { sessions } = (await response.json()) as { sessions: { sessionId: string }[] }
  return sessions.map((session) => session.sessionId).sort()
}

beforeAll(async () => {
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', compaction: false, logLevel: 'silent', secret },
  })
  base = `http://127.0.0.1:${server.port}`
  const doc = new Y.Doc()
  doc.getText('t').insert(0, 'hello')
  const everything = await admin({ sessionPrefix: '' })
  for (const id of ['team:a', 'team:b', 'other:secret']) {
    expect((await post(`/sessions/${id}/import`, everything, Y.encodeStateAsUpdate(doc))).status).toBe(201)
  }
})

afterAll(async () => {
  await server.close()
})

describe('a fork', () => {
  it('is refused with 403 when its target is outside the token scope, and creates nothing', async () => {
    const team = await admin({ sessionPrefix: 'team:' })
    const refused = await post('/sessions/team:a/fork?to=other:planted', team)
    expect(refused.status).toBe(403)
    expect(await server.store.getMeta('other:planted')).toBeUndefined()
  })

  it('answers the same for a target outside the scope whether it exists or not', async () => {
    const team = await admin({ sessionPrefix: 'team:' })
    const existing = await post('/sessions/team:a/fork?to=other:secret', team)
    const missing = await post('/sessions/team:a/fork?to=other:nothing', team)
    expect(existing.status).toBe(403)
    expect(missing.status).toBe(existing.status)
    expect(await missing.json()).toEqual(await existing.json())
  })

  it('still works inside the scope', async () => {
    const team = await admin({ sessionPrefix: 'team:' })
    expect((await post('/sessions/team:a/fork?to=team:copy', team)).status).toBe(201)
    // A token for one session cannot fork it anywhere else.
    const one = await admin({ sessionId: 'team:a' })
    expect((await post('/sessions/team:a/fork?to=team:copy2', one)).status).toBe(403)
  })
})

describe('GET /sessions', () => {
  it('lists only the sessions the token covers', async () => {
    expect(await listed(await admin({ sessionId: 'team:a' }))).toEqual(['team:a'])
    expect(await listed(await admin({ sessionPrefix: 'team:' }))).toEqual(['team:a', 'team:b', 'team:copy'])
    expect(await listed(await admin({ sessionPrefix: 'none:' }))).toEqual([])
    expect(await listed(await admin({ sessionPrefix: '' }))).toEqual([
      'other:secret',
      'team:a',
      'team:b',
      'team:copy',
    ])
  })
})

describe('a session outside the scope', () => {
  it('gets 403 on every route whether it exists or not', async () => {
    const team = await admin({ sessionPrefix: 'team:' })
    for (const route of ['', '/state', '/log', '/export']) {
      const existing = await fetch(`${base}/sessions/other:secret${route}`, {
        headers: { authorization: `Bearer ${team}` },
      })
      const missing = await fetch(`${base}/sessions/other:nothing${route}`, {
        headers: { authorization: `Bearer ${team}` },
      })
      expect(existing.status, route).toBe(403)
      expect(missing.status, route).toBe(403)
    }
    expect((await post('/sessions/other:secret/import', team, new Uint8Array([0, 0]))).status).toBe(403)
    expect((await post('/sessions/other:nothing/import', team, new Uint8Array([0, 0]))).status).toBe(403)
  })
})
