// Judging whether the writer of a `streaming` reply is gone (docs/conversation-model.md §9), so that
// a reply whose agent died is marked interrupted instead of showing `streaming` forever. One rule,
// used by every agent of a session and by the server; no I/O, no timers: callers bring the clock.

import * as Y from 'yjs'
import { readClaims, releaseClaim } from './claims.js'
import { readMessageMap, writeStatus } from './messages.js'
import { MessageKey, type MessageView, messagesArray } from './schema.js'

/** The error text written on a reply whose writer stopped before finishing it. */
export const INTERRUPTED_REASON = 'interrupted: the agent stopped before finishing this reply'

/**
 * The writer keys present in a session's awareness: `instance:<id>` for a state carrying an
 * `instanceId` (an agent run), `author:<id>` for a state carrying `user.id`.
 *
 * @param exceptClientId an awareness client id to leave out (the caller's own state)
 */
export function presentWriters(states: Iterable<[number, unknown]>, exceptClientId?: number): Set<string> {
  const present = new Set<string>()
  for (const [clientId, value] of states) {
    if (clientId === exceptClientId || typeof value !== 'object' || value === null) continue
    const record = value as Record<string, unknown>
    if (typeof record.instanceId === 'string') present.add(`instance:${record.instanceId}`)
    const user = record.user
    if (typeof user === 'object' && user !== null) {
      const id = (user as Record<string, unknown>).id
      if (typeof id === 'string') present.add(`author:${id}`)
    }
  }
  return present
}

/** Remembers since when (the observer's clock) each writer key has been missing from presence. */
export interface AbsenceClock {
  /** True once `key` has been missing from `present` for the whole grace period; tracks it from the first look. */
  isGone(key: string, present: ReadonlySet<string>, now: number): boolean
  /** Forgets every absence (presence was rebuilt from scratch: absence counts again from now). */
  reset(): void
}

/** Creates an {@link AbsenceClock} with a grace period in ms (0: gone at the first look). */
export function createAbsenceClock(graceMs: number): AbsenceClock {
  const absentSince = new Map<string, number>()
  return {
    isGone(key, present, now) {
      if (present.has(key)) {
        absentSince.delete(key)
        return false
      }
      const since = absentSince.get(key)
      if (since === undefined) {
        absentSince.set(key, now)
        return graceMs <= 0
      }
      return now - since >= graceMs
    },
    reset() {
      absentSince.clear()
    },
  }
}

/** What {@link judgeReplies} needs. */
export interface JudgeRepliesInput {
  readonly present: ReadonlySet<string>
  readonly absence: AbsenceClock
  /** The observer's clock (ms since the epoch). */
  readonly now: number
  /** The judging agent run: its own replies are dead unless it is writing them now. */
  readonly self?: { readonly instanceId: string; readonly currentReplyId?: string }
}

/** The outcome of {@link judgeReplies}. */
export interface ReplyJudgement {
  /** `streaming` replies whose writer is gone: to be marked interrupted. */
  readonly dead: MessageView[]
  /** `streaming` replies whose writer is absent but still within its grace period or lease. */
  readonly suspect: number
}

/**
 * Finds the `streaming` replies whose writer is gone.
 *
 * @remarks A reply recording `metadata.instanceId` is dead when that instance has been absent from
 * presence for the grace period and its claim (if any) has expired; one without an instance id is
 * judged by its author's presence. Only `streaming` entries are read in full, so the scan costs a
 * map lookup per message.
 */
export function judgeReplies(doc: Y.Doc, input: JudgeRepliesInput): ReplyJudgement {
  const { present, absence, now, self } = input
  const dead: MessageView[] = []
  let suspect = 0
  messagesArray(doc).forEach((entry, index) => {
    if (!(entry instanceof Y.Map) || entry.get(MessageKey.Status) !== 'streaming') return
    const message = readMessageMap(entry, index)
    if (message.role === 'user') return
    const writer = message.metadata.instanceId
    let isDead: boolean
    let isAbsent: boolean
    if (typeof writer === 'string') {
      if (self !== undefined && writer === self.instanceId) {
        isAbsent = message.id !== self.currentReplyId
        isDead = isAbsent
      } else {
        const replyTo = message.metadata.replyTo
        const claim =
          replyTo === undefined ? undefined : readClaims(doc, replyTo).find((c) => c.instanceId === writer)
        isAbsent = !present.has(`instance:${writer}`)
        isDead =
          absence.isGone(`instance:${writer}`, present, now) && (claim === undefined || claim.expiresAt < now)
      }
    } else {
      isAbsent = !present.has(`author:${message.author.id}`)
      isDead = absence.isGone(`author:${message.author.id}`, present, now)
    }
    if (isDead) dead.push(message)
    else if (isAbsent) suspect++
  })
  return { dead, suspect }
}

/**
 * Marks replies `error` with {@link INTERRUPTED_REASON} and releases their writers' claims, in one
 * transaction. Replies no longer `streaming` (someone finished them meanwhile) are left alone.
 */
export function markInterrupted(
  doc: Y.Doc,
  replies: readonly MessageView[],
  options: { readonly selfInstanceId?: string; readonly origin?: unknown } = {},
): number {
  let marked = 0
  doc.transact(() => {
    const entries = messagesArray(doc)
    for (const reply of replies) {
      const entry = entries.get(reply.index)
      if (!(entry instanceof Y.Map) || entry.get(MessageKey.Status) !== 'streaming') continue
      writeStatus(entry, 'error', INTERRUPTED_REASON)
      marked++
      const writer = reply.metadata.instanceId
      const replyTo = reply.metadata.replyTo
      if (typeof writer === 'string' && replyTo !== undefined && writer !== options.selfInstanceId) {
        releaseClaim(doc, replyTo, writer)
      }
    }
  }, options.origin)
  return marked
}
