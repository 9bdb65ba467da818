// Issue #13, item 8: behind a reverse proxy every connection came from the proxy's address, so
// per-address limits had to be turned off. With --trust-proxy the client address is read from
// X-Forwarded-For, only when the socket's peer is a trusted proxy, and then the right-most address
// that is not a trusted proxy; a client that forges the header gains nothing. Driven over raw
// sockets with forged headers from a trusted and from an untrusted peer.

import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG, parseConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { rawExchange, requestHead, upgradeHeaders } from '../helpers/raw-http.js'

let server: SyncServer | undefined
const lines: string[] = []

async function start(trustProxy: readonly string[]): Promise<SyncServer> {
  lines.length = 0
  server = await startSyncServer({
    config: {
      ...DEFAULT_CONFIG,
      port: 0,
      store: 'memory',
      compaction: false,
      trustProxy,
      maxConnectionAttemptsPerIp: 2,
      connectionAttemptWindowMs: 600_000,
    },
    logger: pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString())
          done()
        },
      }),
    ),
  })
  return server
}

afterEach(async () => {
  await server?.close()
  server = undefined
})

/** The status of an upgrade whose X-Forwarded-For says `forwardedFor`. */
async function upgradeAs(port: number, forwardedFor: string): Promise<number> {
  const head = requestHead(
    'GET',
    '/shared',
    upgradeHeaders(`127.0.0.1:${port}`, { 'x-forwarded-for': forwardedFor }),
  )
  return (await rawExchange(port, head)).status
}

describe('--trust-proxy', () => {
  it('counts connection attempts per forwarded client when the peer is a trusted proxy', async () => {
    const { port } = await start(['127.0.0.0/8'])
    expect(await upgradeAs(port, '10.0.0.1')).toBe(101)
    expect(await upgradeAs(port, '10.0.0.1')).toBe(101)
    expect(await upgradeAs(port, '10.0.0.1')).toBe(429)
    // Another client behind the same proxy has a budget of its own.
    expect(await upgradeAs(port, '10.0.0.2')).toBe(101)
    // The refusal is logged with the client's address, not the proxy's.
    expect(
      lines.some((line) => line.includes('upgrade refused') && line.includes('"remote":"10.0.0.1"')),
    ).toBe(true)
  })

  it('takes the right-most untrusted address: what a client writes to its left is ignored', async () => {
    const { port } = await start(['127.0.0.1', '192.168.0.0/16'])
    // The client forged a different first hop each time; the proxies appended 10.0.0.3 and their own.
    expect(await upgradeAs(port, '1.1.1.1, 10.0.0.3, 192.168.1.1')).toBe(101)
    expect(await upgradeAs(port, '2.2.2.2, 10.0.0.3, 192.168.1.1')).toBe(101)
    expect(await upgradeAs(port, '3.3.3.3, 10.0.0.3, 192.168.1.1')).toBe(429)
    // Another client through the same two proxies is counted apart.
    expect(await upgradeAs(port, '3.3.3.3, 10.0.0.4, 192.168.1.1')).toBe(101)
  })

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    const { port } = await start(['10.9.9.9'])
    expect(await upgradeAs(port, '10.0.0.1')).toBe(101)
    expect(await upgradeAs(port, '10.0.0.2')).toBe(101)
    // Every forged address counted against the socket's: 127.0.0.1 is out of attempts.
    expect(await upgradeAs(port, '10.0.0.3')).toBe(429)
    expect(
      lines.some((line) => line.includes('upgrade refused') && line.includes('"remote":"127.0.0.1"')),
    ).toBe(true)
  })

  it('is ignored entirely when not configured', async () => {
    const { port } = await start([])
    expect(await upgradeAs(port, '10.0.0.1')).toBe(101)
    expect(await upgradeAs(port, '10.0.0.2')).toBe(101)
    expect(await upgradeAs(port, '10.0.0.3')).toBe(429)
  })

  it('is read from the flag and the environment, and refuses what is not an address or range', () => {
    expect(parseConfig(['--trust-proxy', '10.0.0.1, 192.168.0.0/16'], {}).trustProxy).toEqual([
      '10.0.0.1',
      '192.168.0.0/16',
    ])
    expect(parseConfig([], { TRUST_PROXY: '::1,fd00::/8' }).trustProxy).toEqual(['::1', 'fd00::/8'])
    expect(() => parseConfig(['--trust-proxy', 'proxy.example'], {})).toThrow(/not an IP address or CIDR/)
    expect(() => parseConfig(['--trust-proxy', '10.0.0.0/33'], {})).toThrow(/not an IP address or CIDR/)
  })
})
