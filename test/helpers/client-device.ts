// A device as a separate process, for offline/restart tests: it opens its LevelDB offline cache,
// makes some edits, and (online) waits until they are durable on the server or (offline) does not
// wait at all; then prints its state as one JSON line and exits on its own: if the client left a
// timer or a handle behind, the process would not exit and the test would time out.
//
// Run: node --import tsx test/helpers/client-device.ts '<DeviceTask as JSON>'

import * as Y from 'yjs'
import { createLeveldbCache, createNodeSyncClient } from '../../client/node.js'

/** What one run of the device does. */
export interface DeviceTask {
  readonly url: string
  readonly sessionId: string
  readonly cachePath: string
  /** `online`: wait for the server and for its acks; `offline`: edit and leave at once. */
  readonly mode: 'online' | 'offline'
  /** Appended to the `lines` array, one transaction each. */
  readonly lines: readonly string[]
  /** Inserted at the start of the `t` text. */
  readonly prefix?: string
}

/** What the device prints before it exits. */
export interface DeviceReport {
  readonly lines: string[]
  readonly text: string
  /** Base64 of the document's state vector. */
  readonly stateVector: string
  readonly hasLocalChanges: boolean
  readonly status: string
  /** What the offline cache held before this run's edits. */
  readonly linesLoaded: string[]
}

function bounded<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`device timed out: ${label}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function main(task: DeviceTask): Promise<DeviceReport> {
  const client = createNodeSyncClient({
    url: task.url,
    sessionId: task.sessionId,
    offlineCache: createLeveldbCache({ path: task.cachePath, name: task.sessionId }),
    backoff: { initialMs: 20, maxMs: 200 },
  })
  await bounded(client.whenLoaded(), 10_000, 'cache loaded')
  const doc = client.doc
  const lines = doc.getArray<string>('lines')
  const linesLoaded = lines.toArray()
  for (const line of task.lines) lines.push([line])
  if (task.prefix !== undefined) doc.getText('t').insert(0, task.prefix)
  if (task.mode === 'online') {
    await bounded(client.whenSynced(), 15_000, 'synced')
    await bounded(client.whenFlushed(), 15_000, 'flushed')
  }
  const report: DeviceReport = {
    lines: lines.toArray(),
    text: doc.getText('t').toString(),
    stateVector: Buffer.from(Y.encodeStateVector(doc)).toString('base64'),
    hasLocalChanges: client.hasLocalChanges,
    status: client.status,
    linesLoaded,
  }
  await client.destroy()
  return report
}

const argument = process.argv[2]
if (argument === undefined) {
  console.error('usage: client-device.ts <task JSON>')
  process.exitCode = 2
} else {
  main(JSON.parse(argument) as DeviceTask).then(
    (report) => {
      console.log(JSON.stringify(report))
    },
    (error: unknown) => {
      console.error(error)
      process.exitCode = 1
    },
  )
}
