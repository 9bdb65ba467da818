// A pool worker as its own process, for kill -9 tests: URL and POOL from the environment, the demo
// model (TOKENS tokens, DELAY_MS apart), CONCURRENCY slots; prints one JSON line per worker event
// ({"type":"streaming","turn":"…","answerId":"…"}) and {"type":"started"} once running.

import { createDemoModel, createWorker } from '../../client/agent/node.js'

const url = process.env.URL
const pool = process.env.POOL
if (url === undefined || pool === undefined) throw new Error('URL and POOL are required')

const worker = createWorker({
  url,
  pool,
  concurrency: Number(process.env.CONCURRENCY ?? 1),
  model: createDemoModel({
    tokens: Number(process.env.TOKENS ?? 50),
    delayMs: Number(process.env.DELAY_MS ?? 5),
  }),
  name: process.env.NAME ?? 'crashy',
  claimWaitMs: 1_000,
  coalesceMs: 0,
})
worker.on((event) => {
  process.stdout.write(
    `${JSON.stringify({
      type: event.type,
      turn: event.turn.id,
      attempt: event.turn.attempts,
      ...('answerId' in event ? { answerId: event.answerId } : {}),
      ...(event.type === 'streaming' && event.resumedFrom !== undefined
        ? { resumedFrom: event.resumedFrom }
        : {}),
    })}\n`,
  )
})
process.stdout.write(`${JSON.stringify({ type: 'started', instanceId: worker.instanceId })}\n`)
process.on('SIGTERM', () => {
  worker.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
