// What the terminal clients say when the server refuses the WebSocket upgrade with an HTTP status
// (401/403 token, 400 session id, 429 limits): a `ws` socket that reads the refusal's status and
// body and hands them to the command, which prints them and stops instead of retrying forever.

import type { IncomingMessage } from 'node:http'
import WebSocket from 'ws'
import type { WebSocketLikeConstructor } from '../websocket.js'

/** An HTTP answer other than 101 to the upgrade request. */
export interface UpgradeRefusal {
  readonly status: number
  /** The server's explanation (its response body, first 500 characters), possibly empty. */
  readonly detail: string
}

/** The most of a refusal's body read and shown. */
const MAX_DETAIL_CHARS = 500

/** What a refusal means to the person at the terminal, by status. */
const REFUSAL_MEANING = {
  400: 'session id refused',
  401: 'token rejected',
  403: 'token rejected',
  429: 'too many requests, refused by the server',
} as const

/** One line: `token rejected (401): invalid token`. */
export function describeRefusal(refusal: UpgradeRefusal): string {
  const meaning =
    REFUSAL_MEANING[refusal.status as keyof typeof REFUSAL_MEANING] ?? 'connection refused by the server'
  const detail = refusal.detail.trim()
  return `${meaning} (${refusal.status})${detail === '' ? '' : `: ${detail}`}`
}

/**
 * Returns a WebSocket class (the `ws` package's) that reports a refused upgrade to `onRefused`
 * before the socket closes.
 *
 * @remarks
 * Without this, `ws` reports only "Unexpected server response" and a close with 1006, which the sync
 * client must treat as a network failure and retry. The socket is closed (1006) only after
 * `onRefused` ran, so a command that stops on a refusal stops before any retry is scheduled.
 */
export function refusalAwareWebSocket(
  onRefused: (refusal: UpgradeRefusal) => void,
): WebSocketLikeConstructor {
  return class RefusalAwareWebSocket extends WebSocket {
    constructor(url: string) {
      super(url)
      this.once('unexpected-response', (_request, response: IncomingMessage) => {
        let body = ''
        let isReported = false
        const finish = (): void => {
          if (isReported) return
          isReported = true
          onRefused({ status: response.statusCode ?? 0, detail: body.slice(0, MAX_DETAIL_CHARS) })
          this.terminate()
        }
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          if (body.length < MAX_DETAIL_CHARS) body += chunk
        })
        response.once('end', finish)
        response.once('error', finish)
      })
    }
  }
}
