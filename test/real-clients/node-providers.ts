// Node side of the real-client suite: stock y-websocket providers (1.5.4, 2.1.0, 3.1.0) with `ws`
// as their WebSocket, each recording its status and close codes, plus bounded waits on them.

import WebSocket from 'ws'
import { WebsocketProvider as ProviderV3 } from 'y-websocket'
import { WebsocketProvider as ProviderV1 } from 'y-websocket-classic'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import * as Y from 'yjs'
import { until } from '../helpers/wait.js'
import type { ProviderVersion } from './page/harness.js'

/** A stock provider as the tests see it, whichever release it is. */
export interface NodeProvider {
  readonly version: ProviderVersion
  readonly doc: Y.Doc
  readonly awareness: ProviderV3['awareness']
  /** The provider's own flag: its WebSocket is open. */
  readonly wsconnected: boolean
  readonly synced: boolean
  /** Every close code its WebSocket saw, in order. */
  readonly closeCodes: readonly number[]
  destroy(): void
}

interface StockProvider {
  readonly awareness: ProviderV3['awareness']
  readonly wsconnected: boolean
  readonly synced: boolean
  on(event: string, listener: (...args: never[]) => void): void
  destroy(): void
}

/** Connects a stock provider of `version` to `room` (BroadcastChannel off: sync goes through the server). */
export function connectNodeProvider(
  serverUrl: string,
  room: string,
  version: ProviderVersion,
  doc = new Y.Doc(),
): NodeProvider {
  const options = {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    disableBc: true,
  }
  const stock: StockProvider =
    version === 'v1'
      ? (new ProviderV1(serverUrl, room, doc, options) as unknown as StockProvider)
      : version === 'v2'
        ? (new ProviderV2(serverUrl, room, doc, options) as unknown as StockProvider)
        : new ProviderV3(serverUrl, room, doc, options)
  const closeCodes: number[] = []
  stock.on('connection-close', (event: { code: number } | null) => {
    if (event !== null) closeCodes.push(event.code)
  })
  return {
    version,
    doc,
    awareness: stock.awareness,
    get wsconnected() {
      return stock.wsconnected
    },
    get synced() {
      return stock.synced
    },
    closeCodes,
    destroy: () => stock.destroy(),
  }
}

/**
 * Resolves once `predicate` holds for every provider; rejects after `ms` with the label, how many
 * lag behind and the close codes the providers saw (what tells a server refusal from slowness).
 */
export async function untilAll(
  providers: readonly NodeProvider[],
  predicate: (provider: NodeProvider) => boolean,
  ms: number,
  label: string,
): Promise<void> {
  await until(() => providers.every(predicate), ms, label).catch((error: unknown) => {
    const behind = providers.filter((p) => !predicate(p)).length
    const codes = [...new Set(providers.flatMap((p) => p.closeCodes))]
    throw new Error(
      `${String(error)} (${behind} of ${providers.length} behind; close codes seen: ${codes.join(',') || 'none'})`,
    )
  })
}

/** Resolves once every provider is connected and synced; rejects after `ms` naming the close codes. */
export function whenAllSynced(providers: readonly NodeProvider[], ms: number, label: string): Promise<void> {
  return untilAll(providers, (p) => p.wsconnected && p.synced, ms, label)
}

/**
 * What the server holds for `room`, read through a fresh stock 3.x provider: waits (bounded) until
 * `read(doc)` equals `expected` and returns the last value read, for the caller to assert on. A
 * fresh connection proves the content reached the server, not only the other clients.
 */
export async function readFromServer<T>(
  serverUrl: string,
  room: string,
  read: (doc: Y.Doc) => T,
  expected: T,
  ms = 20_000,
): Promise<T> {
  const reader = connectNodeProvider(serverUrl, room, 'v3')
  try {
    await whenAllSynced([reader], ms, `a reader synced on ${room}`)
    await until(() => read(reader.doc) === expected, ms, `the server holds the expected ${room}`).catch(
      () => undefined, // The caller's assertion shows the difference.
    )
    return read(reader.doc)
  } finally {
    reader.destroy()
  }
}
