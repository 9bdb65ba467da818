// The compaction thread: receives packed updates, folds them with mergeToState, sends the state
// back (transferred, not copied). Opens nothing: the main thread holds the LevelDB lock.

import { parentPort } from 'node:worker_threads'
import { mergeToState, unpackUpdates } from './merge.js'

/** A job sent to the thread. */
export interface MergeRequest {
  readonly id: number
  readonly buffer: ArrayBuffer
  readonly ends: readonly number[]
}

/** The thread's answer to one {@link MergeRequest}. */
export type MergeResponse =
  | { readonly id: number; readonly state: Uint8Array }
  | { readonly id: number; readonly error: string }

const port = parentPort
if (port !== null) {
  port.on('message', (request: MergeRequest) => {
    let response: MergeResponse
    try {
      const state = mergeToState(unpackUpdates(request.buffer, request.ends))
      response = { id: request.id, state }
      port.postMessage(response, [state.buffer as ArrayBuffer])
    } catch (error) {
      response = { id: request.id, error: error instanceof Error ? error.message : String(error) }
      port.postMessage(response)
    }
  })
}
