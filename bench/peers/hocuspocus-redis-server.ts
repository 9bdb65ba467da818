// Peer launcher for the cluster bench: one Hocuspocus 3 node of a scale-out, with
// @hocuspocus/extension-redis relaying updates and awareness between nodes over a Redis server
// (started by bench/cluster/run.ts) and the Database extension on LevelDB as in the single-node
// rows (each node its own LevelDB dir; Redis' lock makes one node store a document at a time).
// Prints one JSON line `{"msg":"peer listening","port":N}`.
// Usage: hocuspocus-redis-server.ts --data <dir> --redis-port <port> --name <id> [--port 0]

import { parseArgs } from 'node:util'
import { Database } from '@hocuspocus/extension-database'
import { Redis } from '@hocuspocus/extension-redis'
import { Server } from '@hocuspocus/server'
import { ClassicLevel } from 'classic-level'

const { values } = parseArgs({
  options: {
    data: { type: 'string' },
    port: { type: 'string', default: '0' },
    'redis-port': { type: 'string' },
    name: { type: 'string', default: 'node' },
  },
})
if (values.data === undefined) throw new Error('--data <dir> is required')
if (values['redis-port'] === undefined) throw new Error('--redis-port <port> is required')

const db = new ClassicLevel<string, Uint8Array>(values.data, { valueEncoding: 'view' })
await db.open()

const server = new Server({
  port: Number(values.port),
  address: '127.0.0.1',
  quiet: true,
  extensions: [
    // The extension's documented set-up: Redis first (higher priority), then the database.
    new Redis({ host: '127.0.0.1', port: Number(values['redis-port']), identifier: values.name }),
    new Database({
      fetch: async ({ documentName }) => (await db.get(documentName)) ?? null,
      store: async ({ documentName, state }) => {
        await db.put(documentName, state)
      },
    }),
  ],
})

await server.listen()
process.stdout.write(`${JSON.stringify({ msg: 'peer listening', port: server.address.port })}\n`)
