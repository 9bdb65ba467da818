// [S9]'s "agent process": a child (forked by mux.ts) that holds N sessions open the way an agent
// service would: Colloquy's multiplexed connection (one socket), a sync client per session (N
// sockets), or @hocuspocus/provider 3.4.4 on one HocuspocusProviderWebsocket. It answers one IPC
// command at a time; every wait is bounded. It owns no server.

import { performance } from 'node:perf_hooks'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import type * as Y from 'yjs'
import { createConnection } from '../../client/connection.js'
import { createSyncClient } from '../../client/sync-client.js'
import type { WebSocketLikeConstructor } from '../../client/websocket.js'
import { withTimeout } from '../lib/timeout.js'

/** How the process holds its sessions. */
export const MuxClient = {
  /** Colloquy's createConnection: one socket to /hocuspocus. */
  Mux: 'mux',
  /** Colloquy's createSyncClient: one socket per session. */
  Sockets: 'sockets',
  /** @hocuspocus/provider 3.4.4: one HocuspocusProviderWebsocket, a provider per document. */
  Provider: 'provider',
} as const

export type MuxClient = (typeof MuxClient)[keyof typeof MuxClient]

export type MuxCommand =
  | {
      readonly type: 'connect'
      readonly client: MuxClient
      readonly url: string
      readonly sessions: readonly string[]
    }
  | { readonly type: 'write'; readonly rounds: number }
  | { readonly type: 'exit' }

export type MuxReply =
  | {
      readonly type: 'connected'
      readonly ms: number
      /** CPU time (user + system) the connect-all took in this process, µs. */
      readonly cpuMicros: number
      readonly rssBefore: number
      readonly rssAfter: number
      readonly heapAfter: number
    }
  | {
      readonly type: 'written'
      readonly updates: number
      readonly ms: number
      readonly cpuMicros: number
      readonly flushed: boolean
    }
  | { readonly type: 'error'; readonly message: string }

/** One held session, whatever the client. */
interface Held {
  readonly doc: Y.Doc
  whenSynced(): Promise<void>
  /** Resolves once the server acknowledged every update (Colloquy: durable; Hocuspocus: applied). */
  whenFlushed(): Promise<void>
}

const TIMEOUT_MS = 120_000
const WS = WebSocket as unknown as WebSocketLikeConstructor
let held: Held[] = []

function gc(): void {
  ;(globalThis as { gc?: () => void }).gc?.()
}

function openAll(client: MuxClient, url: string, sessions: readonly string[]): Held[] {
  switch (client) {
    case MuxClient.Mux: {
      const connection = createConnection({ url, WebSocket: WS, connectTimeoutMs: TIMEOUT_MS })
      return sessions.map((id) => connection.open(id))
    }
    case MuxClient.Sockets:
      return sessions.map((sessionId) =>
        createSyncClient({ url, sessionId, WebSocket: WS, connectTimeoutMs: TIMEOUT_MS }),
      )
    case MuxClient.Provider: {
      const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket } as never)
      return sessions.map((name) => {
        const provider = new HocuspocusProvider({ websocketProvider: socket, name, token: '' } as never)
        provider.attach()
        const waitFor = (isDone: () => boolean, event: string): Promise<void> =>
          new Promise((resolve) => {
            if (isDone()) {
              resolve()
              return
            }
            const check = (): void => {
              if (!isDone()) return
              provider.off(event, check)
              resolve()
            }
            provider.on(event, check)
          })
        return {
          doc: provider.document,
          whenSynced: () => waitFor(() => provider.isSynced, 'synced'),
          whenFlushed: () => waitFor(() => provider.unsyncedChanges === 0, 'unsyncedChanges'),
        }
      })
    }
  }
}

async function handle(command: MuxCommand): Promise<MuxReply> {
  switch (command.type) {
    case 'connect': {
      gc()
      const rssBefore = process.memoryUsage().rss
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      held = openAll(command.client, command.url, command.sessions)
      await withTimeout(Promise.all(held.map((h) => h.whenSynced())), TIMEOUT_MS, 'connect-all')
      const ms = performance.now() - t0
      const cpu = process.cpuUsage(cpu0)
      gc()
      const usage = process.memoryUsage()
      return {
        type: 'connected',
        ms,
        cpuMicros: cpu.user + cpu.system,
        rssBefore,
        rssAfter: usage.rss,
        heapAfter: usage.heapUsed,
      }
    }
    case 'write': {
      const t0 = performance.now()
      const cpu0 = process.cpuUsage()
      let updates = 0
      for (let round = 0; round < command.rounds; round++) {
        for (const h of held) {
          h.doc.getText('t').insert(0, 'x')
          updates++
        }
        // Let the sockets drain between rounds, as an agent's tokens arrive over time.
        await new Promise((resolve) => setImmediate(resolve))
      }
      let flushed = true
      try {
        await withTimeout(Promise.all(held.map((h) => h.whenFlushed())), TIMEOUT_MS, 'flush-all')
      } catch {
        flushed = false
      }
      const cpu = process.cpuUsage(cpu0)
      return {
        type: 'written',
        updates,
        ms: performance.now() - t0,
        cpuMicros: cpu.user + cpu.system,
        flushed,
      }
    }
    case 'exit':
      process.exit(0)
  }
}

process.on('message', (command: MuxCommand) => {
  handle(command).then(
    (reply) => process.send?.(reply),
    (error: unknown) => process.send?.({ type: 'error', message: String(error).slice(0, 300) }),
  )
})
