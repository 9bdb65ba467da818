// HTTP as an attacker writes it: raw bytes on a TCP socket, any header forged (Host, Origin,
// Content-Length, X-Forwarded-For), and the server's answer read back as it arrives.

import net from 'node:net'
import { withTimeout } from './wait.js'

/** The first answer the server wrote on a raw connection. */
export interface RawAnswer {
  readonly status: number
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** A request head: the request line and headers, ended by the blank line. */
export function requestHead(
  method: string,
  target: string,
  headers: Readonly<Record<string, string | number>>,
) {
  const lines = [`${method} ${target} HTTP/1.1`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** A WebSocket upgrade request's headers (Host and the handshake); add Origin etc. to forge. */
export function upgradeHeaders(host: string, extra: Readonly<Record<string, string>> = {}) {
  return {
    host,
    connection: 'Upgrade',
    upgrade: 'websocket',
    'sec-websocket-version': '13',
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    ...extra,
  }
}

function parseAnswer(text: string): RawAnswer | undefined {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return undefined
  const [statusLine = '', ...headerLines] = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const status = Number(statusLine.split(' ')[1])
  const body = text.slice(end + 4)
  if (status === 101) return { status, headers, body: '' }
  const length = headers['content-length']
  if (length !== undefined && Buffer.byteLength(body) < Number(length)) return undefined
  if (length === undefined && headers['transfer-encoding'] === 'chunked' && !body.endsWith('0\r\n\r\n'))
    return undefined
  return { status, headers, body }
}

/**
 * Sends `head` (and `body`, if any) on a fresh connection to 127.0.0.1:`port` and resolves the
 * first complete answer; the socket is destroyed then. Bounded by `timeoutMs`.
 */
export function rawExchange(port: number, head: string, body?: Uint8Array | string, timeoutMs = 10_000) {
  return withTimeout(
    new Promise<RawAnswer>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1')
      let received = ''
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1')
        const answer = parseAnswer(received)
        if (answer !== undefined) {
          socket.destroy()
          resolve(answer)
        }
      })
      socket.on('error', reject)
      socket.on('close', () =>
        reject(new Error(`connection closed before an answer: ${JSON.stringify(received)}`)),
      )
      socket.write(head)
      if (body !== undefined) socket.write(body)
    }),
    timeoutMs,
    'raw HTTP answer',
  )
}
