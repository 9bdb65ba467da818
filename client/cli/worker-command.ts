// `colloquy agent --pool NAME --concurrency N`: a pool worker (client/agent/fleet/worker.ts) that
// answers the turns the server gives it in any session, printing one JSON line per turn event;
// SIGINT/SIGTERM stop it cleanly (the turns in progress are given back with their text durable).

import { isValidPoolName } from '../../shared/turns/index.js'
import { createWorker, type Model, type WorkerEvent } from '../agent/node.js'
import { UsageError } from './args.js'

/** What `colloquy agent` passes on when `--pool` is given. */
export interface WorkerCommandOptions {
  readonly url: string
  readonly pool: string
  readonly concurrency: number
  readonly model: Model
  readonly name: string
  readonly token?: string
  readonly maxContextTokens: number
  readonly timeouts: { firstTokenMs: number; betweenTokensMs: number; replyMs: number }
  readonly retries: number
}

function describeEvent(event: WorkerEvent): Record<string, unknown> {
  const { turn } = event
  const base = { event: event.type, turn: turn.id, session: turn.sessionId, attempt: turn.attempts }
  switch (event.type) {
    case 'streaming':
      return {
        ...base,
        answer: event.answerId,
        ...(event.resumedFrom === undefined ? {} : { resumedFrom: event.resumedFrom }),
      }
    case 'completed':
      return { ...base, answer: event.answerId, status: event.status }
    case 'failed':
    case 'released':
      return { ...base, reason: event.reason }
    default:
      return base
  }
}

/** Runs a pool worker until SIGINT/SIGTERM; resolves the exit code. */
export async function runWorker(options: WorkerCommandOptions): Promise<number> {
  if (!isValidPoolName(options.pool)) {
    throw new UsageError('--pool needs a pool name: 1-64 characters of a-z0-9_-')
  }
  if (options.concurrency < 1 || options.concurrency > 64) {
    throw new UsageError('--concurrency must be between 1 and 64')
  }
  const log = (record: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`)
  }
  const worker = createWorker({
    url: options.url,
    pool: options.pool,
    concurrency: options.concurrency,
    model: options.model,
    name: options.name,
    maxContextTokens: options.maxContextTokens,
    timeouts: options.timeouts,
    retry: { retries: options.retries },
    ...(options.token === undefined ? {} : { token: options.token }),
    onError: (error) =>
      log({ event: 'error', error: error instanceof Error ? error.message : String(error) }),
  })
  worker.on((event) => log(describeEvent(event)))
  log({
    event: 'worker',
    pool: options.pool,
    concurrency: options.concurrency,
    instanceId: worker.instanceId,
    agent: worker.author.id,
    model: options.model.name,
  })
  return new Promise<number>((resolve) => {
    const stop = (): void => {
      log({ event: 'stopping' })
      worker.stop().then(
        () => resolve(0),
        () => resolve(1),
      )
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
}
