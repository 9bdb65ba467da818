// createSharedSessions: a session whose close fails is still dropped, and the failure is reported
// rather than swallowed (regression: the worker's sessions ignored every failed close).

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createSharedSessions, type SessionHandle } from '../../../client/agent/fleet/sessions.js'

function handleThatFailsToClose(error: Error): SessionHandle {
  return {
    doc: new Y.Doc(),
    whenSynced: async () => {},
    whenFlushed: async () => {},
    close: () => Promise.reject(error),
  }
}

describe('shared worker sessions', () => {
  it('reports a session whose close failed, and drops it anyway', async () => {
    const failure = new Error('socket already gone')
    const reported: Array<[unknown, string]> = []
    const sessions = createSharedSessions(() => handleThatFailsToClose(failure), {
      lingerMs: 0,
      onError: (error, sessionId) => reported.push([error, sessionId]),
    })
    const lease = await sessions.acquire('chat-1')
    await lease.release()
    expect(reported).toEqual([[failure, 'chat-1']])
    expect(sessions.openCount).toBe(0)
  })

  it('reports the failed closes of close() for every session', async () => {
    const reported: string[] = []
    const sessions = createSharedSessions(() => handleThatFailsToClose(new Error('gone')), {
      onError: (_error, sessionId) => reported.push(sessionId),
    })
    await sessions.acquire('a')
    await sessions.acquire('b')
    await sessions.close()
    expect(reported.sort()).toEqual(['a', 'b'])
    expect(sessions.openCount).toBe(0)
  })
})
