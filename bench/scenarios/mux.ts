// [S9] one agent process, 1,000 sessions: the same process (mux-agent.ts, a child) holds every
// session open through Colloquy's multiplexed connection (one socket), through a sync client per
// session (1,000 sockets), or through @hocuspocus/provider on one socket against Colloquy and against
// Hocuspocus itself. Client and server memory, connect-all time, server CPU per update.

import { type ChildProcess, fork } from 'node:child_process'
import path from 'node:path'
import { round, sleep } from '../lib/stats.js'
import { ROOT } from '../lib/targets.js'
import type { Row, Scenario, ScenarioContext } from './context.js'
import { MuxClient, type MuxCommand, type MuxReply } from './mux-agent.js'

const MiB = 2 ** 20

/** The agent process: forked per run, so each starts with a clean heap. */
function startAgent(): {
  request(command: MuxCommand, expect: MuxReply['type']): Promise<MuxReply>
  pid: number
  kill(): void
} {
  const child: ChildProcess = fork(path.join(ROOT, 'bench/scenarios/mux-agent.ts'), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--expose-gc', '--max-old-space-size=4096'],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  if (child.pid === undefined) throw new Error('agent process did not start')
  return {
    pid: child.pid,
    request(command, expect) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('message', onMessage)
          reject(new Error(`agent process: no '${expect}' within 150 s`))
        }, 150_000)
        const onMessage = (reply: MuxReply): void => {
          clearTimeout(timer)
          child.off('message', onMessage)
          if (reply.type === expect) resolve(reply)
          else reject(new Error(reply.type === 'error' ? reply.message : `unexpected ${reply.type}`))
        }
        child.on('message', onMessage)
        child.send(command)
      })
    },
    kill() {
      child.kill('SIGKILL')
    },
  }
}

/** One client kind against one fresh server: connect every session, then write `rounds` updates to each. */
async function runClient(
  ctx: ScenarioContext,
  client: MuxClient,
  sessions: number,
  rounds: number,
): Promise<Row> {
  const server = await ctx.start()
  const agent = startAgent()
  try {
    // Colloquy serves the Hocuspocus protocol on /hocuspocus; Hocuspocus on any path.
    const url =
      client === MuxClient.Sockets || ctx.target === 'hocuspocus' ? server.url : `${server.url}/hocuspocus`
    const ids = Array.from({ length: sessions }, (_, i) => `s9-${ctx.seed}-${i}`)
    await sleep(500)
    const serverRss0 = server.rssBytes()
    const connected = await agent.request({ type: 'connect', client, url, sessions: ids }, 'connected')
    await sleep(1_000)
    const serverRss1 = server.rssBytes()
    const cpu0 = server.cpuMicros()
    const written = await agent.request({ type: 'write', rounds }, 'written')
    // The server's own work after the last ack (Hocuspocus stores after its debounce): counted too.
    await sleep(ctx.target === 'hocuspocus' ? 3_000 : 1_000)
    const cpu1 = server.cpuMicros()
    if (connected.type !== 'connected' || written.type !== 'written') throw new Error('unexpected reply')
    ctx.log(
      `  ${client}: ${sessions} sessions in ${round(connected.ms, 0)} ms, ${written.updates} updates, flushed ${written.flushed}`,
    )
    return {
      client,
      sessions,
      sockets: client === MuxClient.Sockets ? sessions : 1,
      connectAllMs: round(connected.ms, 0),
      clientConnectCpuMs: round(connected.cpuMicros / 1000, 0),
      clientRssMiB: round(connected.rssAfter / MiB, 1),
      clientKiBPerSession: round((connected.rssAfter - connected.rssBefore) / sessions / 1024, 1),
      clientHeapMiB: round(connected.heapAfter / MiB, 1),
      serverRssMiB: round(serverRss1 / MiB, 1),
      serverKiBPerSession: round((serverRss1 - serverRss0) / sessions / 1024, 1),
      updates: written.updates,
      writeMs: round(written.ms, 0),
      clientCpuUsPerUpdate: round(written.cpuMicros / written.updates, 1),
      serverCpuUsPerUpdate: round((cpu1 - cpu0) / written.updates, 1),
      correct: written.flushed,
    }
  } finally {
    agent.kill()
    await server.stop()
  }
}

export const S9: Scenario = {
  id: 'S9',
  title: 'one agent process, 1,000 sessions: one multiplexed socket vs a socket per session vs Hocuspocus',
  targets: ['colloquy', 'hocuspocus'],
  async run(ctx) {
    const full = ctx.mode === 'full'
    const sessions = full ? 1_000 : 100
    const rounds = full ? 5 : 2
    if (ctx.target === 'hocuspocus') return [await runClient(ctx, MuxClient.Provider, sessions, rounds)]
    const rows: Row[] = []
    for (const client of [MuxClient.Mux, MuxClient.Sockets, MuxClient.Provider]) {
      rows.push(await runClient(ctx, client, sessions, rounds))
    }
    return rows
  },
}
