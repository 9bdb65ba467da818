// Stock y-websocket providers (1.5.4, 2.1.0 and 3.1.0 mixed) under load against the server process
// with its default flags: 20 people in one session, and 50 sessions at once. Seeded (SEED=n replays).

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as prng from 'lib0/prng'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { until } from '../helpers/wait.js'
import {
  connectNodeProvider,
  type NodeProvider,
  readFromServer,
  untilAll,
  whenAllSynced,
} from './node-providers.js'
import type { ProviderVersion } from './page/harness.js'

const VERSIONS: readonly ProviderVersion[] = ['v1', 'v2', 'v3']
const seed = Number(process.env.SEED ?? Date.now() % 1_000_000)
console.log(`real-client load seed: ${seed}`)

let dataDir: string
let server: ServerProcess
const providers: NodeProvider[] = []

function connect(room: string, index: number): NodeProvider {
  const provider = connectNodeProvider(server.url, room, VERSIONS[index % VERSIONS.length]!)
  provider.awareness.setLocalStateField('user', { name: `person-${index}`, color: '#3949ab' })
  providers.push(provider)
  return provider
}

/** Content and state vector: equal on two replicas only if they hold the same updates. */
function replica(doc: Y.Doc): string {
  return JSON.stringify({
    text: doc.getText('t').toString(),
    sv: [...Y.decodeStateVector(Y.encodeStateVector(doc))].sort(([a], [b]) => a - b),
  })
}

/** Offsets between tokens (`<…>`) in `text`: inserting there never splits a token, here or remotely. */
function boundaries(text: string): number[] {
  const offsets = [0]
  for (let i = text.indexOf('>'); i !== -1; i = text.indexOf('>', i + 1)) offsets.push(i + 1)
  return offsets
}

function insertToken(gen: prng.PRNG, doc: Y.Doc, token: string): void {
  const text = doc.getText('t')
  const at = boundaries(text.toString())
  text.insert(at[prng.int32(gen, 0, at.length - 1)]!, token)
}

function expectConnectedWithoutCloses(group: readonly NodeProvider[]): void {
  expect(group.filter((p) => !p.wsconnected).map((p) => p.version)).toEqual([])
  expect(group.flatMap((p) => p.closeCodes)).toEqual([])
}

describe('stock y-websocket providers under load, server defaults', () => {
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-real-clients-load-'))
    server = await startServerProcess(['--data', dataDir])
  })

  afterEach(() => {
    for (const provider of providers.splice(0)) provider.destroy()
  })

  afterAll(async () => {
    server?.child.kill('SIGKILL')
    await server?.exited
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
  })

  it('keeps 20 people of mixed releases in one session connected, present to each other and converged', async () => {
    const gen = prng.create(seed)
    // People arrive one after another, as they do: each newcomer is told who is there (and its
    // provider, like every stock one, sends those states back).
    const people: NodeProvider[] = []
    for (let i = 0; i < 20; i++) {
      people.push(connect('twenty', i))
      await whenAllSynced(people, 10_000, `person ${i} joined, everyone still connected`)
      await untilAll(
        people,
        (p) => p.awareness.getStates().size === people.length,
        10_000,
        `the ${people.length} present see each other`,
      )
    }
    expectConnectedWithoutCloses(people)

    const rounds = 10
    for (let round = 0; round < rounds; round++) {
      for (const [i, person] of people.entries()) insertToken(gen, person.doc, `<${i}.${round}>`)
      // Some rounds interleave with delivery, others pile up.
      if (prng.bool(gen)) await new Promise<void>((resolve) => setImmediate(resolve))
    }
    await untilAll(
      people,
      (p) => replica(p.doc) === replica(people[0]!.doc),
      30_000,
      `20 replicas converge (seed ${seed})`,
    )
    const text = people[0]!.doc.getText('t').toString()
    expect(text.match(/<\d+\.\d+>/g)?.length).toBe(people.length * rounds)
    for (let i = 0; i < people.length; i++) {
      for (let round = 0; round < rounds; round++) expect(text).toContain(`<${i}.${round}>`)
    }
    expect(await readFromServer(server.url, 'twenty', (doc) => doc.getText('t').toString(), text)).toBe(text)
    expectConnectedWithoutCloses(people)
    for (const person of people) expect(person.awareness.getStates().size).toBe(people.length)
  })

  it('serves 50 sessions at once: each writer reaches its reader and the store', async () => {
    const gen = prng.create(seed + 1)
    const sessions = Array.from({ length: 50 }, (_, i) => ({
      room: `fifty-${i}`,
      writer: connect(`fifty-${i}`, i),
      reader: connect(`fifty-${i}`, i + 1),
    }))
    await whenAllSynced(providers, 30_000, '100 providers on 50 sessions synced')
    for (let round = 0; round < 20; round++) {
      for (const [i, { writer }] of sessions.entries()) insertToken(gen, writer.doc, `<s${i}.${round}>`)
      if (prng.bool(gen)) await new Promise<void>((resolve) => setImmediate(resolve))
    }
    await until(
      () => sessions.every(({ writer, reader }) => replica(writer.doc) === replica(reader.doc)),
      30_000,
      `50 readers caught up (seed ${seed})`,
    )
    const stored = await Promise.all(
      sessions.map(({ room, writer }) =>
        readFromServer(
          server.url,
          room,
          (doc) => doc.getText('t').toString(),
          writer.doc.getText('t').toString(),
        ),
      ),
    )
    for (const [i, { writer }] of sessions.entries()) {
      expect(stored[i]).toBe(writer.doc.getText('t').toString())
      expect(stored[i]!.match(/<s\d+\.\d+>/g)?.length).toBe(20)
    }
    expectConnectedWithoutCloses(providers)
  })
})
