#!/usr/bin/env node
// The server's own entry point: `node dist/server/main.js [serve] [options]`. The full command line
// (chat, agent, …) is cli/colloquy.ts; this file starts nothing but the server.

import { reportStartupError, runServe, SERVE_USAGE } from './serve-command.js'

// Unhandled rejections are fatal: a server in an unknown state must not keep acknowledging writes.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `fatal: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`,
  )
  process.exit(1)
})

const argv = process.argv.slice(2)
const args = argv[0] === 'serve' ? argv.slice(1) : argv
runServe(args, process.env).catch((error: unknown) => reportStartupError(error, SERVE_USAGE))
