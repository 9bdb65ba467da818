// The agent SDK for Node: the same joinSession and createAgentHost, with the WebSocket defaulting to
// the `ws` package.

import WebSocket from 'ws'
import { type Agent, type JoinSessionOptions, joinSession as joinSessionWith } from './agent.js'
import {
  type AgentHost,
  type AgentHostOptions,
  createAgentHost as createAgentHostWith,
} from './agent-host.js'
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

/** {@link createAgentHostWith | createAgentHost} with `WebSocket` defaulting to the `ws` package. */
export function createAgentHost(options: AgentHostOptions): AgentHost {
  return createAgentHostWith({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}
