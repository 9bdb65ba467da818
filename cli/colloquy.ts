#!/usr/bin/env node
// The `colloquy` command line: dispatches to the server's `serve`, the client-side commands and the
// operator commands (history, tokens). The only module that imports both server/ and client/ (lazily, one per command).

import { reportStartupError, runServe, SERVE_USAGE } from '../server/serve-command.js'

interface Command {
  readonly usage: string
  run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number>
}

/** Loads a command module; history commands live in ./commands/<name>.js. */
async function load(name: string): Promise<Command | undefined> {
  switch (name) {
    case 'chat':
      return import('../client/cli/chat-command.js')
    case 'agent':
      return import('../client/cli/agent-command.js')
    case 'export':
    case 'import':
    case 'fork':
    case 'replay':
    case 'compact':
    case 'inspect':
    case 'token':
    case 'cluster':
      try {
        return (await import(`./commands/${name}.js`)) as Command
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return undefined
        throw error
      }
    default:
      return undefined
  }
}

const HELP = `Usage: colloquy <command> [options]

Commands:
  serve              run the sync server (default when the first argument is a flag)
  chat <session>     a terminal client: see the conversation live, type to send
  agent <session>    run an agent (demo model or OpenAI-compatible endpoint)
  token              mint an access token (needs the server's secret)
  export <session>   export a session (JSON or Yjs binary), at a seq or time
  import <session>   import a JSON/binary export, or a classic y-leveldb directory
  fork <session>     fork a session at a seq into a new session
  replay <session>   print the conversation as it grew, turn by turn
  compact            compact a session (or --all, offline)
  inspect            list sessions and their log/checkpoint figures
  cluster check-replicas  compare the JetStream replicas of a cluster (--repair rebuilds one)

'colloquy <command> --help' shows a command's options.
`

// A reader that went away (`colloquy replay … | head -1`) ends the command quietly, as Unix tools
// do: nothing more can be shown, and that is not a failure.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `fatal: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`,
  )
  process.exit(1)
})

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2)
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP)
    return
  }
  if (name === 'serve' || name.startsWith('--')) {
    const args = name === 'serve' ? rest : process.argv.slice(2)
    await runServe(args, process.env).catch((error: unknown) => reportStartupError(error, SERVE_USAGE))
    return
  }
  const command = await load(name)
  if (command === undefined) {
    process.stderr.write(`colloquy: unknown command ${name}\n\n${HELP}`)
    process.exit(2)
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage)
    return
  }
  try {
    const code = await command.run(rest, process.env)
    // Exit explicitly: a terminal's stdin stays referenced after readline closes. Writes to
    // terminals, files and pipes are synchronous on Linux, so nothing printed is lost.
    process.exit(code)
  } catch (error) {
    if (error instanceof Error && error.name === 'UsageError') {
      process.stderr.write(`colloquy ${name}: ${error.message}\n\n${command.usage}`)
      process.exit(2)
    }
    throw error
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `colloquy: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
})
