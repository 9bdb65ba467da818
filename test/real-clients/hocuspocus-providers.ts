// Node side of the Hocuspocus interop tests: the stock @hocuspocus/provider 3.4.4 and 4.8.0 (as
// `hocuspocus-provider-v4`) with `ws` as their WebSocket; one shared socket per client, any number
// of documents on it, each recording what the provider reported (auth, close, unsynced count).

import {
  HocuspocusProvider as ProviderV3,
  HocuspocusProviderWebsocket as SocketV3,
} from '@hocuspocus/provider'
import {
  HocuspocusProvider as ProviderV4,
  HocuspocusProviderWebsocket as SocketV4,
} from 'hocuspocus-provider-v4'
import WebSocket from 'ws'
import * as Y from 'yjs'

/** The provider releases under test. */
export type HocuspocusVersion = '3.4.4' | '4.8.0'

export const HOCUSPOCUS_VERSIONS: readonly HocuspocusVersion[] = ['3.4.4', '4.8.0']

/** What a test reads of one document's provider. */
export interface HocuspocusDocument {
  readonly name: string
  readonly doc: Y.Doc
  readonly provider: ProviderV3
  /** The scope of its `authenticated` message, once received. */
  readonly scope: string | undefined
  /** Reasons of its permission-denied messages, in order. */
  readonly denials: readonly string[]
  /** Reasons of its close messages (a document closed by the server), in order. */
  readonly closes: readonly string[]
  /** Stateless payloads received, in order. */
  readonly stateless: readonly string[]
  readonly unsyncedChanges: number
  readonly synced: boolean
  destroy(): void
}

/** One HocuspocusProviderWebsocket and the documents opened on it. */
export interface HocuspocusClient {
  readonly version: HocuspocusVersion
  /** Opens `name` on the shared socket with `token` (a string, or a function asked on every open). */
  open(
    name: string,
    token: string | (() => Promise<string> | string),
    doc?: Y.Doc,
    extra?: { readonly forceSyncInterval?: number },
  ): HocuspocusDocument
  /** Close codes the socket saw, in order. */
  readonly socketCloses: readonly number[]
  readonly isConnected: boolean
  destroy(): void
}

/** Connects a shared socket of the given provider release to `url` (e.g. ws://127.0.0.1:port/hocuspocus). */
export function connectHocuspocus(url: string, version: HocuspocusVersion): HocuspocusClient {
  const options = {
    url,
    WebSocketPolyfill: WebSocket,
    // Reconnect quickly in tests (the default backoff starts at 1 s).
    delay: 50,
    minDelay: 50,
    maxDelay: 500,
    factor: 1.5,
  }
  const socket = (version === '3.4.4'
    ? new SocketV3(options as never)
    : new SocketV4(options as never)) as unknown as SocketV3
  const socketCloses: number[] = []
  let isConnected = false
  socket.on('status', ({ status }: { status: string }) => {
    isConnected = status === 'connected'
  })
  socket.on('close', ({ event }: { event: { code: number } }) => {
    socketCloses.push(event.code)
  })
  const documents: HocuspocusDocument[] = []
  return {
    version,
    open(name, token, doc = new Y.Doc(), extra = {}) {
      let scope: string | undefined
      const denials: string[] = []
      const closes: string[] = []
      const stateless: string[] = []
      const configuration = {
        websocketProvider: socket,
        name,
        document: doc,
        token,
        ...extra,
        onAuthenticated: ({ scope: granted }: { scope: string }) => {
          scope = granted
        },
        onAuthenticationFailed: ({ reason }: { reason: string }) => {
          denials.push(reason)
        },
        onStateless: ({ payload }: { payload: string }) => {
          stateless.push(payload)
        },
      }
      const provider = (version === '3.4.4'
        ? new ProviderV3(configuration as never)
        : new ProviderV4(configuration as never)) as unknown as ProviderV3
      provider.on('close', ({ event }: { event: { code: number; reason: string } }) => {
        // The provider forwards its socket's closes too; a document's own close has code 1000 and a reason.
        if (event.reason !== undefined && event.reason.length > 0 && event.code === 1000)
          closes.push(event.reason)
      })
      provider.attach()
      const document: HocuspocusDocument = {
        name,
        doc,
        provider,
        get scope() {
          return scope
        },
        denials,
        closes,
        stateless,
        get unsyncedChanges() {
          return provider.unsyncedChanges
        },
        get synced() {
          return provider.synced
        },
        destroy: () => provider.destroy(),
      }
      documents.push(document)
      return document
    },
    socketCloses,
    get isConnected() {
      return isConnected
    },
    destroy() {
      for (const document of documents) document.destroy()
      socket.destroy()
    },
  }
}
