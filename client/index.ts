// The client's isomorphic entry point (browsers and Node): the sync client, the multiplexed
// connection (many sessions on one socket), statuses, backoff and the offline-cache interface. Node-only extras are in ./node.ts; the IndexedDB cache is in
// ./offline/indexeddb-cache.ts (import it where IndexedDB exists).

export { type AckTracker, createAckTracker } from './ack-tracker.js'
export {
  type BackoffOptions,
  backoffDelay,
  DEFAULT_BACKOFF,
  maxBackoffDelay,
  type ResolvedBackoff,
  resolveBackoff,
} from './backoff.js'
export {
  type Connection,
  type ConnectionEvents,
  type ConnectionOptions,
  createConnection,
  MULTIPLEX_PATH,
  multiplexUrl,
  type OpenOptions,
  type SessionHandle,
  type TokenSource,
} from './connection.js'
export {
  createHistoryClient,
  type HistoryAt,
  type HistoryClient,
  type HistoryClientOptions,
  HistoryError,
  type HistoryLogEntry,
  type HistoryState,
  type ListedSession,
} from './history.js'
export type { OfflineCache } from './offline-cache.js'
export { AckMode } from './session-core.js'
export { type CloseVerdict, type ConnectionStatus, classifyClose, type StatusEvent } from './status.js'
export {
  connectionUrl,
  createSyncClient,
  type SyncClient,
  type SyncClientEvents,
  type SyncClientOptions,
} from './sync-client.js'
export type {
  CloseEventLike,
  MessageEventLike,
  WebSocketLike,
  WebSocketLikeConstructor,
} from './websocket.js'
