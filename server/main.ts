#!/usr/bin/env node
// The command line: the only place that reads argv and the environment and installs signal handlers.

import { ConfigError, describeOptions, parseConfig } from './config.js'
import { createLogger } from './observability/log.js'
import { startSyncServer } from './sync-server.js'

const USAGE = `Usage: colloquy [serve] [options]

Starts the Colloquy sync server. Options (flag, environment variable, default):
${describeOptions()}
`

async function serve(argv: readonly string[]): Promise<void> {
  const config = parseConfig(argv, process.env)
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

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE)
    return
  }
  if (command === undefined || command.startsWith('--')) return serve(process.argv.slice(2))
  if (command === 'serve') return serve(rest)
  process.stderr.write(`unknown command: ${command}\n\n${USAGE}`)
  process.exitCode = 2
}

// Unhandled rejections are fatal: a server in an unknown state must not keep acknowledging writes.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `fatal: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`,
  )
  process.exit(1)
})

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`colloquy: ${error.message}\n\n${USAGE}`)
    process.exit(2)
  }
  process.stderr.write(
    `colloquy: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
})
