// `colloquy agent <s1> <s2> …` as a real child process: one process serves several sessions over one
// multiplexed socket, says which sessions it joined and which the server refused, answers in each,
// and leaves cleanly on SIGTERM.

import { type ChildProcess, spawn } from 'node:child_process'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { mintToken } from '../../server/auth/tokens.js'
import { appendMessage, readMessages } from '../../shared/conversation/index.js'
import { nodeScript } from '../helpers/node-script.js'
import { startTestServer } from '../helpers/test-server.js'
import { until, withTimeout } from '../helpers/wait.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
const secret = 'a-test-secret-that-is-long-enough-for-the-cli'
const WAIT = 20_000
const cleanups: (() => Promise<void> | void)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** The agent command as a child; its stdout as parsed JSON lines. */
function agentProcess(args: readonly string[]): {
  child: ChildProcess
  lines: Record<string, unknown>[]
  err(): string
} {
  const child = spawn(process.execPath, [...nodeScript('cli/colloquy.ts'), 'agent', ...args], {
    cwd: ROOT,
    env: { ...process.env, COLLOQUY_URL: '', COLLOQUY_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: Record<string, unknown>[] = []
  let buffered = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString()
    for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
      lines.push(JSON.parse(buffered.slice(0, end)) as Record<string, unknown>)
      buffered = buffered.slice(end + 1)
    }
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString()
  })
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, lines, err: () => err }
}

describe('colloquy agent with several sessions', () => {
  it('serves every session it may join over one socket, reports the refused one, and leaves on SIGTERM', async () => {
    const server = await startTestServer({ secret })
    cleanups.push(() => server.close())
    const url = `ws://127.0.0.1:${server.port}`
    // One token for every session: it covers the sessions named cli-…, not the third.
    const token = await mintToken({
      secret,
      peerId: 'agent-cli',
      role: 'write',
      kind: 'agent',
      sessionPrefix: 'cli-',
    })
    const agent = agentProcess([
      'cli-a',
      'cli-b',
      'other-c',
      '--url',
      url,
      '--token',
      token,
      '--tokens',
      '3',
      '--delay-ms',
      '1',
    ])
    await until(
      () => agent.lines.filter((l) => l.event === 'joined' || l.event === 'refused').length === 3,
      WAIT,
      `every session settled (stderr: ${agent.err()})`,
    )
    const joined = agent.lines.filter((l) => l.event === 'joined').map((l) => l.session)
    const refused = agent.lines.filter((l) => l.event === 'refused')
    expect(joined.sort()).toEqual(['cli-a', 'cli-b'])
    expect(refused.map((l) => l.session)).toEqual(['other-c'])
    expect(String(refused[0]?.error)).toMatch(/token not valid for this session/)

    const device: SyncClient = createNodeSyncClient({
      url,
      sessionId: 'cli-a',
      token: () => mintToken({ secret, peerId: 'device', role: 'write', sessionId: 'cli-a' }),
    })
    cleanups.push(() => device.destroy())
    await withTimeout(device.whenSynced(), WAIT, 'device synced')
    appendMessage(device.doc, {
      role: 'user',
      author: { id: 'device:d', kind: 'device', name: 'D' },
      content: 'hello agent',
    })
    await until(
      () => readMessages(device.doc).some((m) => m.author.id === 'agent:demo' && m.status === 'complete'),
      WAIT,
      'the agent answered in cli-a',
    )
    expect(agent.lines.some((l) => l.event === 'state' && l.session === 'cli-a')).toBe(true)

    const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)))
    agent.child.kill('SIGTERM')
    expect(await withTimeout(exited, WAIT, 'exit')).toBe(0)
    expect(agent.lines.some((l) => l.event === 'leaving')).toBe(true)
  })
})
