// The optional rule "every user message in the sessions of a pool gets a turn" (`--turn-auto
// pool=sessionPrefix`): watches the message array of each loaded session whose id matches a rule
// and creates a turn for each user message a device adds. Knows nothing of HTTP or storage.

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
  readonly logger: Logger
}

/** Watches sessions for new user messages. */
export interface AutoTurns {
  /** Starts watching a loaded session's document; returns how to stop, or undefined when no rule matches. */
  watch(sessionId: string, doc: Y.Doc): (() => void) | undefined
}

/** Creates the watcher. */
export function createAutoTurns(options: AutoTurnsOptions): AutoTurns {
  const { rules, create, refused, logger } = options
  return {
    watch(sessionId, doc) {
      const pools = rules.filter((rule) => sessionId.startsWith(rule.sessionPrefix)).map((rule) => rule.pool)
      if (pools.length === 0) return undefined
      const array = messagesArray(doc)
      // Shallow: fires when messages are added or removed, never per streamed token.
      const observer = (event: Y.YArrayEvent<unknown>): void => {
        let index = 0
        for (const change of event.delta) {
          if (change.retain !== undefined) index += change.retain
          if (!Array.isArray(change.insert)) continue
          for (const entry of change.insert) {
            if (entry instanceof Y.Map) noteMessage(entry, index)
            index++
          }
        }
      }
      const noteMessage = (map: Y.Map<unknown>, index: number): void => {
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
        for (const pool of pools) {
          const request: CreateTurnRequest = {
            sessionId,
            messageId: message.id,
            pool,
            ...(isValidPriority(priority) ? { priority } : {}),
            ...(isValidTenant(tenant) ? { tenant } : {}),
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
      array.observe(observer)
      return () => array.unobserve(observer)
    },
  }
}
