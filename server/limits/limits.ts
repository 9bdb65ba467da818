// The limits a server enforces, with their defaults. README.md and docs/operations.md list them.

/**
 * Per-connection, per-session and per-address limits. `0` disables any of them: a rate or its
 * burst (that bucket), a size or a count.
 */
export interface Limits {
  /** Sync updates a connection may send per second (sustained) and in a burst. */
  readonly updatesPerSecond: number
  readonly updatesBurst: number
  /** Update bytes a connection may send per second (sustained) and in a burst. */
  readonly updateBytesPerSecond: number
  readonly updateBytesBurst: number
  /** Largest awareness message, in bytes. */
  readonly maxAwarenessBytes: number
  /** Awareness messages a connection may send per second and in a burst. */
  readonly awarenessPerSecond: number
  readonly awarenessBurst: number
  /** Awareness client ids one connection may announce. */
  readonly maxAwarenessClientsPerConnection: number
  /** Connections one session may have at once. */
  readonly maxConnectionsPerSession: number
  /** Connection attempts one remote address may make per window. */
  readonly maxConnectionAttemptsPerIp: number
  readonly connectionAttemptWindowMs: number
  /** Sessions held in memory; past it the least recently used idle sessions are unloaded first. */
  readonly maxSessionsInMemory: number
  /** Stored bytes of one session (log + checkpoint) past which its writes are refused. */
  readonly sessionQuotaBytes: number
}

const MiB = 1024 * 1024

export const DEFAULT_LIMITS: Limits = {
  updatesPerSecond: 1_000,
  updatesBurst: 2_000,
  updateBytesPerSecond: 4 * MiB,
  updateBytesBurst: 32 * MiB,
  maxAwarenessBytes: 64 * 1024,
  awarenessPerSecond: 100,
  awarenessBurst: 300,
  maxAwarenessClientsPerConnection: 8,
  maxConnectionsPerSession: 1_000,
  maxConnectionAttemptsPerIp: 1_000,
  connectionAttemptWindowMs: 10_000,
  maxSessionsInMemory: 10_000,
  sessionQuotaBytes: 256 * MiB,
}
