// Import of classic y-leveldb data: the classic y-websocket server (1.5.4, YPERSISTENCE) is driven
// by stock y-websocket providers (in their own process), then stopped; its directory is imported and every document must
// be identical in Colloquy (content and state vector).

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { createInlineMerger } from '../../server/compaction/merge.js'
import { readStateAt } from '../../server/history/state.js'
import { importYLeveldbDirectory } from '../../server/history/yleveldb-import.js'
import { openLeveldbStore } from '../../server/persistence/leveldb-store.js'
import { withTimeout } from '../helpers/wait.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
let tmp: string

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'colloquy-import-yleveldb-'))
})

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

function startClassicServer(
  persistenceDir: string,
): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  const child = spawn(process.execPath, [path.join(HERE, '../helpers/import-classic-server.cjs')], {
    env: { ...process.env, YPERSISTENCE: persistenceDir },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines: string[] = []
  let buffered = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString()
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    lines.push(...parts)
  })
  return withTimeout(
    new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`classic server exited early (${code})`)))
      const check = setInterval(() => {
        const line = lines.find((l) => l.startsWith('{"port"'))
        if (line === undefined) return
        clearInterval(check)
        resolve({ child, port: (JSON.parse(line) as { port: number }).port, lines })
      }, 5)
    }),
    15_000,
    'classic server start',
  )
}

function snapshot(doc: Y.Doc) {
  return {
    text: doc.getText('t').toString(),
    map: Object.entries(doc.getMap('m').toJSON()).sort(),
    list: doc.getArray('a').toJSON(),
    stateVector: [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort((a, b) => a[0] - b[0]),
  }
}

describe('import of y-leveldb data written by the classic server', () => {
  it('gives identical documents, one session per document', async () => {
    const classicDir = path.join(tmp, 'classic')
    const classic = await startClassicServer(classicDir)
    const names = ['doc-a', 'doc-b', 'notes.2025']
    const writers = new Map<string, Y.Doc>()
    const clients = spawn(
      process.execPath,
      [path.join(HERE, '../helpers/import-classic-clients.mjs'), String(classic.port), ...names],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    let output = ''
    clients.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const code = await withTimeout(
      new Promise((resolve) => clients.once('exit', resolve)),
      30_000,
      'stock clients',
    )
    expect(code).toBe(0)
    const states = JSON.parse(output) as Record<string, string>
    for (const name of names) {
      const doc = new Y.Doc()
      Y.applyUpdate(doc, Buffer.from(states[name]!, 'base64'))
      writers.set(name, doc)
    }
    classic.child.stdin?.write('flush\n')
    await withTimeout(
      new Promise((resolve) => classic.child.once('exit', resolve)),
      15_000,
      'classic server flush',
    )
    expect(classic.lines).toContain('flushed')

    const store = await openLeveldbStore({ location: path.join(tmp, 'colloquy') })
    try {
      const merger = createInlineMerger()
      const results = await importYLeveldbDirectory({ store, merger }, classicDir)
      expect(results.map((r) => [r.docName, r.error])).toEqual(names.map((name) => [name, undefined]).sort())
      for (const name of names) {
        const state = await readStateAt({ store, merger }, name, { latest: true })
        const imported = new Y.Doc()
        Y.applyUpdate(imported, state.update)
        expect(snapshot(imported), name).toEqual(snapshot(writers.get(name)!))
      }
      // Importing again refuses every document (the sessions exist) and changes nothing.
      const again = await importYLeveldbDirectory({ store, merger }, classicDir)
      expect(again.every((r) => r.error?.code === 'session-exists')).toBe(true)
    } finally {
      await store.close()
    }
  })
})
