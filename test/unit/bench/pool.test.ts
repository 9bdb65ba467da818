// The benchmark's load process pool: a process that misses its deadline is replaced, so its late
// reply can never be taken as the answer to the next request.

import { once } from 'node:events'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { cpuMicrosOf } from '../../../bench/lib/targets.js'
import { type LoadProcess, startLoadProcess } from '../../../bench/load/pool.js'

describe('load process pool', () => {
  let load: LoadProcess | undefined
  let server: net.Server | undefined

  afterEach(async () => {
    load?.kill()
    load = undefined
    server?.close()
    server = undefined
  })

  it('replaces a process that timed out; its late reply never answers the next request', async () => {
    // A server that never answers a WebSocket upgrade and drops each connection after 2.5 s: an
    // 'idle' command against it answers 'connected' (with its connections failed) after ~2.5 s.
    const sockets = new Set<net.Socket>()
    server = net.createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
      const timer = setTimeout(() => socket.destroy(), 2_500)
      socket.on('close', () => {
        clearTimeout(timer)
        sockets.delete(socket)
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as net.AddressInfo
    const url = `ws://127.0.0.1:${port}`

    load = startLoadProcess()
    const first = load.pid
    const idle = (docs: string[]) => ({
      type: 'idle' as const,
      url,
      framing: 'plain' as const,
      docs,
      perDoc: 1,
      batch: 0,
    })
    await expect(load.request(idle(['a']), 'connected', 1_000)).rejects.toThrow(/process replaced/)
    // Replaced at once: callers read the new process's CPU before their next request.
    expect(load.pid).not.toBe(first)
    expect(cpuMicrosOf(load.pid)).toBeGreaterThanOrEqual(0)
    // The timed-out request (1 connection) would answer in the middle of this one (3 connections):
    // were its process kept, its 'connected' would be taken for this request's.
    const second = await load.request(idle(['a', 'b', 'c']), 'connected', 30_000)
    expect(second.failed).toBe(3)
    expect(load.pid).not.toBe(first)
    for (const socket of sockets) socket.destroy()
  })
})
