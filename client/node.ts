// Node entry point: everything in ./index.ts plus the LevelDB offline cache and a sync client whose
// WebSocket defaults to the `ws` package (Node 20 has no global WebSocket).

import WebSocket from 'ws'
import { createSyncClient, type SyncClient, type SyncClientOptions } from './sync-client.js'

export * from './index.js'
export { createLeveldbCache, type LeveldbCacheOptions } from './offline/leveldb-cache.js'

/** {@link createSyncClient} with `WebSocket` defaulting to the `ws` package. */
export function createNodeSyncClient(options: SyncClientOptions): SyncClient {
  return createSyncClient({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}
