// Who may change which awareness state: sorts the entries of one incoming awareness update into
// the sender's own, echoes of states the server already has, and forgeries. Pure: no I/O, no
// y-protocols state of its own; the session applies and relays what it accepts.

import type { AwarenessEntry } from '../../shared/protocol/awareness-validate.js'

/** What the gate needs to know about the session's awareness. */
export interface AwarenessView<Owner> {
  /** The live connection that owns `clientId`, if any. */
  ownerOf(clientId: number): Owner | undefined
  /** The clock the server holds for `clientId` (0 when it never saw it). */
  clockOf(clientId: number): number
  /** True when the server holds a (non-null) state for `clientId`. */
  hasState(clientId: number): boolean
  /**
   * True when `sender` and `owner` are the same authenticated peer (the same token subject): a
   * client that reconnected before its old socket closed takes its ids over.
   */
  isSamePeer(owner: Owner, sender: Owner): boolean
}

/** How the entries of one awareness update were sorted. */
export interface AwarenessVerdict {
  /** Entries to apply and relay: the sender's own ids and the ids it introduces. */
  readonly accepted: readonly AwarenessEntry[]
  /** True when every entry was accepted: the update can be applied and relayed as received. */
  readonly isWhole: boolean
  /** Distinct ids (with a state, not a removal) the sender claims that it does not own yet. */
  readonly introduced: number
  /** Entries that would change (newer clock, or remove) a state another live connection owns. */
  readonly forged: readonly AwarenessEntry[]
  /** Entries with a clock the server already has or older, for ids the sender does not own. */
  readonly echoes: number
}

/**
 * True when y-protocols would apply `entry`: a newer clock, or a removal at the same clock of a
 * state that is present (`applyAwarenessUpdate`'s own rule).
 */
function isChange<Owner>(entry: AwarenessEntry, view: AwarenessView<Owner>): boolean {
  const known = view.clockOf(entry.clientId)
  return entry.clock > known || (entry.clock === known && entry.isRemoval && view.hasState(entry.clientId))
}

/**
 * Sorts an awareness update's entries for `sender`.
 *
 * @remarks
 * Stock y-websocket providers re-broadcast every awareness state they receive, with the clock they
 * received: those echoes carry ids owned by other connections and must pass without counting
 * against the sender, and without being relayed again (they change nothing). A change to an id
 * that another live connection owns is a forgery and is dropped, unless both connections are the
 * same authenticated peer (a reconnect that overtook its old socket's close). An id no live
 * connection owns is claimed by the first connection that changes it (a client reconnecting keeps
 * its client id).
 */
export function sortAwarenessEntries<Owner>(
  entries: readonly AwarenessEntry[],
  sender: Owner,
  view: AwarenessView<Owner>,
): AwarenessVerdict {
  const accepted: AwarenessEntry[] = []
  const forged: AwarenessEntry[] = []
  let echoes = 0
  let introducedIds: Set<number> | undefined
  for (const entry of entries) {
    const owner = view.ownerOf(entry.clientId)
    if (owner === sender) {
      accepted.push(entry)
    } else if (!isChange(entry, view)) {
      echoes++
    } else if (owner !== undefined && !view.isSamePeer(owner, sender)) {
      forged.push(entry)
    } else {
      accepted.push(entry)
      if (!entry.isRemoval) {
        introducedIds ??= new Set()
        introducedIds.add(entry.clientId)
      }
    }
  }
  return {
    accepted,
    isWhole: accepted.length === entries.length,
    introduced: introducedIds?.size ?? 0,
    forged,
    echoes,
  }
}
