// The history commands run offline on a LevelDB directory: export (JSON and binary), import,
// fork, replay turn by turn, compact and inspect, called as the CLI dispatcher calls them.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { run as compact } from '../../cli/commands/compact.js'
import { run as exportCommand } from '../../cli/commands/export.js'
import { run as fork } from '../../cli/commands/fork.js'
import { run as importCommand } from '../../cli/commands/import.js'
import { run as inspect } from '../../cli/commands/inspect.js'
import { run as replay } from '../../cli/commands/replay.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import { appendMessage, openStreamingWriter } from '../../shared/conversation/index.js'

let tmp: string
let dataDir: string

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'colloquy-history-cli-'))
  dataDir = path.join(tmp, 'data')
  // A session written as a server would store it: one log entry per update, seqs 1…n.
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  const user = { id: 'u1', kind: 'device' as const, name: 'Ada' }
  const agent = { id: 'a1', kind: 'agent' as const, name: 'Bot' }
  appendMessage(doc, { id: 'q1', role: 'user', author: user, content: 'Hi?', createdAt: 1 })
  const writer = openStreamingWriter(doc, { author: agent, role: 'assistant', coalesceMs: 0 })
  writer.write('Hello')
  writer.write(', Ada.')
  writer.end()
  appendMessage(doc, { id: 'q2', role: 'user', author: user, content: 'Bye.', createdAt: 2 })
  const store = await openLeveldbStore({ location: dataDir })
  await store.append(updates.map((update, i) => ({ sessionId: 'chat', time: 1_000 + i, update })))
  await store.close()
})

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

async function capture(action: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
    return true
  })
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk)
    return true
  })
  try {
    return { code: await action(), out, err }
  } finally {
    stdout.mockRestore()
    stderr.mockRestore()
  }
}

describe('history commands offline', () => {
  it('replays the conversation turn by turn', async () => {
    const { code, out } = await capture(() => replay(['chat', '--data', dataDir], {}))
    expect(code).toBe(0)
    const lines = out.trim().split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/Ada \(user\): Hi\?$/)
    expect(lines[1]).toMatch(/Bot \(assistant\): Hello, Ada\.$/)
    expect(lines[2]).toMatch(/Ada \(user\): Bye\.$/)
  })

  it('exports JSON, imports it as a new session and exports the same conversation', async () => {
    const file = path.join(tmp, 'chat.json')
    expect(
      (await capture(() => exportCommand(['chat', '--format', 'json', '--out', file, '--data', dataDir], {})))
        .code,
    ).toBe(0)
    const exported = JSON.parse(await readFile(file, 'utf8'))
    expect(exported.messages.map((m: { content: string }) => m.content)).toEqual([
      'Hi?',
      'Hello, Ada.',
      'Bye.',
    ])
    expect((await capture(() => importCommand(['copy', file, '--data', dataDir], {}))).code).toBe(0)
    const again = await capture(() => exportCommand(['copy', '--format', 'json', '--data', dataDir], {}))
    expect(JSON.parse(again.out).messages).toEqual(exported.messages)
    const refused = await capture(() => importCommand(['copy', file, '--data', dataDir], {}))
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(/already exists/)
  })

  it('forks at a seq, compacts and inspects', async () => {
    expect((await capture(() => fork(['chat', 'branch', '--seq', '1', '--data', dataDir], {}))).code).toBe(0)
    const branch = await capture(() => exportCommand(['branch', '--format', 'json', '--data', dataDir], {}))
    expect(JSON.parse(branch.out).messages.map((m: { id: string }) => m.id)).toEqual(['q1'])
    const compacted = await capture(() => compact(['chat', '--data', dataDir], {}))
    expect(JSON.parse(compacted.out)).toMatchObject({ sessionId: 'chat', baseSeq: 0 })
    const inspected = await capture(() => inspect(['chat', '--data', dataDir], {}))
    const meta = JSON.parse(inspected.out)
    expect(meta.checkpointSeq).toBe(meta.lastSeq)
    expect(meta.checkpoints).toHaveLength(1)
    const list = await capture(() => inspect(['--data', dataDir], {}))
    expect(
      list.out
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).sessionId),
    ).toEqual(['branch', 'chat', 'copy'])
    expect((await capture(() => exportCommand(['chat', '--bogus', '--data', dataDir], {}))).code).toBe(2)
  })
})
