// The `claims` map: which agent instance answers which user message, each claim with a lease.
// Choosing the winner among concurrent claims and judging liveness is the agent's job; this file
// only reads and writes the entries.

import type * as Y from 'yjs'
import { type Author, ClaimKey, type ClaimView, claimsMap, isPeerKind, SCHEMA_VERSION } from './schema.js'
import { parseAuthor, readFiniteNumber, readRecord, readString, storedAuthor } from './tolerant-read.js'

/** What {@link writeClaim} needs. */
export interface WriteClaimInput {
  /** The user message to be answered. */
  readonly promptId: string
  /** The claiming agent process: unique per run, unlike the agent's peer id. */
  readonly instanceId: string
  readonly agent: Author
  /** The lease's end, ms since the epoch, by the writer's clock. */
  readonly expiresAt: number
  /** When the claim was first made; default now. Kept unchanged by renewals. */
  readonly claimedAt?: number
  /** The reply being written under this claim, once there is one. */
  readonly replyId?: string
}

/** The key of one instance's claim on one message: every attempt has its own key, none overwrites another. */
export function claimKey(promptId: string, instanceId: string): string {
  return `${promptId}|${instanceId}`
}

/** Reads one claim entry; `undefined` when it is not an object naming a prompt and an instance. */
export function parseClaim(value: unknown): ClaimView | undefined {
  const record = readRecord(value)
  if (record === undefined) return undefined
  const promptId = readString(record[ClaimKey.PromptId])
  const instanceId = readString(record[ClaimKey.InstanceId])
  if (promptId === undefined || instanceId === undefined) return undefined
  const replyId = readString(record[ClaimKey.ReplyId])
  return {
    promptId,
    instanceId,
    agent: parseAuthor(record[ClaimKey.Agent]),
    claimedAt: readFiniteNumber(record[ClaimKey.ClaimedAt]) ?? 0,
    expiresAt: readFiniteNumber(record[ClaimKey.ExpiresAt]) ?? 0,
    ...(replyId === undefined ? {} : { replyId }),
  }
}

/** Every readable claim, optionally only those on one message. */
export function readClaims(doc: Y.Doc, promptId?: string): ClaimView[] {
  const claims: ClaimView[] = []
  claimsMap(doc).forEach((value) => {
    const claim = parseClaim(value)
    if (claim !== undefined && (promptId === undefined || claim.promptId === promptId)) claims.push(claim)
  })
  return claims
}

/**
 * Writes (or renews) this instance's claim on a message, in one transaction.
 *
 * @remarks Renewing keeps the first `claimedAt` unless one is given, so the order between
 * concurrent claims never changes after the fact.
 */
export function writeClaim(doc: Y.Doc, input: WriteClaimInput, origin?: unknown): ClaimView {
  if (!isPeerKind(input.agent.kind)) throw new TypeError(`unknown peer kind: ${String(input.agent.kind)}`)
  const map = claimsMap(doc)
  const key = claimKey(input.promptId, input.instanceId)
  const previous = parseClaim(map.get(key))
  const claimedAt = input.claimedAt ?? previous?.claimedAt ?? Date.now()
  const replyId = input.replyId ?? previous?.replyId
  const stored = {
    [ClaimKey.PromptId]: input.promptId,
    [ClaimKey.InstanceId]: input.instanceId,
    [ClaimKey.Agent]: storedAuthor(input.agent),
    [ClaimKey.ClaimedAt]: claimedAt,
    [ClaimKey.ExpiresAt]: input.expiresAt,
    ...(replyId === undefined ? {} : { [ClaimKey.ReplyId]: replyId }),
    [ClaimKey.SchemaVersion]: SCHEMA_VERSION,
  }
  doc.transact(() => map.set(key, stored), origin)
  return parseClaim(stored)!
}

/** Removes this instance's claim on a message (once its reply is final, or when it lost). */
export function releaseClaim(doc: Y.Doc, promptId: string, instanceId: string, origin?: unknown): void {
  const map = claimsMap(doc)
  const key = claimKey(promptId, instanceId)
  if (map.has(key)) doc.transact(() => map.delete(key), origin)
}

/**
 * Orders claims on one message: earliest `claimedAt` first, then instance id. Every replica that
 * holds the same claims computes the same first one.
 */
export function compareClaims(a: ClaimView, b: ClaimView): number {
  if (a.claimedAt !== b.claimedAt) return a.claimedAt - b.claimedAt
  return a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0
}
