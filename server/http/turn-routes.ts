// The turns API over HTTP (docs/agents.md "The HTTP API"): devices create, read and cancel turns;
// pool workers claim, renew, complete and fail them. Parses and checks every body (zod), checks who
// may call what, and leaves the rest to the turn service.

import { z } from 'zod'
import type { Author } from '../../shared/conversation/index.js'
import { ColloquyError } from '../../shared/errors.js'
import { isValidSessionId } from '../../shared/session-id.js'
import {
  isValidPoolName,
  isValidPriority,
  isValidTenant,
  isValidTurnMessageId,
  parseTurnId,
} from '../../shared/turns/turn.js'
import { labelsFor, ScopeMode, turnScopeOf } from '../auth/turn-scope.js'
import type { Logger } from '../observability/log.js'
import { MAX_CLAIM_TURNS, MAX_CLAIM_WAIT_MS, type TurnApi } from '../turns/turn-service.js'
import type { HttpRequest, HttpResponse, Route } from './router.js'

/** Largest body a turn route reads (bytes). */
export const MAX_TURN_BODY_BYTES = 16 * 1024

const JSON_TYPE = { 'content-type': 'application/json' }

function json(status: number, value: unknown): HttpResponse {
  return { status, headers: JSON_TYPE, body: JSON.stringify(value) }
}

const shortText = z.string().max(1_000)
const id128 = z.string().min(1).max(128)

const createSchema = z.object({
  sessionId: z.string().refine(isValidSessionId, 'invalid session id'),
  messageId: z.string().refine(isValidTurnMessageId, 'messageId must be 1–128 of A-Za-z0-9._:-'),
  pool: z.string().refine(isValidPoolName, 'invalid pool name'),
  priority: z.number().refine(isValidPriority, 'priority must be 0, 1 or 2').optional(),
  tenant: z.string().refine(isValidTenant, 'tenant must be 1–64 of A-Za-z0-9._:-').optional(),
  deadline: z.number().int().nonnegative().optional(),
  timeoutMs: z.number().int().positive().optional(),
})
const claimSchema = z.object({
  max: z.number().int().min(1).max(MAX_CLAIM_TURNS).optional(),
  waitMs: z.number().int().min(0).max(MAX_CLAIM_WAIT_MS).optional(),
  instanceId: id128,
  name: z.string().max(200).optional(),
})
const renewSchema = z.object({
  leaseId: id128,
  state: z.enum(['claimed', 'streaming']).optional(),
  replyId: z.string().refine(isValidTurnMessageId, 'invalid replyId').optional(),
})
const completeSchema = z.object({
  leaseId: id128,
  replyId: z.string().refine(isValidTurnMessageId, 'invalid replyId').optional(),
})
const failSchema = z.object({
  leaseId: id128,
  reason: z.string().regex(/^[a-z0-9-]{1,64}$/, 'reason must be a short code of a-z 0-9 -'),
  reasonText: shortText.optional(),
  retry: z.boolean().optional(),
})
const cancelSchema = z.object({ reasonText: shortText.optional() })
/** One decoder for every body: building one per request was ~2 % of the server's busy time in issue 17's burst. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Reads and checks a JSON body; an empty body reads as `{}` when `isOptional`. */
async function bodyOf<T>(request: HttpRequest, schema: z.ZodType<T>, isOptional = false): Promise<T> {
  const bytes = await request.body()
  let value: unknown = {}
  if (bytes.byteLength > 0 || !isOptional) {
    try {
      value = JSON.parse(utf8.decode(bytes))
    } catch {
      throw new ColloquyError('bad-request', 'the body must be JSON')
    }
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue?.path.join('.') ?? ''
    throw new ColloquyError('bad-request', `${where === '' ? 'body' : where}: ${issue?.message ?? 'invalid'}`)
  }
  return parsed.data
}

function turnIdParam(request: HttpRequest): string {
  const id = request.params.id ?? ''
  if (parseTurnId(id) === undefined) throw new ColloquyError('bad-request', 'not a turn id')
  return id
}

/** The session a turn id names, for the router's scope check (none when it is no turn id). */
function sessionOfTurn(request: HttpRequest): readonly string[] {
  const parts = parseTurnId(request.params.id ?? '')
  return parts === undefined ? [] : [parts.sessionId]
}

/**
 * Worker routes need an agent (or admin) token for every session: a pool serves them all.
 * Without tokens (loopback, anonymous) the router let the request through already.
 */
function requireWorker(request: HttpRequest): string {
  const caller = request.caller
  if (caller === undefined) return 'anonymous'
  if (caller.kind !== 'agent' && caller.role !== 'admin') {
    throw new ColloquyError('forbidden', 'pool routes need an agent token')
  }
  if (caller.sessionPrefix !== '') {
    throw new ColloquyError('forbidden', 'pool routes need a token for every session (spx "")')
  }
  return caller.peerId
}

function authorOf(request: HttpRequest): Author {
  const caller = request.caller
  return caller === undefined ? { id: 'anonymous', kind: 'device' } : { id: caller.peerId, kind: caller.kind }
}

/** The same object without its `undefined` properties (what `exactOptionalPropertyTypes` wants). */
function definedOnly<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>
  }
}

/**
 * `POST /api/turns/:id/<action>`: a worker's call on a turn it leases; the body checked with
 * `schema`, the answer `act`'s result as JSON 200.
 */
function leaseRoute<T>(
  action: string,
  schema: z.ZodType<T>,
  act: (id: string, input: T) => Promise<unknown>,
): Route {
  return {
    method: 'POST',
    pattern: `/api/turns/:id/${action}`,
    access: 'write',
    acceptsBody: true,
    maxBodyBytes: MAX_TURN_BODY_BYTES,
    sessionsNamed: () => [],
    handler: async (request) => {
      requireWorker(request)
      const id = turnIdParam(request)
      const input = await bodyOf(request, schema)
      return json(200, await act(id, input))
    },
  }
}

/** The routes of the turns API; `logger` records a creation beyond the token's tenant or class. */
export function turnRoutes(service: TurnApi, logger?: Logger): Route[] {
  const body = { acceptsBody: true, maxBodyBytes: MAX_TURN_BODY_BYTES } as const
  const noSessions = (): readonly string[] => []
  const poolParam = (request: HttpRequest): string => {
    const pool = request.params.pool ?? ''
    if (!service.hasPool(pool))
      throw new ColloquyError('unknown-pool', `no pool named ${JSON.stringify(pool.slice(0, 64))}`)
    return pool
  }
  return [
    {
      method: 'POST',
      pattern: '/api/turns',
      access: 'write',
      ...body,
      // The session is in the body: checked against the caller's scope below.
      sessionsNamed: noSessions,
      handler: async (request) => {
        const input = await bodyOf(request, createSchema)
        if (!request.inScope(input.sessionId)) {
          throw new ColloquyError('forbidden', 'token not valid for this session')
        }
        // The tenant and class are the token's to decide (docs/agents.md "Tenants and priority");
        // without tokens (loopback, anonymous) the caller names them.
        const scope = turnScopeOf(request.caller ?? { role: 'admin' })
        let labels: { readonly tenant: string; readonly priority: number }
        try {
          labels = labelsFor(scope, input, ScopeMode.Refuse)
        } catch (error) {
          logger?.warn(
            {
              remote: request.remote,
              peerId: request.caller?.peerId,
              session: input.sessionId,
              tenant: input.tenant,
              priority: input.priority,
              reason: error instanceof ColloquyError ? error.code : 'invalid',
            },
            'turn refused: beyond its token',
          )
          throw error
        }
        const { tenant, priority } = labels
        const created = await service.create({
          sessionId: input.sessionId,
          messageId: input.messageId,
          pool: input.pool,
          priority,
          tenant,
          ...(input.deadline === undefined ? {} : { deadline: input.deadline }),
          ...(input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs }),
        })
        return json(created.isNew ? 201 : 200, created)
      },
    },
    {
      method: 'GET',
      pattern: '/api/turns/:id',
      access: 'read',
      sessionsNamed: sessionOfTurn,
      handler: async (request) => json(200, await service.get(turnIdParam(request))),
    },
    {
      method: 'POST',
      pattern: '/api/turns/:id/cancel',
      access: 'write',
      ...body,
      sessionsNamed: sessionOfTurn,
      handler: async (request) => {
        const id = turnIdParam(request)
        const input = await bodyOf(request, cancelSchema, true)
        return json(200, await service.cancel(id, authorOf(request), input.reasonText))
      },
    },
    {
      method: 'POST',
      pattern: '/api/pools/:pool/claim',
      access: 'write',
      ...body,
      sessionsNamed: noSessions,
      handler: async (request) => {
        const peerId = requireWorker(request)
        const pool = poolParam(request)
        const input = await bodyOf(request, claimSchema)
        const turns = await service.claim(pool, {
          max: input.max ?? 1,
          waitMs: input.waitMs ?? 0,
          instanceId: input.instanceId,
          ...(input.name === undefined ? {} : { name: input.name }),
          peerId,
          isAborted: () => request.isAborted,
        })
        return json(200, { turns })
      },
    },
    {
      method: 'GET',
      pattern: '/api/pools/:pool',
      access: 'write',
      sessionsNamed: noSessions,
      handler: async (request) => {
        requireWorker(request)
        return json(200, await service.pool(poolParam(request)))
      },
    },
    leaseRoute('renew', renewSchema, (id, input) => service.renew(id, definedOnly(input))),
    leaseRoute('complete', completeSchema, (id, input) => service.complete(id, definedOnly(input))),
    leaseRoute('fail', failSchema, (id, input) => service.fail(id, definedOnly(input))),
  ]
}
