// Regression, issue #13.2: a stock y-websocket 3.x provider treats 4400–4499 as permanent and stops
// reconnecting. Colloquy closed rate-limited clients with 4429, so they never came back. A rate
// limit now closes with 4529 ("try again later") and the stock provider reconnects and catches up.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { until } from '../helpers/wait.js'

let server: SyncServer | undefined
let dataDir: string | undefined
let provider: WebsocketProvider | undefined

afterEach(async () => {
  provider?.destroy()
  provider = undefined
  await server?.close()
  server = undefined
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
})

describe('regression #13.2: close codes stock clients read', () => {
  it('lets a stock y-websocket 3.x provider closed for its rate come back and deliver everything', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'colloquy-codes-'))
    server = await startSyncServer({
      config: {
        ...DEFAULT_CONFIG,
        port: 0,
        dataDir,
        logLevel: 'silent',
        updatesPerSecond: 20,
        updatesBurst: 20,
      },
    })
    const doc = new Y.Doc()
    const stock = new WebsocketProvider(`ws://127.0.0.1:${server.port}`, 'rated', doc, {
      WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
      disableBc: true,
      maxBackoffTime: 200,
    })
    provider = stock
    const closes: number[] = []
    const permanent: number[] = []
    stock.on('connection-close', (event) => {
      if (event !== null) closes.push(event.code)
    })
    stock.on('closed', (event) => permanent.push(event.code))
    await until(() => stock.synced, 10_000, 'provider synced')

    // 60 separate updates at once: over the burst of 20, so the server closes the connection.
    for (let i = 0; i < 60; i++) doc.getText('t').insert(0, 'x')
    await until(() => closes.length > 0, 10_000, 'closed for its rate')
    expect(closes[0]).toBe(CloseCode.RateLimited)
    expect(CloseCode.RateLimited).toBeGreaterThanOrEqual(4500)

    // The provider reconnects on its own and its step 2 carries what the server refused.
    await until(
      () => server!.registry.get('rated')?.document.getText('t').length === 60,
      20_000,
      'the server has every edit after the reconnect',
    )
    expect(permanent).toEqual([])
    expect(stock.shouldConnect).toBe(true)
  })
})
