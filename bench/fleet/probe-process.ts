// The fleet bench's probe of unrelated sessions, in its own process so that the burst's question
// writers (in the bench's main process) cannot delay its clocks: SESSIONS sessions, each with a
// writer appending a message every INTERVAL_MS and a reader timing its arrival. Prints one JSON line
// per arrival, `{"t": <send time, ms since the epoch>, "ms": <latency>}`; the bench windows them by
// send time (before the burst, during it, while the pool drains). Stopped with SIGTERM.

import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { appendMessage, MessageKey, messagesArray } from '../../shared/conversation/index.js'

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const url = env('URL')
const sessions = Number(env('SESSIONS', '4'))
const intervalMs = Number(env('INTERVAL_MS', '100'))
const prefix = env('PREFIX', 'fleet-probe')
const token = process.env.TOKEN
const clients: SyncClient[] = []
const timers: NodeJS.Timeout[] = []

const open = (sessionId: string): SyncClient => {
  const client = createNodeSyncClient({
    url,
    sessionId,
    ...(token === undefined ? {} : { token: () => token }),
  })
  clients.push(client)
  return client
}

for (let s = 0; s < sessions; s++) {
  const sessionId = `${prefix}-${s}`
  const writer = open(sessionId)
  const reader = open(sessionId)
  await Promise.all([writer.whenSynced(), reader.whenSynced()])
  const sentAt = new Map<string, { readonly wall: number; readonly mono: number }>()
  // Shallow: one callback per message added, whatever the session's length.
  messagesArray(reader.doc).observe((event) => {
    const now = performance.now()
    for (const change of event.delta) {
      if (!Array.isArray(change.insert)) continue
      for (const map of change.insert as { get(key: string): unknown }[]) {
        const id = map.get(MessageKey.Id)
        const sent = typeof id === 'string' ? sentAt.get(id) : undefined
        if (sent === undefined) continue
        sentAt.delete(id as string)
        process.stdout.write(`${JSON.stringify({ t: sent.wall, ms: now - sent.mono })}\n`)
      }
    }
  })
  let n = 0
  const write = (): void => {
    const id = `probe-${s}-${n++}`
    sentAt.set(id, { wall: Date.now(), mono: performance.now() })
    appendMessage(writer.doc, {
      id,
      role: 'user',
      author: { id: `device:probe-${s}`, kind: 'device' },
      content: id,
    })
  }
  // Staggered, so the sessions' writes do not all fall on one tick.
  timers.push(
    setTimeout(
      () => {
        write()
        timers.push(setInterval(write, intervalMs))
      },
      (s * intervalMs) / sessions,
    ),
  )
}
process.stdout.write(`${JSON.stringify({ type: 'started', sessions })}\n`)

process.on('SIGTERM', () => {
  for (const timer of timers) clearTimeout(timer)
  Promise.all(clients.map((client) => client.destroy())).then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
