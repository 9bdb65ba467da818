// The optional rule "every user message in the sessions of a pool gets a turn" (`--turn-auto
// pool=sessionPrefix`): watches the message array of each loaded session whose id matches a rule
// and creates a turn for each user message a device adds, with the tenant and best class of the
// token whose connection wrote it (docs/agents.md, "Tenants and priority"). Knows nothing of HTTP
// or storage.

import * as Y from 'yjs'
import { messagesArray, readMessageMap } from '../../shared/conversation/index.js'
import { ColloquyError } from '../../shared/errors.js'
import type { CreateTurnRequest } from '../../shared/turns/api.js'
import {
  isValidPoolName,
  isValidPriority,
  isValidTenant,
  TURN_MESSAGE_ID_PATTERN,
} from '../../shared/turns/turn.js'
import { labelsFor, ScopeMode, type TurnScope, UNKNOWN_WRITER_SCOPE } from '../auth/turn-scope.js'
import type { Logger } from '../observability/log.js'

/** Turns in `pool` for every user message of the sessions whose id starts with `sessionPrefix`. */
export interface AutoTurnRule {
  readonly pool: string
  readonly sessionPrefix: string
}

const PREFIX_PATTERN = /^[A-Za-z0-9._:-]{0,128}$/

/** Parses `pool=sessionPrefix` specs (an empty prefix: every session); throws a RangeError on a bad one. */
export function parseAutoTurnRules(specs: readonly string[]): AutoTurnRule[] {
  return specs.map((spec) => {
    const at = spec.indexOf('=')
    const pool = at < 0 ? spec : spec.slice(0, at)
    const sessionPrefix = at < 0 ? '' : spec.slice(at + 1)
    if (!isValidPoolName(pool)) throw new RangeError(`"${spec}": "${pool}" is not a pool name`)
    if (!PREFIX_PATTERN.test(sessionPrefix))
      throw new RangeError(`"${spec}": "${sessionPrefix}" is not a session id prefix`)
    return { pool, sessionPrefix }
  })
}

/** Options of {@link createAutoTurns}. */
export interface AutoTurnsOptions {
  readonly rules: readonly AutoTurnRule[]
  /** Creates a turn (the turn service's create). */
  readonly create: (request: CreateTurnRequest) => Promise<unknown>
  /** A creation was refused (a full queue): the device should see why. */
  readonly refused: (request: CreateTurnRequest, error: ColloquyError) => void
  /**
   * The turn scope of the token whose connection wrote a transaction (its origin), or undefined
   * when no connection of this server did (an update relayed from another node, whose own rules
   * create the turn, or a change of the server's). Without this option every message is trusted
   * (its metadata names tenant and class), as on a server without tokens.
   */
  readonly scopeOf?: (origin: unknown) => TurnScope | undefined
  readonly logger: Logger
}

/** Watches sessions for new user messages. */
export interface AutoTurns {
  /** Starts watching a loaded session's document; returns how to stop, or undefined when no rule matches. */
  watch(sessionId: string, doc: Y.Doc): (() => void) | undefined
}

/** The scope of every writer when no `scopeOf` is given: anything goes (a server without tokens). */
const TRUSTED_SCOPE: TurnScope = { bestPriority: 0, mayNameTenant: true }

/** Key of a transaction's meta: the ranges of structs Yjs held pending when it began. */
const PENDING_RANGES = Symbol('colloquy.pendingRanges')

/** Client → [first clock, end clock) of the structs pending before a transaction. */
type PendingRanges = ReadonlyMap<number, readonly [number, number]>

/** The ranges of an update of pending structs (Yjs keeps them in the v2 encoding). */
function rangesOf(update: Uint8Array): PendingRanges {
  const { from, to } = Y.parseUpdateMetaV2(update)
  const ranges = new Map<number, readonly [number, number]>()
  for (const [client, clock] of from) ranges.set(client, [clock, to.get(client) ?? clock])
  return ranges
}

/** True when the item that holds `map` was among the structs pending before the transaction. */
function wasPending(map: Y.Map<unknown>, ranges: PendingRanges | undefined): boolean {
  const item = map._item
  if (ranges === undefined || item === null) return false
  const range = ranges.get(item.id.client)
  return range !== undefined && item.id.clock >= range[0] && item.id.clock < range[1]
}

/** Creates the watcher. */
export function createAutoTurns(options: AutoTurnsOptions): AutoTurns {
  const { rules, create, refused, logger } = options
  const scopeOf = options.scopeOf ?? (() => TRUSTED_SCOPE)
  return {
    watch(sessionId, doc) {
      const pools = rules.filter((rule) => sessionId.startsWith(rule.sessionPrefix)).map((rule) => rule.pool)
      if (pools.length === 0) return undefined
      const array = messagesArray(doc)
      // A message Yjs held pending (it named a struct not yet received) is integrated by whichever
      // update completes it, maybe another peer's: its transaction's origin is not its writer. One
      // null check per transaction; the pending update is parsed once each time Yjs replaces it,
      // so a struct left pending for good does not make every streamed token pay for its size.
      let parsed: { readonly update: Uint8Array; readonly ranges: PendingRanges } | undefined
      const beforeTransaction = (transaction: Y.Transaction): void => {
        const pending = doc.store.pendingStructs
        if (pending === null) return
        if (parsed?.update !== pending.update)
          parsed = { update: pending.update, ranges: rangesOf(pending.update) }
        transaction.meta.set(PENDING_RANGES, parsed.ranges)
      }
      // Shallow: fires when messages are added or removed, never per streamed token.
      const observer = (event: Y.YArrayEvent<unknown>): void => {
        const { origin } = event.transaction
        const writer = scopeOf(origin)
        const ranges = event.transaction.meta.get(PENDING_RANGES) as PendingRanges | undefined
        let index = 0
        for (const change of event.delta) {
          if (change.retain !== undefined) index += change.retain
          if (!Array.isArray(change.insert)) continue
          for (const entry of change.insert) {
            if (entry instanceof Y.Map) {
              const scope = wasPending(entry, ranges) ? UNKNOWN_WRITER_SCOPE : writer
              if (scope !== undefined) noteMessage(entry, index, scope)
            }
            index++
          }
        }
      }
      const noteMessage = (map: Y.Map<unknown>, index: number, scope: TurnScope): void => {
        const message = readMessageMap(map, index)
        if (message.role !== 'user' || message.author.kind !== 'device') return
        if (!TURN_MESSAGE_ID_PATTERN.test(message.id)) {
          logger.debug(
            { session: sessionId, message: message.id.slice(0, 200) },
            'no automatic turn: message id unusable',
          )
          return
        }
        const { priority, tenant } = message.metadata
        // The metadata is a wish: the message is written already, so the token's tenant and best
        // class replace what it may not have rather than leave the question unanswered.
        const labels = labelsFor(
          scope,
          {
            ...(isValidPriority(priority) ? { priority } : {}),
            ...(isValidTenant(tenant) ? { tenant } : {}),
          },
          ScopeMode.Clamp,
        )
        if (labels.isClamped)
          logger.debug(
            { session: sessionId, message: message.id, tenant: labels.tenant, priority: labels.priority },
            "automatic turn: the message's tenant or priority replaced by its token's",
          )
        for (const pool of pools) {
          const request: CreateTurnRequest = {
            sessionId,
            messageId: message.id,
            pool,
            priority: labels.priority,
            tenant: labels.tenant,
          }
          create(request).catch((error: unknown) => {
            if (error instanceof ColloquyError && error.code === 'queue-full') refused(request, error)
            else
              logger.warn(
                { session: sessionId, message: message.id, pool, err: error },
                'automatic turn not created',
              )
          })
        }
      }
      doc.on('beforeTransaction', beforeTransaction)
      array.observe(observer)
      return () => {
        array.unobserve(observer)
        doc.off('beforeTransaction', beforeTransaction)
      }
    },
  }
}
