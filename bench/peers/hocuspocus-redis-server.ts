// Peer launcher for the cluster bench: one Hocuspocus 3 node of a scale-out, with
// @hocuspocus/extension-redis relaying updates and awareness between nodes over a Redis server
// (started by bench/cluster/run.ts), and the Database extension as in the single-node rows, on a
// database the nodes share: that same Redis (append-only file, fsync every second). A node's own
// LevelDB would die with the node; a scale-out stores where every node can read.
// Prints one JSON line `{"msg":"peer listening","port":N}`.
// Usage: hocuspocus-redis-server.ts --redis-port <port> --name <id> [--port 0]

import { parseArgs } from 'node:util'
import { Database } from '@hocuspocus/extension-database'
import { Redis } from '@hocuspocus/extension-redis'
import { Server } from '@hocuspocus/server'
// The Redis client extension-redis itself uses (its dependency).
import { Redis as RedisClient } from 'ioredis'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'redis-port': { type: 'string' },
    name: { type: 'string', default: 'node' },
  },
})
if (values['redis-port'] === undefined) throw new Error('--redis-port <port> is required')

const db = new RedisClient({ host: '127.0.0.1', port: Number(values['redis-port']) })

const server = new Server({
  port: Number(values.port),
  address: '127.0.0.1',
  quiet: true,
  extensions: [
    // The extension's documented set-up: Redis first (higher priority), then the database.
    new Redis({ host: '127.0.0.1', port: Number(values['redis-port']), identifier: values.name }),
    new Database({
      fetch: async ({ documentName }) => {
        const stored = await db.getBuffer(`doc:${documentName}`)
        return stored === null ? null : new Uint8Array(stored)
      },
      store: async ({ documentName, state }) => {
        await db.set(`doc:${documentName}`, Buffer.from(state))
      },
    }),
  ],
})

await server.listen()
process.stdout.write(`${JSON.stringify({ msg: 'peer listening', port: server.address.port })}\n`)
