// The terminal client, driven as a person would: `colloquy chat` runs in tmux, keys are sent with
// send-keys and the screen is read with capture-pane, against a real server and a demo agent.

import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type Agent, createDemoModel, joinSession } from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { readMessages } from '../../shared/conversation/index.js'
import { nodeScript } from '../helpers/node-script.js'
import { until } from '../helpers/wait.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
let dataDir: string
let server: SyncServer
let agent: Agent | undefined
let observer: SyncClient | undefined
const tmuxSession = `colloquy-chat-${process.pid}`

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, { encoding: 'utf8' })
}

function screen(): string {
  return tmux('capture-pane', '-p', '-t', tmuxSession)
}

function isRunning(): boolean {
  try {
    tmux('has-session', '-t', tmuxSession)
    return true
  } catch {
    return false
  }
}

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-cli-'))
  server = await startSyncServer({ config: { ...DEFAULT_CONFIG, port: 0, dataDir, logLevel: 'silent' } })
})

afterEach(async () => {
  if (isRunning()) tmux('kill-session', '-t', tmuxSession)
  await agent?.leave()
  await observer?.destroy()
  await server.close()
  await rm(dataDir, { recursive: true, force: true })
})

function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'])
    return true
  } catch {
    return false
  }
}

// tmux is a system package: .ci/run installs it; on a machine without it this test is skipped.
describe.skipIf(!hasTmux())('colloquy chat in a terminal', () => {
  it('shows the conversation live, sends what is typed, cancels, and quits', async () => {
    const url = `ws://127.0.0.1:${server.port}`
    agent = await joinSession({
      url,
      sessionId: 'tty',
      name: 'demo',
      model: createDemoModel({ tokens: 400, delayMs: 15, token: (i) => (i === 0 ? 'Sure. ' : `w${i} `) }),
    })
    observer = createNodeSyncClient({ url, sessionId: 'tty' })
    await observer.whenSynced()

    tmux(
      'new-session',
      '-d',
      '-s',
      tmuxSession,
      '-x',
      '120',
      '-y',
      '30',
      '-c',
      ROOT,
      [process.execPath, ...nodeScript('cli/colloquy.ts'), 'chat', 'tty', '--url', url, '--name', 'alice']
        .map((arg) => `'${arg}'`)
        .join(' '),
    )
    await until(() => screen().includes('connected'), 20_000, 'chat connected')
    expect(screen()).toContain('demo (agent: idle)')

    tmux('send-keys', '-t', tmuxSession, 'hello agent', 'Enter')
    await until(
      () => readMessages(observer!.doc).some((m) => m.content === 'hello agent'),
      10_000,
      'message sent',
    )
    const sent = readMessages(observer.doc).find((m) => m.content === 'hello agent')!
    expect(sent.author).toEqual({ id: 'device:alice', kind: 'device', name: 'alice' })
    expect(sent.role).toBe('user')
    // The reply streams into the terminal.
    await until(() => screen().includes('demo (agent): Sure. w1 w2'), 10_000, 'reply shown')

    tmux('send-keys', '-t', tmuxSession, '/cancel', 'Enter')
    await until(() => screen().includes('[cancelled]'), 10_000, 'cancel shown')
    const reply = readMessages(agent.doc).find((m) => m.metadata.replyTo === sent.id)
    expect(reply?.status).toBe('cancelled')

    tmux('send-keys', '-t', tmuxSession, '/quit', 'Enter')
    await until(() => !isRunning(), 10_000, 'chat exited')
  })
})
