// Starting a real server for a test: 127.0.0.1 on port 0, an in-memory store and a silent logger
// unless the test says otherwise; and a logger whose lines a test reads.

import { Writable } from 'node:stream'
import { pino } from 'pino'
import { DEFAULT_CONFIG, type ServerConfig } from '../../server/config.js'
import type { Logger } from '../../server/observability/log.js'
import { type SyncServer, type SyncServerOptions, startSyncServer } from '../../server/sync-server.js'

/** The config a test server starts with before the test's own settings: port 0, memory store, silent. */
export const TEST_CONFIG: ServerConfig = {
  ...DEFAULT_CONFIG,
  port: 0,
  store: 'memory',
  logLevel: 'silent',
}

/** Starts a server with {@link TEST_CONFIG} overridden by `config`; the rest of `options` as given. */
export function startTestServer(
  config: Partial<ServerConfig> = {},
  options: Omit<SyncServerOptions, 'config'> = {},
): Promise<SyncServer> {
  return startSyncServer({ ...options, config: { ...TEST_CONFIG, ...config } })
}

/** A pino logger at `level` (default `info`) whose every line (JSON text) lands in `lines`. */
export function capturingLogger(level: pino.Level = 'info'): {
  readonly logger: Logger
  readonly lines: string[]
} {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString())
      done()
    },
  })
  return { logger: pino({ level }, stream), lines }
}
