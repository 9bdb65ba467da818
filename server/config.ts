// Server configuration: defaults, command-line flags and environment variables, parsed by a pure
// function. main.ts is the only caller that passes the real argv and env.

import { parseArgs } from 'node:util'

/** Everything the server can be told at start. README.md documents each field. */
export interface ServerConfig {
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
  /** How long the group commit waits for more updates after the first (ms). */
  readonly commitDelayMs: number
  /** How long a session without connections stays in memory (ms). */
  readonly idleUnloadMs: number
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
  idleUnloadMs: 30_000,
  maxMessageBytes: 16 * MiB,
  maxBackpressureBytes: 16 * MiB,
  maxQueuedWriteBytes: 256 * MiB,
  maxLoadingQueueMessages: 1_000,
  maxLoadingQueueBytes: 32 * MiB,
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
  idleUnloadMs: { flag: 'idle-unload-ms', env: 'IDLE_UNLOAD_MS', kind: 'count' },
  maxMessageBytes: { flag: 'max-message-bytes', env: 'MAX_MESSAGE_BYTES', kind: 'positive' },
  maxBackpressureBytes: { flag: 'max-backpressure-bytes', env: 'MAX_BACKPRESSURE_BYTES', kind: 'positive' },
  maxQueuedWriteBytes: { flag: 'max-queued-write-bytes', env: 'MAX_QUEUED_WRITE_BYTES', kind: 'positive' },
  maxLoadingQueueMessages: {
    flag: 'max-loading-queue-messages',
    env: 'MAX_LOADING_QUEUE_MESSAGES',
    kind: 'positive',
  },
  maxLoadingQueueBytes: { flag: 'max-loading-queue-bytes', env: 'MAX_LOADING_QUEUE_BYTES', kind: 'positive' },
} as const satisfies Record<keyof ServerConfig, { flag: string; env: string; kind: string }>

/** The flags and variables, for `--help` and the README. */
export function describeOptions(): string {
  return (Object.keys(OPTIONS) as (keyof ServerConfig)[])
    .map((key) => {
      const option = OPTIONS[key]
      return `  --${option.flag.padEnd(28)} ${option.env.padEnd(28)} default ${String(DEFAULT_CONFIG[key])}`
    })
    .join('\n')
}

function convert(key: keyof ServerConfig, raw: string, source: string): string | number | boolean {
  const option = OPTIONS[key]
  switch (option.kind) {
    case 'string':
      if (raw.length === 0) throw new ConfigError(`${source} must not be empty`)
      return raw
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
export function parseConfig(argv: readonly string[], env: Env): ServerConfig {
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
  return config as unknown as ServerConfig
}
