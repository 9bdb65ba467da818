// Peer launcher: Hocuspocus 3 with its Database extension storing each document's state in
// LevelDB (classic-level), started as a child by bench/lib/targets.ts. Prints one JSON line
// `{"msg":"peer listening","port":N}`. Usage: hocuspocus-server.ts --data <dir> [--port 0]

import { parseArgs } from 'node:util'
import { Database } from '@hocuspocus/extension-database'
import { Server } from '@hocuspocus/server'
import { ClassicLevel } from 'classic-level'

const { values } = parseArgs({
  options: { data: { type: 'string' }, port: { type: 'string', default: '0' } },
})
if (values.data === undefined) throw new Error('--data <dir> is required')

const db = new ClassicLevel<string, Uint8Array>(values.data, { valueEncoding: 'view' })
await db.open()

// Hocuspocus' documented persistence: fetch the stored state on load, store the whole state
// (Y.encodeStateAsUpdate) after its debounce (2 s, at most 10 s). LevelDB's default put: no fsync,
// as with the SQLite extension's defaults.
const server = new Server({
  port: Number(values.port),
  address: '127.0.0.1',
  quiet: true,
  extensions: [
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
