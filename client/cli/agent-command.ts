// `colloquy agent <session>...`: runs an agent in one session (its own socket) or in several (one
// multiplexed socket, an agent host) with the demo model or an OpenAI-compatible endpoint, printing
// state changes; Ctrl-C makes every agent leave cleanly.

import { isValidSessionId } from '../../shared/session-id.js'
import {
  type AgentDefaults,
  createAgentHost,
  createDemoModel,
  createOpenAiModel,
  DEMO_ANSWER_TOKENS,
  joinSession,
  type Model,
} from '../agent/node.js'
import { intFlag, parseFlags, serverUrl, UsageError } from './args.js'
import { describeRefusal, refusalAwareWebSocket, type UpgradeRefusal } from './upgrade-refusal.js'
import { runWorker } from './worker-command.js'

export const usage = `Usage: colloquy agent <session> [<session>...] [options]
       colloquy agent --pool NAME [--concurrency N] [options]

Joins the session as an agent and answers every new user message. Several sessions are served by
one process over one multiplexed socket (the server's /hocuspocus endpoint), one agent each.
With --pool, runs a pool worker instead: it answers the turns the server gives it, in any
session (docs/agents.md "Workers").
  --pool NAME             serve this pool's turns (no session argument)
  --concurrency N         turns answered at once by a pool worker (default 1, at most 64)
  --url URL               server (COLLOQUY_URL, default ws://127.0.0.1:8080)
  --name NAME             agent name (default demo); its id is agent:NAME
  --token TOKEN           access token (COLLOQUY_TOKEN)
  --model demo|openai     default demo (deterministic, no network)
  --tokens N              demo: tokens per reply (default: one whole answer)
  --delay-ms N            demo: delay between tokens (default 40)
  --openai-base-url URL   OpenAI-compatible endpoint (OPENAI_BASE_URL), e.g. http://127.0.0.1:11434/v1
  --openai-api-key KEY    (OPENAI_API_KEY)
  --openai-model NAME     (OPENAI_MODEL)
  --system TEXT           system prompt for the OpenAI-compatible model
  --max-context-tokens N  context budget (default 8000); older messages go into summaries the
                          agent writes through its model
  --first-token-timeout-ms N  longest wait for a reply's first token (default 60000)
  --token-timeout-ms N    longest wait between two tokens (default 30000)
  --reply-timeout-ms N    longest reply (default 600000)
  --model-retries N       retries of a 429, 5xx or unreachable model before the first token (default 3)
  --lease-ms N            lease of the claim on the message being answered (default 15000)
  --writer-grace-ms N     how long another agent's reply writer may be absent before its reply is
                          marked interrupted (default 10000)
`

function chooseModel(values: Record<string, string | undefined>, env: NodeJS.ProcessEnv): Model {
  const kind = values.model ?? 'demo'
  if (kind === 'demo') {
    return createDemoModel({
      tokens: intFlag(values.tokens, 'tokens', DEMO_ANSWER_TOKENS),
      delayMs: intFlag(values['delay-ms'], 'delay-ms', 40),
    })
  }
  if (kind === 'openai') {
    const baseUrl = values['openai-base-url'] ?? env.OPENAI_BASE_URL
    const model = values['openai-model'] ?? env.OPENAI_MODEL
    if (baseUrl === undefined || model === undefined) {
      throw new UsageError('--model openai needs --openai-base-url and --openai-model (or their env)')
    }
    const apiKey = values['openai-api-key'] ?? env.OPENAI_API_KEY
    return createOpenAiModel({
      baseUrl,
      model,
      ...(apiKey === undefined ? {} : { apiKey }),
      ...(values.system === undefined ? {} : { system: values.system }),
    })
  }
  throw new UsageError(`unknown model ${kind}: demo or openai`)
}

/** Runs the agent until SIGINT/SIGTERM; resolves the exit code. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseFlags(argv, [
    'url',
    'name',
    'token',
    'model',
    'tokens',
    'delay-ms',
    'openai-base-url',
    'openai-api-key',
    'openai-model',
    'system',
    'max-context-tokens',
    'first-token-timeout-ms',
    'token-timeout-ms',
    'reply-timeout-ms',
    'model-retries',
    'lease-ms',
    'writer-grace-ms',
    'pool',
    'concurrency',
  ])
  if (values.pool !== undefined) {
    if (positionals.length > 0) throw new UsageError('--pool serves every session: give no session id')
    const poolToken = values.token ?? env.COLLOQUY_TOKEN
    return runWorker({
      url: serverUrl(values.url, env),
      pool: values.pool,
      concurrency: intFlag(values.concurrency, 'concurrency', 1),
      model: chooseModel(values, env),
      name: values.name ?? 'demo',
      ...(poolToken === undefined ? {} : { token: poolToken }),
      maxContextTokens: intFlag(values['max-context-tokens'], 'max-context-tokens', 8_000),
      timeouts: {
        firstTokenMs: intFlag(values['first-token-timeout-ms'], 'first-token-timeout-ms', 60_000),
        betweenTokensMs: intFlag(values['token-timeout-ms'], 'token-timeout-ms', 30_000),
        replyMs: intFlag(values['reply-timeout-ms'], 'reply-timeout-ms', 600_000),
      },
      retries: intFlag(values['model-retries'], 'model-retries', 3),
    })
  }
  const sessionId = positionals[0]
  if (sessionId === undefined) {
    throw new UsageError('a session id (1-128 characters of A-Za-z0-9._:-) is required')
  }
  for (const id of positionals) {
    if (!isValidSessionId(id))
      throw new UsageError(`invalid session id ${JSON.stringify(id)}: 1-128 characters of A-Za-z0-9._:-`)
  }
  if (new Set(positionals).size !== positionals.length) throw new UsageError('a session id is given twice')
  const model = chooseModel(values, env)
  const token = values.token ?? env.COLLOQUY_TOKEN
  const name = values.name ?? 'demo'
  const log = (record: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`)
  }
  const defaults: AgentDefaults = {
    name,
    model,
    maxContextTokens: intFlag(values['max-context-tokens'], 'max-context-tokens', 8_000),
    timeouts: {
      firstTokenMs: intFlag(values['first-token-timeout-ms'], 'first-token-timeout-ms', 60_000),
      betweenTokensMs: intFlag(values['token-timeout-ms'], 'token-timeout-ms', 30_000),
      replyMs: intFlag(values['reply-timeout-ms'], 'reply-timeout-ms', 600_000),
    },
    retry: { retries: intFlag(values['model-retries'], 'model-retries', 3) },
    leaseMs: intFlag(values['lease-ms'], 'lease-ms', 15_000),
    writerGraceMs: intFlag(values['writer-grace-ms'], 'writer-grace-ms', 10_000),
  }
  if (positionals.length > 1) {
    return runMany({ sessionIds: positionals, url: serverUrl(values.url, env), token, defaults, log })
  }
  // A refused upgrade (bad token, refused id, 429) is not a network failure: say so and stop,
  // whether it comes before the agent joined (joinSession waits for a sync) or on a reconnect.
  const { refused, WebSocket } = watchRefusal()
  const joining = joinSession({
    ...defaults,
    url: serverUrl(values.url, env),
    sessionId,
    WebSocket,
    ...(token === undefined ? {} : { token }),
    onError: (error) => log({ event: 'error', error: errorText(error) }),
  })
  const first = await Promise.race([joining, refused.then((refusal) => ({ refusal }))])
  if ('refusal' in first) {
    process.stderr.write(`colloquy agent: ${describeRefusal(first.refusal)}\n`)
    return 1
  }
  const agent = first
  log({ event: 'joined', session: sessionId, agent: agent.id, model: model.name })
  agent.onState((state, messageId, detail) =>
    log({ event: 'state', state, messageId, ...(detail === undefined ? {} : { detail }) }),
  )
  agent.client.on('status', (event) =>
    log({ event: 'connection', status: event.status, reason: event.reason }),
  )
  return runUntilStopped(() => agent.leave(), refused, log)
}

/** Several sessions over one multiplexed socket: one agent each; a refused session is reported and skipped. */
async function runMany(options: {
  readonly sessionIds: readonly string[]
  readonly url: string
  readonly token: string | undefined
  readonly defaults: AgentDefaults
  readonly log: (record: Record<string, unknown>) => void
}): Promise<number> {
  const { log } = options
  const { refused, WebSocket } = watchRefusal()
  const host = createAgentHost({
    ...options.defaults,
    url: options.url,
    WebSocket,
    ...(options.token === undefined ? {} : { token: options.token }),
    onError: (error) => log({ event: 'error', error: errorText(error) }),
  })
  host.connection.on('status', (event) =>
    log({ event: 'connection', status: event.status, reason: event.reason }),
  )
  const joins = options.sessionIds.map(async (sessionId) => {
    try {
      const agent = await host.join(sessionId, {
        onError: (error) =>
          log({
            event: 'error',
            session: sessionId,
            error: errorText(error),
          }),
      })
      log({ event: 'joined', session: sessionId, agent: agent.id, model: options.defaults.model.name })
      agent.onState((state, messageId, detail) =>
        log({
          event: 'state',
          session: sessionId,
          state,
          messageId,
          ...(detail === undefined ? {} : { detail }),
        }),
      )
      return true
    } catch (error) {
      log({
        event: 'refused',
        session: sessionId,
        error: errorText(error),
      })
      return false
    }
  })
  const first = await Promise.race([Promise.all(joins), refused.then((refusal) => ({ refusal }))])
  if ('refusal' in first) {
    process.stderr.write(`colloquy agent: ${describeRefusal(first.refusal)}\n`)
    await host.close()
    return 1
  }
  if (!first.includes(true)) {
    process.stderr.write('colloquy agent: every session was refused\n')
    await host.close()
    return 1
  }
  return runUntilStopped(() => host.close(), refused, log)
}

/** A refusal-aware WebSocket class and the first upgrade refusal any of its sockets meets. */
function watchRefusal(): {
  readonly refused: Promise<UpgradeRefusal>
  readonly WebSocket: ReturnType<typeof refusalAwareWebSocket>
} {
  let onRefused: (refusal: UpgradeRefusal) => void = () => {}
  const refused = new Promise<UpgradeRefusal>((resolve) => {
    onRefused = resolve
  })
  return { refused, WebSocket: refusalAwareWebSocket((refusal) => onRefused(refusal)) }
}

/**
 * Runs until SIGINT/SIGTERM (exit 0 once `stop` settles, 1 if it fails) or an upgrade refusal on
 * a reconnect (reported on stderr, exit 1).
 */
function runUntilStopped(
  stop: () => Promise<void>,
  refused: Promise<UpgradeRefusal>,
  log: (record: Record<string, unknown>) => void,
): Promise<number> {
  return new Promise<number>((resolve) => {
    const leave = (): void => {
      log({ event: 'leaving' })
      stop().then(
        () => resolve(0),
        () => resolve(1),
      )
    }
    process.once('SIGINT', leave)
    process.once('SIGTERM', leave)
    void refused.then((refusal) => {
      process.stderr.write(`colloquy agent: ${describeRefusal(refusal)}\n`)
      stop().then(
        () => resolve(1),
        () => resolve(1),
      )
    })
  })
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
