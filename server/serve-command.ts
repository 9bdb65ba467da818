// `colloquy serve`: parses flags and environment, starts the server, and shuts it down on
// SIGTERM/SIGINT. Used by server/main.ts and by the colloquy CLI.

import { ConfigError, describeOptions, parseConfig } from './config.js'
import { createLogger } from './observability/log.js'
import { startSyncServer } from './sync-server.js'
import { ListenError } from './transport/uws-transport.js'

export const SERVE_USAGE = `Usage: colloquy serve [options]

Starts the Colloquy sync server. Options (flag, environment variable, default):
${describeOptions()}
`

/** Starts the server from argv and env; resolves once it listens. Signals stop it and exit. */
export async function runServe(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SERVE_USAGE)
    return
  }
  const config = parseConfig(argv, env)
  const logger = createLogger(config.logLevel)
  const server = await startSyncServer({ config, logger })
  let signals = 0
  const stop = (signal: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without waiting')
      process.exit(1)
    }
    logger.info({ signal }, 'shutting down')
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.fatal({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

/** Prints a fatal start-up error the way an operator needs it, and sets the exit code. */
export function reportStartupError(error: unknown, usage: string): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`colloquy: ${error.message}\n\n${usage}`)
    process.exit(2)
  }
  if (error instanceof ListenError) {
    process.stderr.write(`colloquy: ${error.message}\n`)
    process.exit(1)
  }
  process.stderr.write(
    `colloquy: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
}
