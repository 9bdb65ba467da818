// Small HTTP probes for tests: the answer to an upgrade request, and samples from /metrics.

import WebSocket from 'ws'
import { withTimeout } from './wait.js'

/**
 * Resolves the HTTP status an upgrade request got: the refusal's status, 101 if it was accepted,
 * or -1 if the connection failed without an HTTP answer.
 */
export function upgradeStatus(target: string): Promise<number> {
  return withTimeout(
    new Promise<number>((resolve) => {
      const socket = new WebSocket(target)
      socket.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0)
        socket.terminate()
      })
      socket.on('open', () => {
        resolve(101)
        socket.terminate()
      })
      socket.on('error', () => resolve(-1))
    }),
    5_000,
    'upgrade answered',
  )
}

/** Scrapes `/metrics` of the server on `port`; the result reads one sample (NaN when absent). */
export async function scrapeMetrics(port: number): Promise<(name: string, labels?: string) => number> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`)
  const text = await response.text()
  return (name, labels) => {
    const wanted = labels === undefined ? name : `${name}{${labels}}`
    const line = text.split('\n').find((l) => l.startsWith(`${wanted} `))
    return line === undefined ? Number.NaN : Number(line.slice(wanted.length + 1))
  }
}
