// Auth: signed tokens checked before the upgrade, read-only peers, expiry mid-session, the HTTP API.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { ConfigError, DEFAULT_CONFIG, parseConfig } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { encodeSyncUpdate } from '../../shared/protocol/message.js'
import { upgradeStatus } from '../helpers/http.js'
import { nodeScript } from '../helpers/node-script.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

const secret = 'a-test-secret-that-is-long-enough'
let dataDir: string
let server: SyncServer
let url: string

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-auth-'))
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent', secret },
  })
  url = `ws://127.0.0.1:${server.port}`
})

afterAll(async () => {
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

const token = (
  role: 'read' | 'write' | 'admin',
  scope: { sessionId?: string; sessionPrefix?: string },
  ttlSeconds = 3600,
) => mintToken({ secret, peerId: `peer-${role}`, role, ttlSeconds, ...scope })

describe('auth', () => {
  it('refuses a missing or bad token with 401 and an out-of-scope one with 403, before loading anything', async () => {
    expect(await upgradeStatus(`${url}/locked`)).toBe(401)
    expect(await upgradeStatus(`${url}/locked?token=garbage`)).toBe(401)
    const other = await mintToken({
      secret: 'another-secret-that-is-long-enough',
      peerId: 'x',
      role: 'write',
      sessionId: 'locked',
    })
    expect(await upgradeStatus(`${url}/locked?token=${other}`)).toBe(401)
    expect(
      await upgradeStatus(`${url}/locked?token=${await token('write', { sessionId: 'elsewhere' })}`),
    ).toBe(403)
    expect(
      await upgradeStatus(`${url}/locked?token=${await token('write', { sessionPrefix: 'team:' })}`),
    ).toBe(403)
    expect(server.registry.get('locked')).toBeUndefined()
    expect(
      await upgradeStatus(`${url}/team:x?token=${await token('write', { sessionPrefix: 'team:' })}`),
    ).toBe(101)
  })

  it('lets a read-only peer receive everything and change nothing', async () => {
    const writer = await connectWsPeer(url, `shared?token=${await token('write', { sessionId: 'shared' })}`)
    writer.peer.doc.getText('t').insert(0, 'from the writer')
    await writer.peer.whenAcked(writer.peer.requestAck())
    const reader = await connectWsPeer(url, `shared?token=${await token('read', { sessionId: 'shared' })}`)
    await until(() => reader.peer.doc.getText('t').toString() === 'from the writer', 5_000, 'reader synced')

    const intruder = new Y.Doc()
    intruder.getText('t').insert(0, 'vandalism ')
    reader.peer.sendRaw(encodeSyncUpdate(Y.encodeStateAsUpdate(intruder)))
    await until(() => reader.peer.messages.some((m) => m.type === 'auth'), 5_000, 'permission denied')
    const denied = reader.peer.messages.find((m) => m.type === 'auth')
    expect(denied).toMatchObject({ type: 'auth', authType: 0 })
    // Still connected and still receiving.
    writer.peer.doc.getText('t').insert(0, 'more ')
    await until(() => reader.peer.doc.getText('t').toString().startsWith('more '), 5_000, 'reader still fed')
    await writer.peer.whenAcked(writer.peer.requestAck())
    expect(server.registry.get('shared')!.document.getText('t').toString()).toBe('more from the writer')
    const stored = await server.store.load('shared')
    const rebuilt = new Y.Doc()
    for (const entry of stored.log) Y.applyUpdate(rebuilt, entry.update)
    expect(rebuilt.getText('t').toString()).not.toContain('vandalism')
    writer.close()
    reader.close()
  })

  it('closes a connection whose token expires with the token-expired code', async () => {
    // exp is whole seconds: a 2 s lifetime leaves at least 1 s for the upgrade to see it valid.
    const shortLived = await token('write', { sessionId: 'expiring' }, 2)
    const client = await connectWsPeer(url, `expiring?token=${shortLived}`)
    expect(await withTimeout(client.closed, 5_000, 'closed at expiry')).toBe(CloseCode.TokenExpired)
  })

  it('keeps connections open after upgrades answered from the token cache (regression: 1006 at once)', async () => {
    // With the cache answering known tokens at once and WebCrypto answering new ones later (through
    // `res.cork(() => res.upgrade())`), uWS ended some later upgrades inside res.upgrade, 1006 (3 runs
    // of this file in 6). Every token is now checked synchronously, inside the upgrade callback.
    const known = await token('write', { sessionPrefix: 'again:' })
    expect(await upgradeStatus(`${url}/again:first?token=${known}`)).toBe(101)
    for (let round = 0; round < 20; round++) {
      expect(await upgradeStatus(`${url}/again:${round}?token=${known}`)).toBe(101)
      const fresh = await token('write', { sessionId: `after-cached-${round}` }, 60)
      const client = await connectWsPeer(url, `after-cached-${round}?token=${fresh}`)
      const outcome = await Promise.race([
        client.closed.then((code) => `closed ${code}`),
        client.whenSynced(5_000).then(() => 'synced'),
      ])
      expect(outcome, `round ${round}`).toBe('synced')
      client.close()
    }
  })

  it('guards the HTTP API with the same tokens and roles', async () => {
    const base = `http://127.0.0.1:${server.port}`
    expect((await fetch(`${base}/sessions/shared/state`)).status).toBe(401)
    const read = await token('read', { sessionId: 'shared' })
    const readAll = await fetch(`${base}/sessions/shared/state`, {
      headers: { authorization: `Bearer ${read}` },
    })
    expect(readAll.status).toBe(200)
    const wrongScope = await token('read', { sessionId: 'other' })
    expect(
      (await fetch(`${base}/sessions/shared/state`, { headers: { authorization: `Bearer ${wrongScope}` } }))
        .status,
    ).toBe(403)
    // Compaction is an admin action: a read token is not enough.
    const compact = await fetch(`${base}/sessions/shared/compact`, {
      method: 'POST',
      headers: { authorization: `Bearer ${read}` },
    })
    expect(compact.status).toBe(403)
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
  })
})

describe('colloquy token', () => {
  it('mints a token the server accepts', async () => {
    const output = execFileSync(
      process.execPath,
      [...nodeScript('cli/colloquy.ts'), 'token', '--peer', 'ops', '--session', 'minted', '--role', 'read'],
      { env: { ...process.env, COLLOQUY_SECRET: secret }, encoding: 'utf8' },
    )
    const minted = output.trim()
    expect(minted.split('.').length).toBe(3)
    expect(await upgradeStatus(`${url}/minted?token=${minted}`)).toBe(101)
    expect(await upgradeStatus(`${url}/other?token=${minted}`)).toBe(403)
  })
})

describe('colloquy token and the secret', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [...nodeScript('cli/colloquy.ts'), 'token', '--peer', 'ops', ...args], {
      env: { ...process.env, COLLOQUY_SECRET: undefined, ...env },
      encoding: 'utf8',
    })

  it('reads the secret from --secret-file, and the token it mints is accepted', async () => {
    const file = path.join(dataDir, 'secret')
    await writeFile(file, `${secret}\n`)
    const minted = run(['--session', 'from-file', '--secret-file', file], {})
    expect(minted.status).toBe(0)
    expect(await upgradeStatus(`${url}/from-file?token=${minted.stdout.trim()}`)).toBe(101)
  })

  it('refuses to sign with a weak secret', () => {
    const refused = run(['--session', 's'], { COLLOQUY_SECRET: ' '.repeat(16) })
    expect(refused.status).toBe(2)
    expect(refused.stderr).toContain('the secret is too weak: it is blank')
    expect(refused.stdout).toBe('')
  })
})

describe('binding without a secret', () => {
  it('is refused on a non-loopback address unless --insecure is given', () => {
    expect(() => parseConfig(['--host', '0.0.0.0'], {})).toThrow(ConfigError)
    expect(parseConfig(['--host', '0.0.0.0', '--insecure', 'true'], {}).host).toBe('0.0.0.0')
    expect(parseConfig(['--host', '0.0.0.0'], { COLLOQUY_SECRET: secret }).secret).toBe(secret)
    expect(parseConfig([], {}).host).toBe('127.0.0.1')
  })
})
