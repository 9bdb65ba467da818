// An agent as its own process, for kill -9 tests: joins URL/SESSION from the environment and prints
// one JSON line per state change ({"state":"streaming","messageId":"…"}). The demo model by
// default; with MODEL_URL, the OpenAI-compatible model at that base URL. LEASE_MS, GRACE_MS and
// SETTLE_MS shorten the claim lease, the writer grace period and the claim settle wait.

import { createDemoModel, createOpenAiModel, joinSession } from '../../client/agent/node.js'

const url = process.env.URL
const sessionId = process.env.SESSION
if (url === undefined || sessionId === undefined) throw new Error('URL and SESSION are required')
const optionalNumber = (name: string): number | undefined =>
  process.env[name] === undefined ? undefined : Number(process.env[name])

const leaseMs = optionalNumber('LEASE_MS')
const writerGraceMs = optionalNumber('GRACE_MS')
const claimSettleMs = optionalNumber('SETTLE_MS')
const modelUrl = process.env.MODEL_URL
const agent = await joinSession({
  url,
  sessionId,
  name: process.env.AGENT_NAME ?? 'crashy',
  model:
    modelUrl === undefined
      ? createDemoModel({
          tokens: Number(process.env.TOKENS ?? 50),
          delayMs: Number(process.env.DELAY_MS ?? 5),
        })
      : createOpenAiModel({ baseUrl: modelUrl, model: 'fake' }),
  coalesceMs: 0,
  ...(leaseMs === undefined ? {} : { leaseMs }),
  ...(writerGraceMs === undefined ? {} : { writerGraceMs }),
  ...(claimSettleMs === undefined ? {} : { claimSettleMs }),
})
agent.onState((state, messageId) => {
  process.stdout.write(`${JSON.stringify({ state, messageId })}\n`)
})
process.stdout.write(`${JSON.stringify({ state: 'joined', instanceId: agent.instanceId })}\n`)
process.on('SIGTERM', () => {
  agent.leave().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
