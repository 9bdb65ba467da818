// Server configuration: defaults, command-line flags and environment variables, parsed by a pure
// function. main.ts is the only caller that passes the real argv and env.

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { secretWeakness } from './auth/secret-strength.js'
import { parseAddressRange } from './http/client-address.js'
import { DEFAULT_LIMITS, type Limits } from './limits/limits.js'
import { parseAutoTurnRules } from './turns/auto-turns.js'
import { parsePoolSpecs } from './turns/pool-spec.js'

/** Everything the server can be told at start; the limits' fields are documented on {@link Limits}. */
export interface ServerConfig extends Limits {
  readonly host: string
  /** 0 lets the OS choose (tests). */
  readonly port: number
  /** The LevelDB directory (the embedded default store). */
  readonly dataDir: string
  /** `leveldb` (durable, the default) or `memory` (nothing survives a restart). */
  readonly store: 'leveldb' | 'memory'
  /** fsync every group commit. Off only for benchmarks that measure what durability costs. */
  readonly fsync: boolean
  readonly logLevel: string
  /** How long a group commit waits for more updates after the first when a peer waits for an ack (ms). */
  readonly commitDelayMs: number
  /** The same when no peer waits for an ack (ms; at least commitDelayMs): fewer, larger batches. */
  readonly lazyCommitDelayMs: number
  /** How long a session without connections stays in memory (ms). */
  readonly idleUnloadMs: number
  /**
   * The time one turn of the event loop spends on cold work (session loads' ends, the server's own
   * document changes) before the sockets are read again (ms; 0: run it at once). server/session/cold-work.ts.
   */
  readonly coldWorkBudgetMs: number
  /**
   * How long an agent must be gone from presence (and its claim expired) before the server marks
   * its `streaming` replies interrupted (ms; 0: leave it to the agents of the session).
   */
  readonly replyGraceMs: number
  /** Largest WebSocket message accepted; larger ones close the connection (1009) before buffering. */
  readonly maxMessageBytes: number
  /** Bytes a slow reader may have buffered before the server closes it (it reconnects and catches up). */
  readonly maxBackpressureBytes: number
  /** Bytes waiting for the disk above which updates are refused (retryable close). */
  readonly maxQueuedWriteBytes: number
  /** Frames a connection may send before its session has loaded. */
  readonly maxLoadingQueueMessages: number
  /** Bytes a connection may send before its session has loaded. */
  readonly maxLoadingQueueBytes: number
  /** Background compaction on/off (`colloquy compact` and POST …/compact work either way). */
  readonly compaction: boolean
  /**
   * Checkpoint a loaded session from its in-memory document (up to 20,000 structs) instead of
   * replaying its log in the worker.
   */
  readonly compactFromMemory: boolean
  /** How often sessions with new writes are checked against the compaction policy (ms). */
  readonly compactIntervalMs: number
  /** Never compact fewer updates than this since the latest checkpoint. */
  readonly compactMinUpdates: number
  /** Always compact once this many updates follow the latest checkpoint. */
  readonly compactMaxUpdates: number
  /** A session compacts at most once per this many ms unless 5 × compactMaxUpdates wait (0: no spacing). */
  readonly compactMinIntervalMs: number
  /** Retention: every update younger than this stays replayable (ms). docs/history.md. */
  readonly retainLogMs: number
  /** Retention: coarse checkpoints younger than this are kept (ms). */
  readonly retainCheckpointsMs: number
  /** Retention: at most one coarse checkpoint per interval of this length (ms). */
  readonly checkpointSpacingMs: number
  /** Largest HTTP request body (imports) accepted. */
  readonly maxHttpBodyBytes: number
  /** The built web app served at `/app/` (`npm run build:web` writes it). */
  readonly webDir: string
  /**
   * HS256 secret for access tokens. Without one the server is anonymous and listens on loopback
   * only (anything else is refused unless `insecure`).
   */
  readonly secret?: string
  /** A file holding the secret (one line); an alternative to `secret` that `ps` does not show. */
  readonly secretFile?: string
  /** Allow binding a non-loopback address without a secret (anonymous access for everyone). */
  readonly insecure: boolean
  /**
   * Origins (`scheme://host[:port]`) allowed on WebSocket upgrades and HTTP requests besides the
   * server's own; `*` allows any. Unset: only the server's own origin (and requests without an
   * `Origin`) in anonymous mode, any origin with a secret.
   */
  readonly allowedOrigins?: readonly string[]
  /**
   * Host names the `Host` header may carry besides the listen address and its loopback forms
   * (DNS-rebinding protection); `*` allows any. Unset: checked in anonymous mode only.
   */
  readonly allowedHosts?: readonly string[]
  /** Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client; empty: none trusted. */
  readonly trustProxy: readonly string[]
  /** Longest token lifetime accepted: `exp` further than this from now is refused (s; 0: no cap). */
  readonly maxTokenLifetimeS: number
  /** Bearer token `/metrics` requires; unset: open in anonymous mode, an all-sessions admin token otherwise. */
  readonly metricsToken?: string
  /** HTTP request bodies (imports) read at once; more are refused with 429 (0: no cap). */
  readonly maxConcurrentUploads: number
  /**
   * Documents one Hocuspocus socket (`/hocuspocus`) may have open or authenticating at once; one more
   * is refused with a permission-denied message (reason `4531 too many documents on this socket`).
   * 0: no cap.
   */
  readonly maxDocumentsPerSocket: number
  /**
   * Documents one Hocuspocus socket may open per second, sustained (the burst is
   * `maxDocumentsPerSocket`, or 1,000 without a cap); past it an open is refused with a
   * permission-denied message (reason `4529 …`). 0: no limit.
   */
  readonly documentOpensPerSecond: number
  /** Agent pools, `name:concurrency[:maxQueued[:maxQueuedPerTenant]]` each (docs/agents.md); none: no pool. */
  readonly turnPools: readonly string[]
  /** A turn's lease length (ms); workers renew every third of it. */
  readonly turnLeaseMs: number
  /** Claims a turn gets before a lost lease fails it for good. */
  readonly turnMaxAttempts: number
  /** A turn queued this long is past the starvation guard (ms; 0: no guard). */
  readonly turnStarvationMs: number
  /** At most 1 in this many dispatches of a pool goes to the oldest turn past the guard. */
  readonly turnStarvationShare: number
  /** Ended turns are kept this long, so creating one again stays a no-op (ms; 0: forever). */
  readonly turnRetentionMs: number
  /** How often queue positions are rewritten into the sessions (ms; 0: never). */
  readonly turnPositionRefreshMs: number
  /** `pool=sessionPrefix` rules: a turn for every user message a device adds to a matching session. */
  readonly turnAuto: readonly string[]
  /**
   * NATS URLs of a JetStream cluster: set, the node joins a Colloquy cluster and persists there
   * (docs/cluster.md) instead of in `dataDir`'s LevelDB; `dataDir` then holds its outbox only.
   */
  readonly nats?: readonly string[]
  /** This node's id in a cluster (default `<hostname>:<port>`). */
  readonly nodeId?: string
  /** Replicas of the JetStream stream, buckets and object stores (3 for a 3-node cluster). */
  readonly natsReplicas: number
  /**
   * The nats-servers run with `sync_interval: always` (2.10+), so JetStream's copy is fsync'd
   * before it acks: only changes what `/readyz` and the durability metric report.
   */
  readonly natsSyncAlways: boolean
  /** How long the outbox keeps an update JetStream acked (ms; covers its lazy fsync). */
  readonly outboxRetainMs: number
}

const MiB = 1024 * 1024

export const DEFAULT_CONFIG: ServerConfig = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: './data',
  store: 'leveldb',
  fsync: true,
  logLevel: 'info',
  commitDelayMs: 2,
  lazyCommitDelayMs: 100,
  idleUnloadMs: 30_000,
  coldWorkBudgetMs: 2,
  replyGraceMs: 10_000,
  maxMessageBytes: 16 * MiB,
  maxBackpressureBytes: 16 * MiB,
  maxQueuedWriteBytes: 256 * MiB,
  maxLoadingQueueMessages: 1_000,
  maxLoadingQueueBytes: 32 * MiB,
  compaction: true,
  compactFromMemory: true,
  compactIntervalMs: 1_000,
  compactMinUpdates: 2_000,
  compactMaxUpdates: 10_000,
  compactMinIntervalMs: 10_000,
  retainLogMs: 7 * 24 * 3_600_000,
  retainCheckpointsMs: 90 * 24 * 3_600_000,
  checkpointSpacingMs: 3_600_000,
  maxHttpBodyBytes: 64 * MiB,
  webDir: './dist/web',
  insecure: false,
  trustProxy: [],
  maxTokenLifetimeS: 30 * 24 * 3_600,
  maxConcurrentUploads: 4,
  maxDocumentsPerSocket: 1_000,
  documentOpensPerSecond: 100,
  turnPools: [],
  turnLeaseMs: 30_000,
  turnMaxAttempts: 3,
  turnStarvationMs: 30_000,
  turnStarvationShare: 10,
  turnRetentionMs: 24 * 3_600_000,
  turnPositionRefreshMs: 500,
  turnAuto: [],
  natsReplicas: 3,
  natsSyncAlways: false,
  outboxRetainMs: 150_000,
  ...DEFAULT_LIMITS,
}

/** A configuration value that cannot be used; main.ts prints it and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

type Env = Readonly<Record<string, string | undefined>>

/** Flag name, environment variable and kind of every option. */
const OPTIONS = {
  host: { flag: 'host', env: 'HOST', kind: 'string' },
  port: { flag: 'port', env: 'PORT', kind: 'port' },
  dataDir: { flag: 'data', env: 'DATA_DIR', kind: 'string' },
  store: { flag: 'store', env: 'STORE', kind: 'store' },
  fsync: { flag: 'fsync', env: 'FSYNC', kind: 'boolean' },
  logLevel: { flag: 'log-level', env: 'LOG_LEVEL', kind: 'string' },
  commitDelayMs: { flag: 'commit-delay-ms', env: 'COMMIT_DELAY_MS', kind: 'count' },
  lazyCommitDelayMs: { flag: 'lazy-commit-delay-ms', env: 'LAZY_COMMIT_DELAY_MS', kind: 'count' },
  idleUnloadMs: { flag: 'idle-unload-ms', env: 'IDLE_UNLOAD_MS', kind: 'count' },
  coldWorkBudgetMs: { flag: 'cold-work-budget-ms', env: 'COLD_WORK_BUDGET_MS', kind: 'count' },
  replyGraceMs: { flag: 'reply-grace-ms', env: 'REPLY_GRACE_MS', kind: 'count' },
  maxMessageBytes: { flag: 'max-message-bytes', env: 'MAX_MESSAGE_BYTES', kind: 'positive' },
  maxBackpressureBytes: { flag: 'max-backpressure-bytes', env: 'MAX_BACKPRESSURE_BYTES', kind: 'positive' },
  maxQueuedWriteBytes: { flag: 'max-queued-write-bytes', env: 'MAX_QUEUED_WRITE_BYTES', kind: 'positive' },
  maxLoadingQueueMessages: {
    flag: 'max-loading-queue-messages',
    env: 'MAX_LOADING_QUEUE_MESSAGES',
    kind: 'count',
  },
  maxLoadingQueueBytes: { flag: 'max-loading-queue-bytes', env: 'MAX_LOADING_QUEUE_BYTES', kind: 'positive' },
  compaction: { flag: 'compaction', env: 'COMPACTION', kind: 'boolean' },
  compactFromMemory: { flag: 'compact-from-memory', env: 'COMPACT_FROM_MEMORY', kind: 'boolean' },
  compactIntervalMs: { flag: 'compact-interval-ms', env: 'COMPACT_INTERVAL_MS', kind: 'positive' },
  compactMinUpdates: { flag: 'compact-min-updates', env: 'COMPACT_MIN_UPDATES', kind: 'positive' },
  compactMaxUpdates: { flag: 'compact-max-updates', env: 'COMPACT_MAX_UPDATES', kind: 'positive' },
  compactMinIntervalMs: { flag: 'compact-min-interval-ms', env: 'COMPACT_MIN_INTERVAL_MS', kind: 'count' },
  retainLogMs: { flag: 'retain-log-ms', env: 'RETAIN_LOG_MS', kind: 'count' },
  retainCheckpointsMs: { flag: 'retain-checkpoints-ms', env: 'RETAIN_CHECKPOINTS_MS', kind: 'count' },
  checkpointSpacingMs: { flag: 'checkpoint-spacing-ms', env: 'CHECKPOINT_SPACING_MS', kind: 'positive' },
  maxHttpBodyBytes: { flag: 'max-http-body-bytes', env: 'MAX_HTTP_BODY_BYTES', kind: 'positive' },
  webDir: { flag: 'web-dir', env: 'WEB_DIR', kind: 'string' },
  secret: { flag: 'secret', env: 'COLLOQUY_SECRET', kind: 'secret' },
  secretFile: { flag: 'secret-file', env: 'COLLOQUY_SECRET_FILE', kind: 'string' },
  insecure: { flag: 'insecure', env: 'INSECURE', kind: 'boolean' },
  allowedOrigins: { flag: 'allowed-origins', env: 'ALLOWED_ORIGINS', kind: 'origins' },
  allowedHosts: { flag: 'allowed-hosts', env: 'ALLOWED_HOSTS', kind: 'list' },
  trustProxy: { flag: 'trust-proxy', env: 'TRUST_PROXY', kind: 'proxies' },
  maxTokenLifetimeS: { flag: 'max-token-lifetime-s', env: 'MAX_TOKEN_LIFETIME_S', kind: 'count' },
  metricsToken: { flag: 'metrics-token', env: 'METRICS_TOKEN', kind: 'secret' },
  maxConcurrentUploads: { flag: 'max-concurrent-uploads', env: 'MAX_CONCURRENT_UPLOADS', kind: 'count' },
  maxDocumentsPerSocket: { flag: 'max-documents-per-socket', env: 'MAX_DOCUMENTS_PER_SOCKET', kind: 'count' },
  documentOpensPerSecond: {
    flag: 'document-opens-per-second',
    env: 'DOCUMENT_OPENS_PER_SECOND',
    kind: 'count',
  },
  turnPools: { flag: 'turn-pools', env: 'TURN_POOLS', kind: 'pools' },
  turnLeaseMs: { flag: 'turn-lease-ms', env: 'TURN_LEASE_MS', kind: 'positive' },
  turnMaxAttempts: { flag: 'turn-max-attempts', env: 'TURN_MAX_ATTEMPTS', kind: 'positive' },
  turnStarvationMs: { flag: 'turn-starvation-ms', env: 'TURN_STARVATION_MS', kind: 'count' },
  turnStarvationShare: { flag: 'turn-starvation-share', env: 'TURN_STARVATION_SHARE', kind: 'positive' },
  turnRetentionMs: { flag: 'turn-retention-ms', env: 'TURN_RETENTION_MS', kind: 'count' },
  turnPositionRefreshMs: { flag: 'turn-position-refresh-ms', env: 'TURN_POSITION_REFRESH_MS', kind: 'count' },
  turnAuto: { flag: 'turn-auto', env: 'TURN_AUTO', kind: 'autoTurns' },
  nats: { flag: 'nats', env: 'NATS_URL', kind: 'nats' },
  nodeId: { flag: 'node-id', env: 'NODE_ID', kind: 'string' },
  natsReplicas: { flag: 'nats-replicas', env: 'NATS_REPLICAS', kind: 'positive' },
  natsSyncAlways: { flag: 'nats-sync-always', env: 'NATS_SYNC_ALWAYS', kind: 'boolean' },
  outboxRetainMs: { flag: 'outbox-retain-ms', env: 'OUTBOX_RETAIN_MS', kind: 'count' },
  updatesPerSecond: { flag: 'updates-per-second', env: 'UPDATES_PER_SECOND', kind: 'count' },
  updatesBurst: { flag: 'updates-burst', env: 'UPDATES_BURST', kind: 'count' },
  updateBytesPerSecond: { flag: 'update-bytes-per-second', env: 'UPDATE_BYTES_PER_SECOND', kind: 'count' },
  updateBytesBurst: { flag: 'update-bytes-burst', env: 'UPDATE_BYTES_BURST', kind: 'count' },
  maxAwarenessBytes: { flag: 'max-awareness-bytes', env: 'MAX_AWARENESS_BYTES', kind: 'count' },
  awarenessPerSecond: { flag: 'awareness-per-second', env: 'AWARENESS_PER_SECOND', kind: 'count' },
  awarenessBurst: { flag: 'awareness-burst', env: 'AWARENESS_BURST', kind: 'count' },
  maxAwarenessClientsPerConnection: {
    flag: 'max-awareness-clients-per-connection',
    env: 'MAX_AWARENESS_CLIENTS_PER_CONNECTION',
    kind: 'count',
  },
  maxConnectionsPerSession: {
    flag: 'max-connections-per-session',
    env: 'MAX_CONNECTIONS_PER_SESSION',
    kind: 'count',
  },
  maxConnectionAttemptsPerIp: {
    flag: 'max-connection-attempts-per-ip',
    env: 'MAX_CONNECTION_ATTEMPTS_PER_IP',
    kind: 'count',
  },
  connectionAttemptWindowMs: {
    flag: 'connection-attempt-window-ms',
    env: 'CONNECTION_ATTEMPT_WINDOW_MS',
    kind: 'positive',
  },
  maxSessionsInMemory: { flag: 'max-sessions-in-memory', env: 'MAX_SESSIONS_IN_MEMORY', kind: 'count' },
  sessionQuotaBytes: { flag: 'session-quota-bytes', env: 'SESSION_QUOTA_BYTES', kind: 'count' },
} as const satisfies Record<keyof ServerConfig, { flag: string; env: string; kind: string }>

/** The flags and variables, for `--help` and the README. */
export function describeOptions(): string {
  return (Object.keys(OPTIONS) as (keyof ServerConfig)[])
    .map((key) => {
      const option = OPTIONS[key]
      const fallback = DEFAULT_CONFIG[key]
      const shown =
        fallback === undefined || (Array.isArray(fallback) && fallback.length === 0)
          ? '(none)'
          : String(fallback)
      return `  --${option.flag.padEnd(28)} ${option.env.padEnd(28)} default ${shown}`
    })
    .join('\n')
}

/** A comma-separated list, blanks dropped. */
function listOf(raw: string): string[] {
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0)
}

/** `http(s)://host[:port]` exactly as browsers send it in `Origin`, or `*`. */
function normalizeOrigin(item: string, source: string): string {
  if (item === '*') return item
  let url: URL
  try {
    url = new URL(item)
  } catch {
    throw new ConfigError(`${source}: "${item}" is not an origin (scheme://host[:port])`)
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin === 'null') {
    throw new ConfigError(`${source}: "${item}" is not an http(s) origin`)
  }
  return url.origin
}

function convert(
  key: keyof ServerConfig,
  raw: string,
  source: string,
): string | number | boolean | readonly string[] {
  const option = OPTIONS[key]
  switch (option.kind) {
    case 'string':
      if (raw.length === 0) throw new ConfigError(`${source} must not be empty`)
      return raw
    case 'secret': {
      // Never echo the value: it is a credential.
      const weakness = secretWeakness(raw)
      if (weakness !== undefined) throw new ConfigError(`${source} is too weak: ${weakness}`)
      return raw
    }
    case 'list':
      return listOf(raw).map((item) => item.toLowerCase())
    case 'autoTurns': {
      const specs = listOf(raw)
      try {
        parseAutoTurnRules(specs)
      } catch (error) {
        throw new ConfigError(`${source}: ${error instanceof Error ? error.message : String(error)}`)
      }
      return specs
    }
    case 'pools': {
      const specs = listOf(raw)
      try {
        parsePoolSpecs(specs)
      } catch (error) {
        throw new ConfigError(`${source}: ${error instanceof Error ? error.message : String(error)}`)
      }
      return specs
    }
    case 'origins':
      return listOf(raw).map((item) => normalizeOrigin(item, source))
    case 'proxies':
      return listOf(raw).map((item) => {
        if (parseAddressRange(item) === undefined)
          throw new ConfigError(`${source}: "${item}" is not an IP address or CIDR range`)
        return item
      })
    case 'nats': {
      const urls = listOf(raw)
      if (urls.length === 0) throw new ConfigError(`${source} must list at least one nats:// URL`)
      for (const url of urls) {
        if (!/^(nats|tls):\/\/[^\s/]+$/.test(url)) {
          throw new ConfigError(`${source}: "${url}" is not a nats://host:port URL`)
        }
      }
      return urls
    }
    case 'store':
      if (raw !== 'leveldb' && raw !== 'memory') throw new ConfigError(`${source} must be leveldb or memory`)
      return raw
    case 'boolean':
      if (['true', '1', 'yes', 'on'].includes(raw)) return true
      if (['false', '0', 'no', 'off'].includes(raw)) return false
      throw new ConfigError(`${source} must be true or false, got "${raw}"`)
    case 'port':
    case 'count':
    case 'positive': {
      const value = Number(raw)
      const isValid =
        /^\d+$/.test(raw) &&
        Number.isSafeInteger(value) &&
        (option.kind !== 'positive' || value > 0) &&
        (option.kind !== 'port' || value <= 65_535)
      if (!isValid) throw new ConfigError(`${source} must be a ${option.kind} integer, got "${raw}"`)
      return value
    }
  }
}

/**
 * Builds the configuration from defaults, then environment variables, then flags (flags win).
 *
 * @throws ConfigError on an unknown flag or a value that does not parse.
 */
export function parseConfig(
  argv: readonly string[],
  env: Env,
  readFile: (file: string) => string = (file) => readFileSync(file, 'utf8'),
): ServerConfig {
  const flagOptions: Record<string, { type: 'string' }> = {}
  for (const option of Object.values(OPTIONS)) flagOptions[option.flag] = { type: 'string' }
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      options: flagOptions,
      strict: true,
      allowPositionals: false,
    }).values
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error))
  }
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG }
  for (const key of Object.keys(OPTIONS) as (keyof ServerConfig)[]) {
    const option = OPTIONS[key]
    const fromEnv = env[option.env]
    if (fromEnv !== undefined && fromEnv !== '') config[key] = convert(key, fromEnv, option.env)
    const fromFlag = values[option.flag]
    if (typeof fromFlag === 'string') config[key] = convert(key, fromFlag, `--${option.flag}`)
  }
  if (config.secretFile !== undefined) {
    if (config.secret !== undefined) {
      throw new ConfigError('give the secret once: --secret (COLLOQUY_SECRET) or --secret-file, not both')
    }
    config.secret = readSecretFile(config.secretFile as string, readFile)
  }
  const result = config as unknown as ServerConfig
  const poolNames = new Set(parsePoolSpecs(result.turnPools).map((pool) => pool.name))
  for (const rule of parseAutoTurnRules(result.turnAuto)) {
    if (!poolNames.has(rule.pool))
      throw new ConfigError(`--turn-auto names pool "${rule.pool}", not in --turn-pools`)
  }
  if (result.secret === undefined && !isLoopback(result.host) && !result.insecure) {
    throw new ConfigError(
      `refusing to listen on ${result.host} without a secret: set COLLOQUY_SECRET (or --secret), ` +
        'or pass --insecure to serve everyone anonymously',
    )
  }
  return result
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** Reads a secret file: its first line, surrounding whitespace dropped; refused if weak. */
function readSecretFile(file: string, readFile: (file: string) => string): string {
  let text: string
  try {
    text = readFile(file)
  } catch (error) {
    throw new ConfigError(
      `cannot read the secret file ${file}: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
  const secret = (text.split(/\r?\n/)[0] ?? '').trim()
  const weakness = secretWeakness(secret)
  if (weakness !== undefined) throw new ConfigError(`the secret in ${file} is too weak: ${weakness}`)
  return secret
}
