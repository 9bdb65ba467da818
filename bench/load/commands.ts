// The IPC messages between the runner and a load client process (bench/load/worker.ts).

import type { Framing } from '../lib/wire.js'

interface Target {
  readonly url: string
  readonly framing: Framing
}

export type Command =
  | (Target & {
      type: 'readers'
      docs: readonly string[]
      perDoc: number
      epochMs: number
      /** Spread each doc's readers over these servers (reader i on urls[i % n]) instead of `url`. */
      urls?: readonly string[]
    })
  | (Target & {
      type: 'write'
      docs: readonly string[]
      ratePerDoc: number
      durationMs: number
      epochMs: number
      seed: number
      /** Send Colloquy's sync-status after every n-th update (0: never). */
      ackEvery: number
      /** Keep the written text to verify it afterwards. */
      keepText: boolean
      /** Stop each writer once its text reaches this many characters (durationMs still bounds it). */
      maxChars?: number
    })
  | { type: 'drain'; expected: readonly number[]; timeoutMs: number }
  | (Target & { type: 'idle'; docs: readonly string[]; perDoc: number; batch: number })
  | { type: 'close' }
  | (Target & { type: 'verify'; docs: readonly string[]; texts: readonly string[]; timeoutMs?: number })
  | (Target & { type: 'catchup'; doc: string; expectedLength?: number })
  /** Opens a Y.Doc reader (with an `update` listener, as a provider has) and keeps it open. */
  | (Target & { type: 'ydocReader'; doc: string; bucketChars: number })
  | { type: 'ydocResult'; expectedLength: number; timeoutMs: number }
  /** Connects a Y.Doc client per entry of `docs` all at once; each is synced at `expectedLengths`. */
  | (Target & { type: 'storm'; docs: readonly string[]; expectedLengths: readonly number[] })
  | { type: 'exit' }

export type Reply =
  | { type: 'ready' }
  | {
      type: 'written'
      sent: number[]
      texts: string[]
      sendSeconds: number
      maxBuffered: number
      ackLatencies: Float64Array
      acksMissing: number
    }
  | {
      type: 'drained'
      complete: boolean
      /** Close codes of readers that were closed before they had everything. */
      disconnectCodes: number[]
      latencies: Float64Array
      counts: number[]
      hashes: number[]
      docOf: number[]
      lastMicros: number
    }
  | { type: 'connected'; ms: number; failed: number; bytes: number }
  /** `closedByServer`: close codes of the connections the server had closed before this command. */
  | { type: 'closed'; closedByServer: number[] }
  | { type: 'verified'; ok: boolean[]; ms: number[]; bytes: number[]; texts: string[] }
  | { type: 'caughtUp'; ms: number; bytes: number; text: string }
  | { type: 'ydocReady' }
  | { type: 'ydocStats'; applyMicrosPerUpdate: number[]; updates: number[]; textLength: number; text: string }
  | { type: 'stormed'; ms: number; failed: number; bytes: number; mismatched: number }
  | { type: 'error'; message: string }
