// DELETE /sessions/:id when another node of the cluster does not confirm that it closed the
// session: 503, nothing deleted, and this node keeps serving it (its client stays connected). The
// other nodes are stood in for by a Distribution whose retireEverywhere refuses, as the NATS relay
// does after its timeout; no nats-server needed.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLocalDistribution } from '../../server/session/distribution.js'
import type { SyncServer } from '../../server/sync-server.js'
import { ColloquyError } from '../../shared/errors.js'
import { startTestServer } from '../helpers/test-server.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

describe('a delete another node does not confirm', () => {
  let server: SyncServer
  let client: WsPeer | undefined
  const asked: string[] = []

  beforeAll(async () => {
    server = await startTestServer(
      { idleUnloadMs: 20 },
      {
        distribution: {
          ...createLocalDistribution(),
          retireEverywhere: async (sessionId) => {
            asked.push(sessionId)
            throw new ColloquyError('storage-unavailable', 'node b did not confirm')
          },
        },
      },
    )
  })
  afterAll(async () => {
    client?.close()
    await server?.close()
  })

  it('answers 503, deletes nothing and keeps the session open here', async () => {
    client = await connectWsPeer(`ws://127.0.0.1:${server.port}`, 'kept')
    client.peer.doc.getText('t').insert(0, 'still here')
    await client.peer.whenAcked(client.peer.requestAck())
    const response = await fetch(`http://127.0.0.1:${server.port}/sessions/kept`, { method: 'DELETE' })
    expect(response.status).toBe(503)
    expect(asked).toEqual(['kept'])
    expect((await server.store.getMeta('kept'))?.lastSeq).toBeGreaterThan(0)
    expect(server.registry.get('kept')?.state).toBe('ready')
    expect(client.socket.readyState).toBe(client.socket.OPEN)
  })
})
