// Compaction leases in a JetStream KV bucket whose entries expire (max_age): taking a lease is a KV
// `create`, which nats-server checks when it applies the write, so two nodes never both get it.
// Not `update`: 2.9 checks expected revisions before Raft, and several writers can win at once.

import type { KV } from '@nats-io/kv'
import type { CompactionLease, CompactionLeases } from '../compaction/lease.js'
import { encodeSessionToken } from './session-token.js'

/** Options of {@link createKvLeases}. */
export interface KvLeasesOptions {
  /** A bucket created with a `ttl` (the lease lifetime): see openJetStreamResources. */
  readonly bucket: KV
  /** Who holds a lease (this node's id), written as the lease's value for operators. */
  readonly holder: string
}

function isExistsError(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } })?.api_error?.err_code
  return code === 10071 || (error instanceof Error && /wrong last sequence|key exists/i.test(error.message))
}

/** Creates compaction leases over `options.bucket`. */
export function createKvLeases(options: KvLeasesOptions): CompactionLeases {
  const { bucket, holder } = options
  return {
    async acquire(sessionId) {
      const key = encodeSessionToken(sessionId)
      const value = new TextEncoder().encode(JSON.stringify({ holder, at: Date.now() }))
      let revision: number
      try {
        revision = await bucket.create(key, value)
      } catch (error) {
        if (isExistsError(error)) return undefined
        throw error
      }
      let isReleased = false
      const lease: CompactionLease = {
        async release() {
          if (isReleased) return
          isReleased = true
          // Only our own lease: if it expired and another node took it, its revision differs.
          const current = await bucket.get(key)
          if (current !== null && current.revision === revision) await bucket.delete(key)
        },
      }
      return lease
    },
  }
}
