// Turns survive kill -9 of the server: a child-process server with a pool takes a burst of turns,
// one worker claims and completes some, the server is SIGKILLed mid-burst and restarted on the same
// LevelDB. Every turn whose creation was acknowledged is there, in its state; a claimed turn keeps
// its lease (its worker renews it), and once that lease expires the turn goes to another worker.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ClaimResponse, PoolResponse, RenewResponse, TurnResponse } from '../../shared/turns/api.js'
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { withTimeout } from '../helpers/wait.js'

const LEASE_MS = 6_000
let dataDir: string
const servers: ServerProcess[] = []

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-turns-kill-'))
})

afterAll(async () => {
  for (const server of servers) if (server.child.exitCode === null) server.child.kill('SIGKILL')
  await rm(dataDir, { recursive: true, force: true })
})

async function start(): Promise<{
  server: ServerProcess
  call: (method: string, route: string, body?: unknown) => Promise<Response>
}> {
  const server = await startServerProcess([
    '--data',
    dataDir,
    '--log-level',
    'info',
    '--turn-pools',
    'gpu:2',
    '--turn-lease-ms',
    String(LEASE_MS),
  ])
  servers.push(server)
  const base = `http://127.0.0.1:${server.port}`
  const call = (method: string, route: string, body?: unknown) =>
    fetch(`${base}${route}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  return { server, call }
}

const turnPath = (id: string, action = '') => `/api/turns/${encodeURIComponent(id)}${action}`

describe('turns and kill -9', () => {
  it('keeps every acknowledged turn, its state and its lease across SIGKILL and restart', async () => {
    const first = await start()
    // A burst of 200 creations; the server dies once 60 were acknowledged.
    const acknowledged: string[] = []
    let killed = false
    const creations = Array.from({ length: 200 }, async (_, i) => {
      try {
        const response = await first.call('POST', '/api/turns', {
          sessionId: `s-${i}`,
          messageId: 'q',
          pool: 'gpu',
        })
        if (response.status === 201) acknowledged.push(`gpu~s-${i}~q`)
        if (acknowledged.length >= 60 && !killed) {
          killed = true
          // Before the kill: one turn done, one claimed (its lease must survive).
          const claim = (await (
            await first.call('POST', '/api/pools/gpu/claim', { instanceId: 'w1', max: 2 })
          ).json()) as ClaimResponse
          expect(claim.turns).toHaveLength(2)
          const [done, held] = claim.turns as [ClaimResponse['turns'][0], ClaimResponse['turns'][0]]
          await first.call('POST', turnPath(done.turn.id, '/complete'), { leaseId: done.lease.id })
          first.server.child.kill('SIGKILL')
          return { done, held }
        }
      } catch {
        // The server died under this request: not acknowledged.
      }
      return undefined
    })
    const results = await withTimeout(Promise.all(creations), 30_000, 'the burst ends')
    await first.server.exited
    const { done, held } = results.find((result) => result !== undefined)!
    expect(acknowledged.length).toBeGreaterThanOrEqual(60)

    const second = await start()
    for (const id of acknowledged) {
      const response = await second.call('GET', turnPath(id))
      expect(response.status, id).toBe(200)
    }
    const doneTurn = ((await (await second.call('GET', turnPath(done.turn.id))).json()) as TurnResponse).turn
    expect(doneTurn.state).toBe('done')
    const heldTurn = ((await (await second.call('GET', turnPath(held.turn.id))).json()) as TurnResponse).turn
    expect(heldTurn).toMatchObject({ state: 'claimed', attempts: 1, lease: { id: held.lease.id } })
    const renewed = (await (
      await second.call('POST', turnPath(held.turn.id, '/renew'), { leaseId: held.lease.id })
    ).json()) as RenewResponse
    expect(renewed.status).toBe('ok')
    const pool = (await (await second.call('GET', '/api/pools/gpu')).json()) as PoolResponse
    expect(pool.running).toBe(1)

    // The held turn's worker is gone: another worker fills the free slot, then waits for a slot;
    // the held turn's lease expires, and it comes back first (oldest), with a second attempt.
    const other = (await (
      await second.call('POST', '/api/pools/gpu/claim', { instanceId: 'w2' })
    ).json()) as ClaimResponse
    expect(other.turns).toHaveLength(1)
    const redelivered = (await (
      await second.call('POST', '/api/pools/gpu/claim', { instanceId: 'w2', max: 1, waitMs: 15_000 })
    ).json()) as ClaimResponse
    expect(redelivered.turns[0]?.turn).toMatchObject({ id: held.turn.id, attempts: 2 })
    second.server.child.kill('SIGKILL')
    await second.server.exited
  })
})
