// The compaction thread: receives packed updates, folds them with mergeToState, sends the state
// back (transferred, not copied). Opens nothing: the main thread holds the LevelDB lock.

import { readFileSync } from 'node:fs'
import os from 'node:os'
import { parentPort } from 'node:worker_threads'
import { mergeToState, type PackedUpdates, unpackUpdates } from './merge.js'

/** Niceness of the compaction thread: below the event loop's, so a busy CPU serves live sessions first. */
const THREAD_NICENESS = 10

/**
 * Lowers this thread's scheduling priority (Linux only, where a thread id is a valid target of
 * `setpriority`). On a machine with few cores, a fold competing with the main thread for CPU
 * otherwise shows up as event-loop pauses in which the main thread does not run at all.
 * Best effort: elsewhere, or if refused, the thread keeps the process priority.
 */
function lowerThreadPriority(): void {
  if (process.platform !== 'linux') return
  try {
    const tid = Number.parseInt(readFileSync('/proc/thread-self/stat', 'utf8'), 10)
    if (Number.isSafeInteger(tid) && tid > 0 && tid !== process.pid) {
      os.setPriority(tid, Math.max(os.getPriority(tid), THREAD_NICENESS))
    }
  } catch {
    // Not permitted or no procfs: keep the default priority.
  }
}

/** A job sent to the thread: packed updates (both buffers transferred). */
export interface MergeRequest extends PackedUpdates {
  readonly id: number
}

/** The thread's answer to one {@link MergeRequest}. */
export type MergeResponse =
  | { readonly id: number; readonly state: Uint8Array }
  | { readonly id: number; readonly error: string }

const port = parentPort
if (port !== null) {
  lowerThreadPriority()
  port.on('message', (request: MergeRequest) => {
    let response: MergeResponse
    try {
      const state = mergeToState(unpackUpdates(request))
      response = { id: request.id, state }
      port.postMessage(response, [state.buffer as ArrayBuffer])
    } catch (error) {
      response = { id: request.id, error: error instanceof Error ? error.message : String(error) }
      port.postMessage(response)
    }
  })
}
