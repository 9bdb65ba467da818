// Compaction leases: at most one compactor per session at a time across processes. A single node
// needs none (its scheduler runs one compaction at a time); a cluster uses a KV lease
// (server/cluster/compaction-lease.ts). A lease is an optimisation, never a correctness guard:
// two compactors at once waste work but cannot corrupt history (see docs/cluster.md).

/** A held lease. */
export interface CompactionLease {
  /** Gives the lease up (idempotent); an expired lease is simply gone. */
  release(): Promise<void>
}

/** Hands out compaction leases per session. */
export interface CompactionLeases {
  /**
   * Takes the lease of `sessionId`, or resolves `undefined` when another compactor holds it.
   *
   * @remarks A lease expires by itself after its time to live, so a compactor killed mid-run
   * blocks the session only for that long.
   */
  acquire(sessionId: string): Promise<CompactionLease | undefined>
}
