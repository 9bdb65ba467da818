// The CLI says what is wrong (issue #14): the real dispatcher runs as a child process (node-script.ts)
// against a refused token, a refused upgrade, a data path without data, a directory a running server
// holds, a dead --url and a reader that closes the pipe, and each time prints one clear line.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { mintToken } from '../../server/auth/tokens.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { appendMessage } from '../../shared/conversation/index.js'
import { nodeScript } from '../helpers/node-script.js'
import { withTimeout } from '../helpers/wait.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const secret = 'a-test-secret-that-is-long-enough-for-the-cli'
let tmp: string
let server: SyncServer
let serverDir: string
let offlineDir: string

interface Outcome {
  readonly code: number | null
  readonly out: string
  readonly err: string
}

/** Runs `colloquy …args` to its end (bounded), stdin an open pipe as a script's would be. */
function colloquy(args: readonly string[], timeoutMs = 30_000): Promise<Outcome> {
  const child: ChildProcess = spawn(process.execPath, [...nodeScript('cli/colloquy.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, COLLOQUY_URL: '', COLLOQUY_TOKEN: '', DATA_DIR: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString()
  })
  const ended = new Promise<Outcome>((resolve) => {
    child.once('close', (code) => resolve({ code, out, err }))
  })
  return withTimeout(ended, timeoutMs, `colloquy ${args.join(' ')}`).catch((error: unknown) => {
    child.kill('SIGKILL')
    throw new Error(`${String(error)}\nstdout: ${out}\nstderr: ${err}`)
  })
}

/** A port nothing listens on: bound, then released. */
async function deadPort(): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

/** An HTTP server that answers every WebSocket upgrade with `status` and `body`. */
async function refusingServer(
  status: number,
  body: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const refuser = http.createServer((_request, response) => response.writeHead(404).end())
  refuser.on('upgrade', (_request, socket: net.Socket) => {
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Refused'}\r\nContent-Type: text/plain\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  })
  await new Promise<void>((resolve) => refuser.listen(0, '127.0.0.1', resolve))
  const { port } = refuser.address() as AddressInfo
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => refuser.close(() => resolve())),
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'colloquy-cli-errors-'))
  serverDir = path.join(tmp, 'served')
  offlineDir = path.join(tmp, 'offline')
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, dataDir: serverDir, logLevel: 'silent', secret },
  })
  // An offline session whose replay prints far more than a pipe holds (64 KiB): 120 turns of 2 KB.
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  const user = { id: 'u1', kind: 'device' as const, name: 'Ada' }
  for (let i = 0; i < 120; i++) {
    appendMessage(doc, { id: `m${i}`, role: 'user', author: user, content: `${i} ${'x'.repeat(2_000)}` })
  }
  const store = await openLeveldbStore({ location: offlineDir })
  await store.append(updates.map((update, i) => ({ sessionId: 'long', time: 1_000 + i, update })))
  await store.close()
}, 30_000)

afterAll(async () => {
  await server?.close()
  await rm(tmp, { recursive: true, force: true })
})

describe('colloquy chat and agent with a token the server refuses', () => {
  it('agent with a garbage token says "token rejected (401)" and stops with exit 1', async () => {
    const result = await colloquy([
      'agent',
      's1',
      '--url',
      `ws://127.0.0.1:${server.port}`,
      '--token',
      'garbage',
    ])
    expect(result.err).toMatch(/^colloquy agent: token rejected \(401\): \S/m)
    expect(result.code).toBe(1)
  })

  it('chat with a garbage token says "token rejected (401)" and stops instead of retrying offline', async () => {
    const result = await colloquy([
      'chat',
      's1',
      '--url',
      `ws://127.0.0.1:${server.port}`,
      '--token',
      'garbage',
    ])
    expect(result.err).toMatch(/^colloquy chat: token rejected \(401\): \S/m)
    expect(result.code).toBe(1)
  })

  it('chat with a token for another session says "token rejected (403)"', async () => {
    const other = await mintToken({ secret, peerId: 'p', role: 'write', sessionId: 'elsewhere' })
    const result = await colloquy(['chat', 's1', '--url', `ws://127.0.0.1:${server.port}`, '--token', other])
    expect(result.err).toMatch(/^colloquy chat: token rejected \(403\)/m)
    expect(result.code).toBe(1)
  })

  it.each([
    [
      400,
      'invalid session id: 1-128 characters of A-Za-z0-9._:-',
      /session id refused \(400\): invalid session id/,
    ],
    [
      429,
      'too many connections from this address',
      /too many requests, refused by the server \(429\): too many/,
    ],
  ])('a refused upgrade with HTTP %i is said in words and stops both clients', async (status, body, said) => {
    const refuser = await refusingServer(status, body)
    try {
      for (const command of ['chat', 'agent']) {
        const result = await colloquy([command, 's1', '--url', refuser.url])
        expect(result.err).toMatch(said)
        expect(result.code).toBe(1)
      }
    } finally {
      await refuser.close()
    }
  })
})

describe('the history commands on a data path', () => {
  it('export and inspect on a path that does not exist say "no Colloquy data at PATH" and create nothing', async () => {
    const missing = path.join(tmp, 'no-such-dir')
    const exported = await colloquy(['export', 'my-session', '--data', missing])
    expect(exported.err).toBe(`colloquy: no Colloquy data at ${missing}\n`)
    expect(exported.code).toBe(1)
    const inspected = await colloquy(['inspect', '--data', missing])
    expect(inspected.err).toBe(`colloquy: no Colloquy data at ${missing}\n`)
    expect(inspected.code).toBe(1)
    expect(existsSync(missing)).toBe(false)
  })

  it('compact --all on a directory a running server holds says so and points to --url', async () => {
    const result = await colloquy(['compact', '--all', '--data', serverDir])
    expect(result.err).toContain(`${serverDir} is held by a running Colloquy server`)
    expect(result.err).toContain('--url http://HOST:PORT')
    expect(result.err).not.toContain('Database failed to open')
    expect(result.code).toBe(1)
  })

  it('replay --json | head -1 prints one line and ends quietly with exit 0 (EPIPE)', async () => {
    const child = spawn(
      'bash',
      [
        '-c',
        `set -o pipefail; "${process.execPath}" ${nodeScript('cli/colloquy.ts')
          .map((a) => `"${a}"`)
          .join(' ')} replay long --json --data "${offlineDir}" | head -1`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString()
    })
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('close', resolve)),
      30_000,
      'replay | head -1',
    )
    expect(err).toBe('')
    expect(out.trim().split('\n')).toHaveLength(1)
    expect(JSON.parse(out)).toMatchObject({ seq: 1, role: 'user' })
    expect(code).toBe(0)
  })
})

describe('the history commands through --url', () => {
  it('a dead --url says "cannot reach http://… (connection refused)"', async () => {
    const port = await deadPort()
    const result = await colloquy(['inspect', '--url', `http://127.0.0.1:${port}`])
    expect(result.err).toBe(`colloquy: cannot reach http://127.0.0.1:${port} (connection refused)\n`)
    expect(result.code).toBe(1)
  })

  it('a garbage token says "token rejected (401)"', async () => {
    const result = await colloquy([
      'export',
      's1',
      '--format',
      'json',
      '--url',
      `http://127.0.0.1:${server.port}`,
      '--token',
      'garbage',
    ])
    expect(result.err).toMatch(/^colloquy: token rejected \(401\): \S/)
    expect(result.code).toBe(1)
  })
})
