// The server as an operator runs it: a child process that refuses the uWS fallback, and that on
// SIGTERM flushes, closes sockets with 1001 and exits 0.

import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isNativeUws, loadNativeUws } from '../../server/transport/uws.js'
import { nodeScript } from '../helpers/node-script.js'
import { startServerProcess } from '../helpers/server-process.js'
import { withTimeout } from '../helpers/wait.js'
import { connectWsPeer } from '../helpers/ws-peer.js'

let dataDir: string
beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-proc-'))
})
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

describe('uWebSockets.js', () => {
  it('loads its native binary, not the pure-JS fallback', () => {
    const uws = loadNativeUws()
    expect(isNativeUws(uws)).toBe(true)
    // The binary the package picks for this Node: the addon file must be in require's cache.
    const require = createRequire(import.meta.url)
    const binary = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`
    const loaded = Object.keys(require.cache).filter((file) => file.endsWith(binary))
    expect(loaded.length).toBe(1)
  })

  it('is refused by the server when only the fallback is available', async () => {
    const child = spawn(
      process.execPath,
      [...nodeScript('server/main.ts'), 'serve', '--port', '0', '--data', dataDir],
      { env: { ...process.env, UWS_USE_FALLBACK: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode))),
      20_000,
      'server exits',
    )
    expect(code).toBe(1)
    expect(output).toContain('native binary did not load')
    expect(output).not.toContain('colloquy listening')
  })
})

describe('graceful shutdown', () => {
  it('on SIGTERM flushes acknowledged work, closes sockets with 1001 and exits 0', async () => {
    const server = await startServerProcess(['--data', dataDir, '--log-level', 'info'])
    const client = await connectWsPeer(server.url, 'bye')
    await client.whenSynced(10_000)
    client.peer.doc.getText('t').insert(0, 'written just before shutdown')
    const counter = client.peer.requestAck()
    await client.peer.whenAcked(counter)
    // Keep writing while the signal arrives: whatever is acknowledged must survive.
    const lastIndexOfCounter = new Map<number, number>()
    for (let i = 0; i < 300; i++) {
      client.peer.doc.getMap('m').set(`k${i}`, i)
      lastIndexOfCounter.set(client.peer.requestAck(), i)
      if (i === 150) server.child.kill('SIGTERM')
    }
    const [closeCode, exit] = await Promise.all([
      withTimeout(client.closed, 10_000, 'socket closed'),
      withTimeout(server.exited, 10_000, 'server exited'),
    ])
    expect(closeCode).toBe(1001)
    expect(exit.code).toBe(0)

    const again = await startServerProcess(['--data', dataDir, '--log-level', 'info'])
    try {
      const reader = await connectWsPeer(again.url, 'bye')
      await reader.whenSynced(10_000)
      expect(reader.peer.doc.getText('t').toString()).toBe('written just before shutdown')
      const acked = lastIndexOfCounter.get(Math.max(...client.peer.acks)) ?? -1
      for (let i = 0; i <= acked; i++) expect(reader.peer.doc.getMap('m').get(`k${i}`)).toBe(i)
      reader.close()
    } finally {
      again.child.kill('SIGKILL')
      await again.exited
    }
  })
})

describe('a port already in use', () => {
  // Regression (issue #13, item 4): uWS listens with SO_REUSEPORT by default, so a second server
  // on a taken port started and the kernel split the connections between two stores.
  it('is refused by a second server with a clear message and exit code 1, the first keeps serving', async () => {
    // The kernel never shares a port it chose itself (bind to 0), so the first server gets a
    // named one: a free port the OS picks, released just before.
    const port = await freePort()
    const first = await startServerProcess(['--data', dataDir, '--log-level', 'info', '--port', String(port)])
    const otherData = await mkdtemp(path.join(os.tmpdir(), 'colloquy-proc-second-'))
    let child: ReturnType<typeof spawn> | undefined
    try {
      child = spawn(
        process.execPath,
        [...nodeScript('server/main.ts'), 'serve', '--port', String(first.port), '--data', otherData],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let output = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
      const second = child
      const code = await withTimeout(
        new Promise<number | null>((resolve) => second.once('exit', (exitCode) => resolve(exitCode))),
        20_000,
        'second server exits',
      )
      expect(code).toBe(1)
      expect(output).toContain(`cannot listen on 127.0.0.1:${first.port}: the port is already in use`)
      expect(output).not.toContain('colloquy listening')
      // Every connection still lands on the first server.
      for (let i = 0; i < 4; i++) {
        const response = await fetch(`http://127.0.0.1:${first.port}/readyz`)
        expect(response.status).toBe(200)
      }
      expect(first.child.exitCode).toBeNull()
    } finally {
      if (child?.exitCode === null) child.kill('SIGKILL')
      first.child.kill('SIGKILL')
      await first.exited
      await rm(otherData, { recursive: true, force: true })
    }
  })
})

/** A port the OS reports free on 127.0.0.1 (bound to 0, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })
}
