// Token-streaming benchmark (issue 3). Against a real server (child process, LevelDB, fsync):
//   [T1] one agent streams 10,000 tokens to 3 devices, coalescing on (20 ms) and off: updates sent,
//        bytes on the wire per token, token-to-device latency p50/p99.
//   [T2] one answer grows to 1 MB of text: the agent's CPU cost per token as the text grows,
//        coalescing on and off.
//
//   npm run bench:streaming -- [--tokens 10000] [--answer-bytes 1048576] [--tokens-per-ms 5]

import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import type { Model } from '../../client/agent/model.js'
import { joinSession } from '../../client/agent/node.js'
import { createNodeSyncClient, type SyncClient } from '../../client/node.js'
import { appendMessage, openStreamingWriter, readMessages } from '../../shared/conversation/index.js'
import { startServerProcess } from '../../test/helpers/server-process.js'
import { until } from '../../test/helpers/wait.js'

interface Wire {
  framesSent: number
  bytesSent: number
  bytesReceived: number
}

/** A `ws` class that counts what one client sends and receives. */
function countingWebSocket(wire: Wire): typeof WebSocket {
  return class extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols)
      this.on('message', (data: Buffer) => {
        wire.bytesReceived += data.byteLength
      })
    }
    override send(data: Parameters<WebSocket['send']>[0], ...rest: unknown[]): void {
      const bytes = data as Uint8Array
      // Only sync updates (type 0, sub-type 2) are content; acks and awareness are counted apart.
      if (bytes[0] === 0 && bytes[1] === 2) {
        wire.framesSent++
        wire.bytesSent += bytes.byteLength
      }
      ;(super.send as (...args: unknown[]) => void)(data, ...rest)
    }
  } as unknown as typeof WebSocket
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const round = (value: number, digits = 2): number => Number(value.toFixed(digits))

interface StreamResult {
  readonly id: string
  readonly coalesceMs: number
  readonly tokens: number
  readonly updatesSent: number
  readonly tokensPerUpdate: number
  readonly wireBytesPerToken: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
  readonly latencyMaxMs: number
  readonly devicesIdentical: boolean
}

/** [T1]: an agent streams `tokens` tokens at about one per ms to three devices. */
async function streamToDevices(url: string, tokens: number, coalesceMs: number): Promise<StreamResult> {
  const sessionId = `stream-${coalesceMs}-${Date.now()}`
  const sentAt: number[] = []
  const model: Model = {
    name: 'bench',
    async *generate(_context, signal) {
      for (let i = 0; i < tokens && !signal.aborted; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1))
        sentAt.push(performance.now())
        yield `w${i} `
      }
    },
  }
  const wire: Wire = { framesSent: 0, bytesSent: 0, bytesReceived: 0 }
  const agent = await joinSession({
    url,
    sessionId,
    name: 'bench',
    model,
    coalesceMs,
    WebSocket: countingWebSocket(wire) as never,
  })
  const devices: SyncClient[] = []
  const latencies: number[] = []
  for (let d = 0; d < 3; d++) {
    const device = createNodeSyncClient({ url, sessionId })
    await device.whenSynced()
    let seen = 0
    device.doc.on('afterTransaction', () => {
      const reply = readMessages(device.doc).find((m) => m.role === 'assistant')
      if (reply === undefined) return
      const count = reply.content.length === 0 ? 0 : reply.content.split(' ').length - 1
      const now = performance.now()
      for (; seen < count; seen++) latencies.push(now - sentAt[seen]!)
    })
    devices.push(device)
  }
  appendMessage(devices[0]!.doc, {
    role: 'user',
    author: { id: 'device:bench', kind: 'device' },
    content: 'go',
  })
  await until(
    () =>
      devices.every((d) => readMessages(d.doc).find((m) => m.role === 'assistant')?.status === 'complete'),
    120_000,
    'reply complete on every device',
  )
  const contents = devices.map((d) => readMessages(d.doc).find((m) => m.role === 'assistant')?.content)
  const devicesIdentical =
    contents.every((c) => c === contents[0]) && contents[0]?.split(' ').length === tokens + 1
  await agent.leave()
  for (const device of devices) await device.destroy()
  latencies.sort((a, b) => a - b)
  return {
    id: 'T1',
    coalesceMs,
    tokens,
    updatesSent: wire.framesSent,
    tokensPerUpdate: round(tokens / wire.framesSent),
    wireBytesPerToken: round(wire.bytesSent / tokens),
    latencyP50Ms: round(percentile(latencies, 50)),
    latencyP99Ms: round(percentile(latencies, 99)),
    latencyMaxMs: round(latencies.at(-1) ?? Number.NaN),
    devicesIdentical,
  }
}

interface GrowthRow {
  readonly textKiB: number
  readonly cpuMicrosPerToken: number
}

interface GrowthResult {
  readonly id: string
  readonly coalesceMs: number
  readonly answerBytes: number
  readonly tokens: number
  readonly rows: readonly GrowthRow[]
  readonly serverHasAll: boolean
}

/** [T2]: one message grows to `answerBytes` of 10-byte tokens; agent CPU per token by text size. */
async function growOneAnswer(
  url: string,
  answerBytes: number,
  coalesceMs: number,
  tokensPerMs: number,
): Promise<GrowthResult> {
  const sessionId = `grow-${coalesceMs}-${Date.now()}`
  const client = createNodeSyncClient({ url, sessionId })
  await client.whenSynced()
  const writer = openStreamingWriter(client.doc, { author: { id: 'agent:bench', kind: 'agent' }, coalesceMs })
  const token = '123456789 '
  const tokens = Math.floor(answerBytes / token.length)
  const bucketTokens = Math.floor((128 * 1024) / token.length)
  const rows: GrowthRow[] = []
  let cpu = process.cpuUsage()
  // A fast model: `tokensPerMs` tokens every millisecond (real models are slower, which only
  // makes coalescing fold more tokens into each transaction).
  for (let i = 1; i <= tokens; i++) {
    writer.write(token)
    if (i % tokensPerMs === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    if (i % bucketTokens === 0) {
      const used = process.cpuUsage(cpu)
      rows.push({
        textKiB: Math.round((i * token.length) / 1024),
        cpuMicrosPerToken: round((used.user + used.system) / bucketTokens),
      })
      cpu = process.cpuUsage()
    }
  }
  writer.end()
  await client.whenFlushed()
  await client.destroy()
  const check = createNodeSyncClient({ url, sessionId })
  await check.whenSynced()
  const serverHasAll = readMessages(check.doc)[0]?.content.length === tokens * token.length
  await check.destroy()
  return { id: 'T2', coalesceMs, answerBytes, tokens, rows, serverHasAll }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tokens: { type: 'string', default: '10000' },
      'answer-bytes': { type: 'string', default: String(1024 * 1024) },
      'tokens-per-ms': { type: 'string', default: '5' },
    },
  })
  const tokens = Number(values.tokens)
  const answerBytes = Number(values['answer-bytes'])
  const tokensPerMs = Number(values['tokens-per-ms'])
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-bench-stream-'))
  const server = await startServerProcess(['--data', dataDir, '--log-level', 'info'])
  try {
    const streams: StreamResult[] = []
    for (const coalesceMs of [20, 0]) streams.push(await streamToDevices(server.url, tokens, coalesceMs))
    const growth: GrowthResult[] = []
    for (const coalesceMs of [20, 0]) {
      growth.push(await growOneAnswer(server.url, answerBytes, coalesceMs, tokensPerMs))
    }

    let commit = 'unknown'
    try {
      commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    } catch {
      // Not a git checkout: the figures still stand, without a commit.
    }
    const environment = {
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      commit,
    }
    console.log(`\nnode ${environment.node}, ${environment.cores} × ${environment.cpu}, commit ${commit}\n`)
    console.log(
      '| id | coalescing | tokens | updates sent | tokens/update | wire bytes/token | latency p50 ms | p99 ms | max ms | devices identical |',
    )
    console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
    for (const s of streams) {
      console.log(
        `| ${s.id} | ${s.coalesceMs === 0 ? 'off' : `${s.coalesceMs} ms`} | ${s.tokens} | ${s.updatesSent} | ${s.tokensPerUpdate} | ${s.wireBytesPerToken} | ${s.latencyP50Ms} | ${s.latencyP99Ms} | ${s.latencyMaxMs} | ${s.devicesIdentical ? 'yes' : 'NO'} |`,
      )
    }
    const sizes = growth[0]?.rows.map((r) => r.textKiB) ?? []
    console.log(
      `\n[T2] agent CPU µs per token as one answer grows (${answerBytes} bytes, 10-byte tokens, ${tokensPerMs} tokens/ms offered)\n`,
    )
    console.log(`| coalescing | ${sizes.map((s) => `${s} KiB`).join(' | ')} | server has all |`)
    console.log(`| --- | ${sizes.map(() => '---:').join(' | ')} | --- |`)
    for (const g of growth) {
      console.log(
        `| ${g.coalesceMs === 0 ? 'off' : `${g.coalesceMs} ms`} | ${g.rows.map((r) => r.cpuMicrosPerToken).join(' | ')} | ${g.serverHasAll ? 'yes' : 'NO'} |`,
      )
    }
    const outDir = path.join(import.meta.dirname, '..', 'results')
    await mkdir(outDir, { recursive: true })
    const file = path.join(outDir, `streaming-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
    await writeFile(file, `${JSON.stringify({ environment, streams, growth }, null, 2)}\n`)
    console.log(`\nwritten ${path.relative(process.cwd(), file)}`)
  } finally {
    server.child.kill('SIGTERM')
    await server.exited
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
