// The history API over HTTP: session listing, state at a seq or time, the log from a seq
// (streamed NDJSON), export, import, fork, on-demand compaction and deletion. docs/history.md is
// the reference.

import { ColloquyError } from '../../shared/errors.js'
import { CloseCode } from '../../shared/protocol/close-codes.js'
import { isValidSessionId } from '../../shared/session-id.js'
import type { CompactionScheduler } from '../compaction/scheduler.js'
import { conversationOfState, forkSession, importConversation, importState } from '../history/snapshots.js'
import {
  type HistoryDeps,
  type HistoryPoint,
  readLogFrom,
  readStateAt,
  requireMeta,
} from '../history/state.js'
import type { Distribution } from '../session/distribution.js'
import type { HttpRequest, HttpResponse, Route } from './router.js'

/** The loaded sessions, as `DELETE /sessions/:id` needs them (the session registry). */
export interface DeletableSessions {
  /** Refuses new connections to the session until the returned function is called. */
  block(sessionId: string): () => void
  /** The loaded session, if any: ending it closes its connections and unloads it. */
  get(sessionId: string): { end(code: number, reason: string): void } | undefined
}

/** The write queue, as `DELETE /sessions/:id` needs it. */
export interface DeletableWrites {
  pendingFor(sessionId: string): number
  /** Resolves once everything queued before the call is durable. */
  flush(): Promise<void>
}

/** What the history routes use. */
export interface HistoryRoutesOptions extends HistoryDeps {
  readonly scheduler?: CompactionScheduler
  /** With `writes`, lets `DELETE /sessions/:id` close and unload a session it deletes. */
  readonly sessions?: DeletableSessions
  readonly writes?: DeletableWrites
  /**
   * The other processes of a cluster: `DELETE /sessions/:id` has every one of them end the session
   * (and flush its writes) before deleting, and refuses the delete with 503 when one does not;
   * an import or fork refuses a target another process has open (409), as one open here.
   */
  readonly distribution?: Pick<Distribution, 'retireEverywhere' | 'openElsewhere'>
}

const JSON_TYPE = { 'content-type': 'application/json' }

function json(status: number, value: unknown): HttpResponse {
  return { status, headers: JSON_TYPE, body: JSON.stringify(value) }
}

function sessionParam(request: HttpRequest, name = 'id'): string {
  const value = request.params[name] ?? ''
  if (!isValidSessionId(value))
    throw new ColloquyError('invalid-session-id', `invalid session id: ${JSON.stringify(value)}`)
  return value
}

function integerParam(request: HttpRequest, name: string): number | undefined {
  const raw = request.query.get(name)
  if (raw === null || raw === '') return undefined
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new ColloquyError('bad-request', `${name} must be an integer ≥ 0`)
  }
  return Number(raw)
}

/** `?seq=N`, `?time=<ms or ISO 8601>`, or nothing (latest). */
export function pointOf(query: URLSearchParams): HistoryPoint {
  const seq = query.get('seq')
  const time = query.get('time')
  if (seq !== null && time !== null) throw new ColloquyError('bad-request', 'give seq or time, not both')
  if (seq !== null) {
    if (!/^\d+$/.test(seq)) throw new ColloquyError('bad-request', 'seq must be an integer ≥ 0')
    return { seq: Number(seq) }
  }
  if (time !== null) {
    const ms = /^\d+$/.test(time) ? Number(time) : Date.parse(time)
    if (!Number.isFinite(ms))
      throw new ColloquyError('bad-request', 'time must be ms since the epoch or ISO 8601')
    return { time: ms }
  }
  return { latest: true }
}

function isFlag(query: URLSearchParams, name: string): boolean {
  const value = query.get(name)
  return value !== null && value !== 'false' && value !== '0'
}

function formatOf(request: HttpRequest): 'yjs' | 'json' {
  const format = request.query.get('format') ?? 'yjs'
  if (format !== 'yjs' && format !== 'json')
    throw new ColloquyError('bad-request', 'format must be yjs or json')
  return format
}

/** Lines of NDJSON, one per log entry: `{"seq":1,"time":…,"update":"<base64>"}`. */
async function* ndjsonLog(entries: AsyncIterable<{ seq: number; time: number; update: Uint8Array }>) {
  let batch = ''
  for await (const entry of entries) {
    batch += `${JSON.stringify({ seq: entry.seq, time: entry.time, update: Buffer.from(entry.update).toString('base64') })}\n`
    // Several entries per write: one syscall per ~64 KiB rather than per entry.
    if (batch.length >= 65_536) {
      yield batch
      batch = ''
    }
  }
  if (batch.length > 0) yield batch
}

/** The history routes, ready for {@link createRouter}. */
export function historyRoutes(options: HistoryRoutesOptions): Route[] {
  const deps: HistoryDeps = options
  const now = options.now ?? Date.now

  /** An import or fork target open on another node of a cluster is refused, as one open here. */
  const refuseIfOpenElsewhere = async (sessionId: string): Promise<void> => {
    const nodes = (await options.distribution?.openElsewhere(sessionId)) ?? []
    if (nodes.length > 0)
      throw new ColloquyError('session-exists', `session ${sessionId} is open on node ${nodes.join(', ')}`)
  }

  const stateRoute =
    (isDownload: boolean) =>
    async (request: HttpRequest): Promise<HttpResponse> => {
      const sessionId = sessionParam(request)
      const format = formatOf(request)
      const state = await readStateAt(deps, sessionId, pointOf(request.query), {
        isNearestAllowed: isFlag(request.query, 'nearest'),
      })
      const headers: Record<string, string> = {
        'x-colloquy-seq': String(state.seq),
        'x-colloquy-time': String(state.time),
        'x-colloquy-exact': String(state.isExact),
      }
      if (isDownload) {
        const extension = format === 'json' ? 'json' : 'yjs'
        headers['content-disposition'] = `attachment; filename="${sessionId}@${state.seq}.${extension}"`
      }
      if (format === 'json') {
        return {
          status: 200,
          headers: { ...headers, ...JSON_TYPE },
          body: JSON.stringify(conversationOfState(state, now())),
        }
      }
      return {
        status: 200,
        headers: { ...headers, 'content-type': 'application/octet-stream' },
        body: state.update,
      }
    }

  return [
    {
      method: 'GET',
      pattern: '/sessions',
      access: 'admin',
      // Only the sessions the caller's token covers: a token for one session or one prefix
      // learns nothing of the others, not even their ids.
      handler: async (request) =>
        json(200, {
          sessions: (await options.store.listSessions()).filter((session) =>
            request.inScope(session.sessionId),
          ),
        }),
    },
    {
      method: 'GET',
      pattern: '/sessions/:id',
      access: 'read',
      async handler(request) {
        const sessionId = sessionParam(request)
        const meta = await requireMeta(options.store, sessionId)
        const checkpoints = (await options.store.listCheckpoints(sessionId)).map((cp) => ({
          seq: cp.seq,
          time: cp.time,
          bytes: cp.state.byteLength,
        }))
        const [first] = await options.store.readLog(sessionId, { limit: 1 })
        return json(200, { ...meta, firstLogSeq: first?.seq ?? null, checkpoints })
      },
    },
    { method: 'GET', pattern: '/sessions/:id/state', access: 'read', handler: stateRoute(false) },
    { method: 'GET', pattern: '/sessions/:id/export', access: 'read', handler: stateRoute(true) },
    {
      method: 'GET',
      pattern: '/sessions/:id/log',
      access: 'read',
      async handler(request) {
        const sessionId = sessionParam(request)
        const fromSeq = integerParam(request, 'from')
        const toSeq = integerParam(request, 'to')
        const entries = readLogFrom(options.store, sessionId, {
          ...(fromSeq === undefined ? {} : { fromSeq }),
          ...(toSeq === undefined ? {} : { toSeq }),
        })
        // Pull the first entry now, so a refusal (trimmed, unknown session) is a proper error status.
        const first = await entries.next()
        async function* all() {
          if (first.done === true) return
          yield first.value
          yield* entries
        }
        return { status: 200, headers: { 'content-type': 'application/x-ndjson' }, body: ndjsonLog(all()) }
      },
    },
    {
      method: 'POST',
      pattern: '/sessions/:id/import',
      access: 'admin',
      acceptsBody: true,
      async handler(request) {
        const sessionId = sessionParam(request)
        await refuseIfOpenElsewhere(sessionId)
        const body = await request.body()
        const isJson = (request.headers['content-type'] ?? '').startsWith('application/json')
        if (isJson) {
          let parsed: unknown
          try {
            parsed = JSON.parse(Buffer.from(body).toString('utf8'))
          } catch (error) {
            throw new ColloquyError('invalid-export', 'the body is not JSON', { cause: error })
          }
          return json(201, await importConversation(deps, sessionId, parsed))
        }
        return json(201, await importState(deps, sessionId, body))
      },
    },
    {
      method: 'POST',
      pattern: '/sessions/:id/fork',
      access: 'admin',
      // The target is written: it must be in the caller's scope as much as the source.
      sessionsNamed: (request) => [request.params.id ?? '', request.query.get('to') ?? ''],
      async handler(request) {
        const sessionId = sessionParam(request)
        const target = request.query.get('to') ?? ''
        if (isValidSessionId(target)) await refuseIfOpenElsewhere(target)
        return json(201, await forkSession(deps, sessionId, target, pointOf(request.query)))
      },
    },
    {
      method: 'DELETE',
      pattern: '/sessions/:id',
      access: 'admin',
      async handler(request) {
        const sessionId = sessionParam(request)
        // No new connection may load the session (and write to it) from here to the delete.
        const unblock = options.sessions?.block(sessionId) ?? (() => undefined)
        try {
          // Writes still queued count as the session existing: let them land before looking.
          if ((options.writes?.pendingFor(sessionId) ?? 0) > 0) await options.writes?.flush()
          await requireMeta(options.store, sessionId)
          // In a cluster, every other node first does what this one does below, and holds the
          // session closed until the delete is done (a node that does not confirm: 503, nothing
          // deleted). Otherwise a node with the session loaded would keep serving its document,
          // and its writes would land after the delete.
          const others = await options.distribution?.retireEverywhere(
            sessionId,
            CloseCode.GoingAway,
            'session deleted',
          )
          try {
            // Closes its connections (1001: clients reconnect, and are refused until the delete is
            // done) and drops it from memory; then waits until every write it queued is on disk,
            // so none lands after the delete.
            options.sessions?.get(sessionId)?.end(CloseCode.GoingAway, 'session deleted')
            await options.writes?.flush()
            // Waits for a compaction of the session already running (it would write a checkpoint
            // after the delete otherwise); with throughSeq 0 this one folds nothing.
            await options.scheduler?.compactNow(sessionId, 0).catch(() => undefined)
            await options.store.deleteSession(sessionId)
          } finally {
            others?.release()
          }
          return { status: 204, body: '' }
        } finally {
          unblock()
        }
      },
    },
    {
      method: 'POST',
      pattern: '/sessions/:id/compact',
      access: 'admin',
      async handler(request) {
        const sessionId = sessionParam(request)
        if (options.scheduler === undefined) throw new ColloquyError('bad-request', 'compaction is disabled')
        await requireMeta(options.store, sessionId)
        const result = await options.scheduler.compactNow(sessionId, integerParam(request, 'seq'))
        return json(200, result ?? { sessionId, isCompacted: false, reason: 'nothing to fold' })
      },
    },
  ]
}
