// A controllable OpenAI-compatible chat-completions server on 127.0.0.1, port 0: each request gets a
// scripted behaviour (a normal stream, a stall, an early end, a reset, an HTTP status with
// Retry-After, an endless stream) and is recorded, including whether the client hung up.

import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** What the server does with one request. */
export type FakeBehaviour =
  /** Streams `tokens` (every `delayMs`), then ends as told (default `[DONE]`). */
  | {
      readonly kind: 'reply'
      readonly tokens: readonly string[]
      readonly delayMs?: number
      readonly end?: 'done' | 'finish-reason'
    }
  /** Sends the headers and `tokens`, then nothing, never ending (until the client hangs up). */
  | { readonly kind: 'stall'; readonly tokens?: readonly string[] }
  /** Sends `tokens`, then ends the body without `[DONE]` or a finish reason. */
  | { readonly kind: 'early-end'; readonly tokens: readonly string[] }
  /** Sends `tokens`, then resets the connection (TCP RST). */
  | { readonly kind: 'reset'; readonly tokens: readonly string[] }
  /** Answers an HTTP status (with `Retry-After` when given) and a short body. */
  | { readonly kind: 'status'; readonly status: number; readonly retryAfter?: string }
  /** Sends `token` every `intervalMs` forever (until the client hangs up). */
  | { readonly kind: 'endless'; readonly token?: string; readonly intervalMs?: number }

/** One request as the server saw it. */
export interface FakeRequest {
  readonly index: number
  readonly receivedAt: number
  readonly body: { model?: string; stream?: boolean; messages: { role: string; content: string }[] }
  /** Tokens written to this response so far. */
  readonly tokensSent: number
  /** True once the connection closed before the server ended the response (the client hung up). */
  readonly isAbortedByClient: boolean
  /** Resolves when the response is over, either way. */
  readonly closed: Promise<void>
}

/** The running fake server. */
export interface FakeModelServer {
  /** e.g. `http://127.0.0.1:1234/v1`. */
  readonly baseUrl: string
  readonly requests: readonly FakeRequest[]
  /** Behaviours for the next requests, in order; after them `respond` decides. */
  enqueue(...behaviours: FakeBehaviour[]): void
  /** Decides the behaviour of requests the queue does not cover (default: a three-token reply). */
  respond(decide: (request: FakeRequest) => FakeBehaviour): void
  /** Resolves once `count` requests have arrived; rejects after `ms`. */
  whenRequests(count: number, ms?: number): Promise<void>
  close(): Promise<void>
}

const chunk = (content: string, finishReason: string | null = null): string =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finishReason }] })}\n\n`

/** Starts a fake model server. */
export async function startFakeModelServer(): Promise<FakeModelServer> {
  const requests: (FakeRequest & { tokensSent: number; isAbortedByClient: boolean })[] = []
  const queue: FakeBehaviour[] = []
  let decide: (request: FakeRequest) => FakeBehaviour = () => ({ kind: 'reply', tokens: ['a', 'b', 'c'] })
  const waiters = new Set<() => void>()
  const timers = new Set<NodeJS.Timeout>()
  const later = (fn: () => void, ms: number): void => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      fn()
    }, ms)
    timers.add(timer)
  }

  const server = http.createServer((req, res) => {
    let raw = ''
    req.on('data', (data: Buffer) => {
      raw += data.toString()
    })
    req.on('end', () => {
      let ended = false
      let closedResolve: () => void = () => {}
      const record = {
        index: requests.length,
        receivedAt: Date.now(),
        body: JSON.parse(raw) as FakeRequest['body'],
        tokensSent: 0,
        isAbortedByClient: false,
        closed: new Promise<void>((resolve) => {
          closedResolve = resolve
        }),
      }
      res.on('close', () => {
        if (!ended) record.isAbortedByClient = true
        closedResolve()
      })
      requests.push(record)
      for (const wake of [...waiters]) wake()
      const behaviour = queue.shift() ?? decide(record)
      const send = (token: string): void => {
        if (res.writableEnded || res.destroyed) return
        res.write(chunk(token))
        record.tokensSent++
      }
      const finish = (body?: string): void => {
        ended = true
        res.end(body)
      }
      if (behaviour.kind === 'status') {
        res.writeHead(behaviour.status, {
          'content-type': 'application/json',
          ...(behaviour.retryAfter === undefined ? {} : { 'retry-after': behaviour.retryAfter }),
        })
        finish(JSON.stringify({ error: { message: `fake status ${behaviour.status}` } }))
        return
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      res.flushHeaders()
      switch (behaviour.kind) {
        case 'reply': {
          const delayMs = behaviour.delayMs ?? 0
          const step = (i: number): void => {
            if (res.destroyed) return
            if (i < behaviour.tokens.length) {
              send(behaviour.tokens[i]!)
              if (delayMs > 0) later(() => step(i + 1), delayMs)
              else step(i + 1)
              return
            }
            if (behaviour.end === 'finish-reason') {
              res.write(chunk('', 'stop'))
              finish()
            } else finish('data: [DONE]\n\n')
          }
          step(0)
          return
        }
        case 'stall':
          for (const token of behaviour.tokens ?? []) send(token)
          return
        case 'early-end':
          for (const token of behaviour.tokens) send(token)
          later(() => finish(), 5)
          return
        case 'reset':
          for (const token of behaviour.tokens) send(token)
          later(() => {
            ended = true
            res.socket?.resetAndDestroy()
          }, 5)
          return
        case 'endless': {
          const tick = (): void => {
            if (res.destroyed || res.writableEnded) return
            send(behaviour.token ?? 'more ')
            later(tick, behaviour.intervalMs ?? 5)
          }
          tick()
          return
        }
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    enqueue(...behaviours) {
      queue.push(...behaviours)
    },
    respond(next) {
      decide = next
    },
    whenRequests(count, ms = 10_000) {
      if (requests.length >= count) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(wake)
          reject(
            new Error(
              `timed out after ${ms} ms waiting for ${count} model requests (got ${requests.length})`,
            ),
          )
        }, ms)
        const wake = (): void => {
          if (requests.length < count) return
          clearTimeout(timer)
          waiters.delete(wake)
          resolve()
        }
        waiters.add(wake)
      })
    },
    async close() {
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
