// Read access to a session's history over the server's HTTP API (browsers and Node): the state at
// a seq or a time, the log from a seq, export, and the admin calls (list, import, fork, compact,
// delete).

import type { ConversationExport } from '../shared/export/conversation-export.js'

/** Options of {@link createHistoryClient}. */
export interface HistoryClientOptions {
  /** The server's HTTP base, e.g. `http://127.0.0.1:8080` (a `ws://` URL is converted). */
  readonly baseUrl: string
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch
  /** Extra headers on every request (the auth seam: `authorization` once the server checks it). */
  readonly headers?: Readonly<Record<string, string>>
}

/** A point of history: a seq, a time (ms since epoch or a Date), or the latest state. */
export type HistoryAt = { readonly seq: number } | { readonly time: number | Date } | undefined

/** A state read as a Yjs update, with the seq and time it stands for. */
export interface HistoryState {
  readonly seq: number
  readonly time: number
  readonly isExact: boolean
  readonly update: Uint8Array
}

/** One log entry as the server streams it. */
export interface HistoryLogEntry {
  readonly seq: number
  readonly time: number
  readonly update: Uint8Array
}

/** An error answered by the server: `code` is one of shared/errors.ts. */
export class HistoryError extends Error {
  readonly code: string
  readonly status: number
  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'HistoryError'
    this.status = status
    this.code = code
  }
}

/** A stored session as `GET /sessions` lists it (the store's meta). */
export interface ListedSession {
  readonly sessionId: string
  /** The highest seq stored. */
  readonly lastSeq: number
  readonly checkpointSeq: number
  readonly logCount: number
  readonly logBytes: number
  readonly checkpointBytes: number
  readonly createdAt: number
  readonly updatedAt: number
}

/** The history API of one server. */
export interface HistoryClient {
  /** Every stored session, in session id order (admin). */
  listSessions(): Promise<ListedSession[]>
  /** Session meta plus `firstLogSeq` and the retained checkpoints (seq, time, bytes). */
  session(sessionId: string): Promise<Record<string, unknown>>
  /** The state at a point, as a Yjs update (apply it to a fresh Y.Doc to read it). */
  state(sessionId: string, at?: HistoryAt, options?: { nearest?: boolean }): Promise<HistoryState>
  /** The conversation at a point, as the versioned JSON export. */
  conversation(
    sessionId: string,
    at?: HistoryAt,
    options?: { nearest?: boolean },
  ): Promise<ConversationExport>
  /** The log from `from` (inclusive), entry by entry as the server streams it. */
  log(sessionId: string, options?: { from?: number; to?: number }): AsyncGenerator<HistoryLogEntry>
  /** Creates `sessionId` from a Yjs update or a conversation export; refused if it exists. */
  importSession(
    sessionId: string,
    snapshot: Uint8Array | ConversationExport,
  ): Promise<Record<string, unknown>>
  /** Creates `targetId` from the state of `sessionId` at a point; refused if the target exists. */
  fork(sessionId: string, targetId: string, at?: HistoryAt): Promise<Record<string, unknown>>
  /** Compacts a session now (admin). */
  compact(sessionId: string, throughSeq?: number): Promise<Record<string, unknown>>
  /**
   * Deletes a session and its whole history (admin); its connected clients are closed with 1001.
   * Rejects with `session-not-found` (404) when it does not exist.
   */
  deleteSession(sessionId: string): Promise<void>
}

function queryOf(at: HistoryAt, extra: Record<string, string | undefined> = {}): string {
  const params = new URLSearchParams()
  if (at !== undefined && 'seq' in at) params.set('seq', String(at.seq))
  if (at !== undefined && 'time' in at)
    params.set('time', String(at.time instanceof Date ? at.time.getTime() : at.time))
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) params.set(key, value)
  const text = params.toString()
  return text.length === 0 ? '' : `?${text}`
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** Creates a client of the history API. */
export function createHistoryClient(options: HistoryClientOptions): HistoryClient {
  const base = options.baseUrl.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/+$/, '')
  const doFetch = options.fetch ?? fetch
  const path = (sessionId: string, rest = ''): string =>
    `${base}/sessions/${encodeURIComponent(sessionId)}${rest}`

  async function request(url: string, init: RequestInit = {}): Promise<Response> {
    const response = await doFetch(url, {
      ...init,
      headers: { ...options.headers, ...(init.headers as Record<string, string>) },
    })
    if (!response.ok) {
      let code = 'internal'
      let message = `${response.status} ${response.statusText}`
      try {
        const body = (await response.json()) as { error?: { code?: string; message?: string } }
        code = body.error?.code ?? code
        message = body.error?.message ?? message
      } catch {
        // Not our JSON error shape (a proxy's page): keep the status line.
      }
      throw new HistoryError(response.status, code, message)
    }
    return response
  }

  const json = async (url: string, init?: RequestInit): Promise<Record<string, unknown>> =>
    (await (await request(url, init)).json()) as Record<string, unknown>

  return {
    async listSessions() {
      const body = await json(`${base}/sessions`)
      return Array.isArray(body.sessions) ? (body.sessions as ListedSession[]) : []
    },
    session: (sessionId) => json(path(sessionId)),
    async state(sessionId, at, stateOptions = {}) {
      const response = await request(
        path(sessionId, `/state${queryOf(at, { nearest: stateOptions.nearest === true ? '1' : undefined })}`),
      )
      return {
        seq: Number(response.headers.get('x-colloquy-seq')),
        time: Number(response.headers.get('x-colloquy-time')),
        isExact: response.headers.get('x-colloquy-exact') === 'true',
        update: new Uint8Array(await response.arrayBuffer()),
      }
    },
    async conversation(sessionId, at, stateOptions = {}) {
      const query = queryOf(at, { format: 'json', nearest: stateOptions.nearest === true ? '1' : undefined })
      return (await json(path(sessionId, `/state${query}`))) as unknown as ConversationExport
    },
    async *log(sessionId, logOptions = {}) {
      const params = queryOf(undefined, {
        from: logOptions.from === undefined ? undefined : String(logOptions.from),
        to: logOptions.to === undefined ? undefined : String(logOptions.to),
      })
      const response = await request(path(sessionId, `/log${params}`))
      if (response.body === null) return
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let pending = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (value !== undefined) pending += value
        const lines = pending.split('\n')
        pending = done ? '' : (lines.pop() ?? '')
        for (const line of lines) {
          if (line.trim().length === 0) continue
          const entry = JSON.parse(line) as { seq: number; time: number; update: string }
          yield { seq: entry.seq, time: entry.time, update: base64ToBytes(entry.update) }
        }
        if (done) return
      }
    },
    importSession(sessionId, snapshot) {
      const isBinary = snapshot instanceof Uint8Array
      return json(path(sessionId, '/import'), {
        method: 'POST',
        headers: { 'content-type': isBinary ? 'application/octet-stream' : 'application/json' },
        body: isBinary ? (snapshot as Uint8Array<ArrayBuffer>) : JSON.stringify(snapshot),
      })
    },
    fork: (sessionId, targetId, at) =>
      json(path(sessionId, `/fork${queryOf(at, { to: targetId })}`), { method: 'POST' }),
    compact: (sessionId, throughSeq) =>
      json(
        path(
          sessionId,
          `/compact${queryOf(undefined, { seq: throughSeq === undefined ? undefined : String(throughSeq) })}`,
        ),
        {
          method: 'POST',
        },
      ),
    async deleteSession(sessionId) {
      const response = await request(path(sessionId), { method: 'DELETE' })
      // Drain the (empty) body so the connection can be reused.
      await response.arrayBuffer()
    },
  }
}
