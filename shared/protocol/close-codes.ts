// WebSocket close codes the server sends. The table with meanings is in PROTOCOL.md.

/** Close codes, standard (1xxx) and ours (4xxx). */
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
  /** A binary frame that does not decode as a protocol message. */
  MalformedMessage: 4400,
  /** No valid token (only seen over HTTP as 401 before the upgrade; listed for completeness). */
  Unauthorized: 4300,
  /** The token expired during the session: refresh it (the client's token provider) and reconnect. */
  TokenExpired: 4301,
  /** A policy limit (update/byte rate, awareness size/rate/ids, connections): back off, then retry. */
  RateLimited: 4429,
  AwarenessLimit: 4430,
  TooManyConnections: 4431,
  /** A text frame: the protocol is binary only. */
  TextFrame: 4401,
  /** A message type this server does not know. */
  UnknownMessageType: 4402,
  /** A sync message whose Yjs update or state vector does not decode. */
  InvalidUpdate: 4403,
  /** Too many messages queued while the session was loading: reconnect later. */
  TryAgainLater: 4503,
  /** The session could not be read from storage: reconnect later. */
  SessionLoadFailed: 4504,
  /** Storage is failing: the session refuses writes until it recovers; reconnect later. */
  StorageUnavailable: 4505,
} as const

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode]
