// The agent SDK for Node: the same joinSession, with the WebSocket defaulting to the `ws` package.

import WebSocket from 'ws'
import { type Agent, type JoinSessionOptions, joinSession as joinSessionWith } from './agent.js'
import { createWorker as createWorkerWith, type Worker, type WorkerOptions } from './fleet/worker.js'

export * from './index.js'
export { type AiSdkModelOptions, createAiSdkModel, toModelMessages } from './models/ai-sdk.js'

/** {@link joinSessionWith | joinSession} with `WebSocket` defaulting to the `ws` package. */
export function joinSession(options: JoinSessionOptions): Promise<Agent> {
  return joinSessionWith({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}

/** {@link createWorkerWith | createWorker} with `WebSocket` defaulting to the `ws` package. */
export function createWorker(options: WorkerOptions): Worker {
  return createWorkerWith({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}
