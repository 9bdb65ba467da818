// A demo agent as its own process, for kill -9 tests: joins URL/SESSION from the environment and
// prints one JSON line per state change ({"state":"streaming","messageId":"…"}).

import { createDemoModel, joinSession } from '../../client/agent/node.js'

const url = process.env.URL
const sessionId = process.env.SESSION
if (url === undefined || sessionId === undefined) throw new Error('URL and SESSION are required')

const agent = await joinSession({
  url,
  sessionId,
  name: process.env.AGENT_NAME ?? 'crashy',
  model: createDemoModel({
    tokens: Number(process.env.TOKENS ?? 50),
    delayMs: Number(process.env.DELAY_MS ?? 5),
  }),
  coalesceMs: 0,
})
agent.onState((state, messageId) => {
  process.stdout.write(`${JSON.stringify({ state, messageId })}\n`)
})
process.stdout.write(`${JSON.stringify({ state: 'joined' })}\n`)
process.on('SIGTERM', () => {
  agent.leave().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
