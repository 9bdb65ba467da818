// WebSocket close codes the server sends. The table with meanings is in PROTOCOL.md; which error
// code maps to which close code is decided in shared/errors.ts, the single source.

/**
 * Close codes, standard (1xxx) and ours (4xxx).
 *
 * @remarks
 * Ours follow the convention stock clients read (y-websocket 3.x, Hocuspocus): 4400–4499 mirror
 * HTTP 4xx, a decision reconnecting cannot change (y-websocket 3.x stops reconnecting and emits
 * `closed`); 4500–4599 mirror HTTP 5xx and 429, a condition that passes: reconnect with backoff.
 * 4401 and 4403 mean Unauthorized and Forbidden, as Hocuspocus' providers read them.
 */
export const CloseCode = {
  Normal: 1000,
  /** Server shutting down or session unloading: reconnect. */
  GoingAway: 1001,
  /**
   * Seen by a peer whose socket uWebSockets.js dropped without a close frame: a frame over the
   * maximum message size, or output over the backpressure limit. Never sent by us.
   */
  Abnormal: 1006,
  InternalError: 1011,
  /** The token expired during the session: refresh it (the client's token provider) and reconnect. */
  TokenExpired: 4301,
  /** A binary frame that does not decode as a protocol message; a bad awareness update. */
  MalformedMessage: 4400,
  /** No valid token (normally refused as HTTP 401 before the upgrade). */
  Unauthorized: 4401,
  /** The token does not allow this (normally refused as HTTP 403 before the upgrade). */
  Forbidden: 4403,
  /** A text frame: the protocol is binary only. */
  TextFrame: 4415,
  /** A sync message whose Yjs update or state vector does not decode. */
  InvalidUpdate: 4422,
  /** Too many messages queued while the session was loading: reconnect later. */
  TryAgainLater: 4503,
  /** The session could not be read from storage: reconnect later. */
  SessionLoadFailed: 4504,
  /** Storage is failing: the session refuses writes until it recovers; reconnect later. */
  StorageUnavailable: 4505,
  /** The write backlog is over its bound: new content is refused until the disk catches up. */
  Overloaded: 4506,
  /** A policy limit (update/byte rate, awareness size/rate/ids, connections): back off, then retry. */
  RateLimited: 4529,
  AwarenessLimit: 4530,
  TooManyConnections: 4531,
} as const

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode]

/** True for a close code reconnecting cannot fix (4400–4499), by the convention stock clients read. */
export function isPermanentCloseCode(code: number): boolean {
  return code >= 4400 && code <= 4499
}

/** True for a "try again later" close code (4500–4599). */
export function isTransientCloseCode(code: number): boolean {
  return code >= 4500 && code <= 4599
}
