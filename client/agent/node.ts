// The agent SDK for Node: the same joinSession and createAgentHost, with the WebSocket defaulting to
// the `ws` package.

import WebSocket from 'ws'
import { type Agent, type JoinSessionOptions, joinSession as joinSessionWith } from './agent.js'
import {
  type AgentHost,
  type AgentHostOptions,
  createAgentHost as createAgentHostWith,
} from './agent-host.js'

export * from './index.js'

/** {@link joinSessionWith | joinSession} with `WebSocket` defaulting to the `ws` package. */
export function joinSession(options: JoinSessionOptions): Promise<Agent> {
  return joinSessionWith({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}

/** {@link createAgentHostWith | createAgentHost} with `WebSocket` defaulting to the `ws` package. */
export function createAgentHost(options: AgentHostOptions): AgentHost {
  return createAgentHostWith({ ...options, WebSocket: options.WebSocket ?? WebSocket })
}
