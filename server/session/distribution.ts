// Distribution: what other Colloquy processes must see of a session (its updates, with their log
// seqs once stored, and its awareness), kept apart from persistence (Store: the log and checkpoints)
// and from the local fan-out (Topic: this process's sockets). A single node distributes nothing.

import type { AppendEntry } from '../persistence/store.js'

/**
 * What a loaded session offers to its {@link Distribution}: a way to hand it what other processes
 * did. Implemented by `Session`.
 *
 * @remarks Every method runs on the event loop, never re-entrantly from inside a session call, and
 * may be called for a session that has ended since (it then does nothing).
 */
export interface DistributionSink {
  /**
   * An update another process applied to this session. Idempotent: Yjs integrates only what is new,
   * so a repeat (a relay and a gap repair of the same update) costs nothing and changes nothing.
   *
   * @param seq the update's seq in the log when the sender knew it (it was durable), else undefined
   * @remarks The session applies it, relays it to its own connections (never back to the
   * distribution) and does NOT store it: the process that received it from a client stores it
   * (and acks it). Updates the document cannot integrate yet stay pending in Yjs, as from a client.
   */
  applyRemoteUpdate(update: Uint8Array, seq: number | undefined): void
  /** An awareness update from another process: applied and relayed to this process's connections. */
  applyRemoteAwareness(update: Uint8Array): void
  /**
   * The highest log seq this session's document is known to include: what it loaded, raised by
   * the commits of its own updates and by remote updates that came with a seq. A gap repair reads
   * the log after it.
   */
  readonly knownSeq: number
}

/**
 * What a process lets its {@link Distribution} do to a whole session when another process deletes
 * it: the session registry, the write queue and the compactor of this process. Bound once at start
 * ({@link Distribution.bindHost}).
 */
export interface DistributionHost {
  /**
   * Ends `sessionId` here because another process is about to delete it, as a delete on this
   * process would: refuses new connections to it, closes the ones it has with `code`/`reason` and
   * unloads it (its document is freed, never written back), waits until every update it queued is
   * durable and for a compaction of it already running. Resolves with the function that lifts the
   * refusal (the deleting process asks for that once the delete is done).
   */
  retire(sessionId: string, code: number, reason: string): Promise<() => void>
  /** True when `sessionId` is loaded (or loading) here: another node's import must refuse it. */
  isOpen(sessionId: string): boolean
}

/**
 * What {@link Distribution.retireEverywhere} got: call `release` once the delete is done (or
 * failed), so the other processes accept the session again.
 */
export interface RetiredEverywhere {
  /** The processes that confirmed they ended the session and flushed its writes. */
  readonly nodes: readonly string[]
  release(): void
}

/**
 * Carries a session's traffic to and from the other processes of a cluster.
 *
 * @remarks
 * - Process-wide: one instance per server, shared by every session. The single-node implementation
 *   ({@link createLocalDistribution}) does nothing.
 * - It never decides durability or acks: those belong to the Store and the write queue. An update
 *   this process received from a client is stored by this process only; others apply it from
 *   {@link Distribution.updateQueued} / {@link Distribution.updatesStored} (or from the log, to repair
 *   a gap) without storing it again.
 * - Calls come in this order per session: {@link join} once the session has loaded (its document at
 *   `sink.knownSeq`), then any number of the others, then {@link leave} when it unloads or ends.
 *   `updatesStored` may still arrive for a session that has left (its last writes committing):
 *   publish them anyway, other processes may still hold the session.
 * - Every method is synchronous and must not throw: an implementation queues its network I/O and
 *   reports its own failures (log, metrics). Cost on the hot path must stay at a few µs per call.
 */
export interface Distribution {
  /** What this distribution is, for logs, `/readyz` and metrics: `local` for a single node. */
  readonly mode: string
  /** Starts delivering other processes' traffic for `sessionId` to `sink` (the session loaded). */
  join(sessionId: string, sink: DistributionSink): void
  /** Stops delivering traffic for `sessionId` to `sink` (the session unloaded or ended). */
  leave(sessionId: string, sink: DistributionSink): void
  /**
   * An update from one of this process's connections changed the document and was queued for the
   * log; it has no seq yet and is not durable. Publishing it now is optional (low latency; peers
   * apply it idempotently); {@link updatesStored} follows once it is stored.
   */
  updateQueued(sessionId: string, update: Uint8Array): void
  /**
   * A group commit stored `entries` (of any sessions, in append order) at `seqs` (same order and
   * length): durable as far as the Store promises. Each session's seqs strictly increase.
   *
   * @remarks Called once per successful commit of the write queue, before the acks it releases are
   * sent. Do not keep `entries` beyond the call unless you copy what you need (their bytes are not
   * mutated later, but the arrays are reused).
   */
  updatesStored(entries: readonly AppendEntry[], seqs: readonly number[]): void
  /** An awareness update from one of this process's connections (already applied here). */
  awarenessChanged(sessionId: string, update: Uint8Array): void
  /** Lets other processes' deletes end sessions here (see {@link DistributionHost}). Once, at start. */
  bindHost(host: DistributionHost): void
  /**
   * Before this process deletes `sessionId`: has every other live process end it there
   * ({@link DistributionHost.retire}: connections closed with `code`, its queued writes durable, no
   * new connection until released) and resolves once all of them confirmed.
   *
   * @remarks Unlike the other methods this one is asynchronous and may reject: with
   * `storage-unavailable` when a live process did not confirm in time (the session was released
   * again on those that did; nothing was deleted). A single node has no other process and resolves
   * at once.
   */
  retireEverywhere(sessionId: string, code: number, reason: string): Promise<RetiredEverywhere>
  /**
   * The other live processes that have `sessionId` loaded (or loading): an import or fork onto it
   * is refused as on a single node that has it open.
   *
   * @remarks Asynchronous, may reject with `storage-unavailable` when a live process did not
   * answer in time. A single node resolves with none at once.
   */
  openElsewhere(sessionId: string): Promise<readonly string[]>
  /** Stops all traffic; resolves once nothing of it is in flight. Idempotent. */
  close(): Promise<void>
}

/** The distribution of a single node: there is no other process, so nothing goes anywhere. */
export function createLocalDistribution(): Distribution {
  return {
    mode: 'local',
    join() {},
    leave() {},
    updateQueued() {},
    updatesStored() {},
    awarenessChanged() {},
    bindHost() {},
    retireEverywhere: async () => ({ nodes: [], release() {} }),
    openElsewhere: async () => [],
    close: async () => {},
  }
}
