// Node entry point: everything in ./index.ts plus the LevelDB offline cache, and a sync client and a
// multiplexed connection whose WebSocket defaults to the `ws` package (Node 20 has no global one).

import WebSocket from 'ws'
import { type Connection, type ConnectionOptions, createConnection } from './connection.js'
import { createSyncClient, type SyncClient, type SyncClientOptions } from './sync-client.js'

export * from './index.js'
export { createLeveldbCache, type LeveldbCacheOptions } from './offline/leveldb-cache.js'

/** {@link createSyncClient} with `WebSocket` defaulting to the `ws` package. */
export function createNodeSyncClient(options: SyncClientOptions): SyncClient {
  return createSyncClient({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}

/** {@link createConnection} with `WebSocket` defaulting to the `ws` package. */
export function createNodeConnection(options: ConnectionOptions): Connection {
  return createConnection({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}
