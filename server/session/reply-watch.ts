// The server's part of reply liveness: when a session's presence loses someone (or the session was
// just loaded), replies still `streaming` whose writer is gone are marked interrupted by the rule
// every agent applies (shared/conversation/liveness.ts), so devices never show `streaming` forever
// while no agent is left in the session. Owns timers only; the session stores and relays the change.

import type * as Y from 'yjs'
import {
  createAbsenceClock,
  judgeReplies,
  markInterrupted,
  presentWriters,
} from '../../shared/conversation/index.js'

/** What the watch needs from its session. */
export interface ReplyWatchTarget {
  /** The session's document, or undefined once it is no longer served. */
  document(): Y.Doc | undefined
  /** The session's awareness states (client id → state). */
  presence(): Iterable<[number, unknown]>
  /**
   * Makes a change of the server's own, stored and relayed like a peer's update. False when the
   * session refuses writes now (the watch tries again later).
   */
  change(apply: (doc: Y.Doc, origin: unknown) => void): boolean
  /** Told how many replies were marked (logs). */
  marked(count: number): void
}

/** Watches one session; stopped when the session ends. */
export interface ReplyWatch {
  /** Something left the session's presence, or the session loaded: look soon, and again after the grace period. */
  poke(): void
  stop(): void
}

/**
 * Creates the watch of one session.
 *
 * @param graceMs how long a writer must be absent from presence (and its claim expired) before its
 * reply is marked; the same rule and default as the agents'
 * @remarks A look scans the messages' statuses only (a map lookup each); looks happen after a
 * presence loss and then every grace period while some `streaming` reply has an absent writer, so
 * an undisturbed session costs nothing.
 */
export function createReplyWatch(target: ReplyWatchTarget, graceMs: number, now: () => number): ReplyWatch {
  const absence = createAbsenceClock(graceMs)
  let timer: NodeJS.Timeout | undefined
  let isStopped = false

  const schedule = (ms: number): void => {
    if (timer !== undefined || isStopped) return
    timer = setTimeout(look, ms)
    // A watch alone must not keep the process alive.
    timer.unref()
  }

  function look(): void {
    timer = undefined
    const doc = target.document()
    if (isStopped || doc === undefined) return
    const present = presentWriters(target.presence())
    const { dead, suspect } = judgeReplies(doc, { present, absence, now: now() })
    let isPending = suspect > 0
    if (dead.length > 0) {
      let count = 0
      const isDone = target.change((d, origin) => {
        count = markInterrupted(d, dead, { origin })
      })
      if (isDone) target.marked(count)
      else isPending = true
    }
    if (isPending) schedule(Math.max(graceMs, 250))
  }

  return {
    poke() {
      // The first look starts each absent writer's grace period; the next one judges it.
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      schedule(0)
    },
    stop() {
      isStopped = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    },
  }
}
