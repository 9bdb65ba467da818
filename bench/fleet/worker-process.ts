// One worker process of the fleet bench: `createWorker` on URL/POOL with CONCURRENCY slots, TOKEN
// (an agent token, when the server has a secret) and the seeded demo model; prints one JSON line per turn event with the local time, which the bench reads
// (waits, slot use, who resumed what). Killed with SIGKILL by the bench.

import { createWorker } from '../../client/agent/node.js'
import { createFleetModel } from './fleet-model.js'

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const worker = createWorker({
  url: env('URL'),
  pool: env('POOL', 'main'),
  concurrency: Number(env('CONCURRENCY', '4')),
  model: createFleetModel(
    Number(env('SEED', '1')),
    Number(env('MIN_MS', '1000')),
    Number(env('MAX_MS', '3000')),
  ),
  name: env('NAME', 'bench'),
  ...(process.env.TOKEN === undefined ? {} : { token: process.env.TOKEN }),
  claimWaitMs: 5_000,
  coalesceMs: 50,
  onError: (error) =>
    process.stdout.write(
      `${JSON.stringify({ t: Date.now(), type: 'error', error: error instanceof Error ? error.message : String(error) })}\n`,
    ),
})
worker.on((event) => {
  const record: Record<string, unknown> = {
    t: Date.now(),
    type: event.type,
    turn: event.turn.id,
    attempt: event.turn.attempts,
  }
  if (event.type === 'streaming' && event.resumedFrom !== undefined) record.resumedFrom = event.resumedFrom
  process.stdout.write(`${JSON.stringify(record)}\n`)
})
process.stdout.write(`${JSON.stringify({ t: Date.now(), type: 'started', instanceId: worker.instanceId })}\n`)
process.on('SIGTERM', () => {
  worker.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
