// Many agents, one process, one socket: an agent host joins sessions on demand through one
// multiplexed connection (client/connection.ts), each served by its own joinSession agent.

import { type Connection, type ConnectionOptions, createConnection } from '../connection.js'
import { type Agent, type JoinSessionOptions, joinSession } from './agent.js'

/** What every agent of a host shares: the options of {@link joinSession} but the session and socket. */
export type AgentDefaults = Omit<
  JoinSessionOptions,
  'sessionId' | 'url' | 'connection' | 'token' | 'offlineCache'
>

/** Options of {@link createAgentHost}. */
export interface AgentHostOptions extends AgentDefaults {
  /** The connection to share; default: one made from `url` (and `WebSocket`, `tokenFor`, `token`). */
  readonly connection?: Connection
  /** The server's base URL, when the host makes its own connection. */
  readonly url?: string
  /** One token for every session (or a provider), when the host makes its own connection. */
  readonly token?: ConnectionOptions['token']
  /** A token per session, when the host makes its own connection. */
  readonly tokenFor?: ConnectionOptions['tokenFor']
  /** Reconnect delays of the host's own connection. */
  readonly backoff?: ConnectionOptions['backoff']
}

/** Per-session overrides of {@link AgentHost.join}. */
export type JoinOverrides = Partial<Omit<JoinSessionOptions, 'sessionId' | 'url' | 'connection'>>

/** Agents of many sessions over one connection. */
export interface AgentHost {
  readonly connection: Connection
  /** The agents that joined and have not left. */
  readonly agents: ReadonlyMap<string, Agent>
  /** Joins one session; resolves once its agent is synced and listening, rejects if refused. */
  join(sessionId: string, overrides?: JoinOverrides): Promise<Agent>
  /** Makes one session's agent leave (its reply ends, durable first); the socket stays. */
  leave(sessionId: string): Promise<void>
  /** Every agent leaves; a connection the host made is destroyed too. */
  close(): Promise<void>
}

/**
 * Creates an agent host.
 *
 * @remarks Joining a session twice is refused (one agent per session per host). A refused session
 * (forbidden token, closed document) rejects its join() only; the other agents keep working.
 *
 * @throws Error without `connection` or `url`.
 */
export function createAgentHost(options: AgentHostOptions): AgentHost {
  const { connection: given, url, token, tokenFor, backoff, ...defaults } = options
  let connection = given
  if (connection === undefined) {
    if (url === undefined) throw new Error('createAgentHost needs a connection or a url')
    connection = createConnection({
      url,
      ...(options.WebSocket === undefined ? {} : { WebSocket: options.WebSocket }),
      ...(token === undefined ? {} : { token }),
      ...(tokenFor === undefined ? {} : { tokenFor }),
      ...(backoff === undefined ? {} : { backoff }),
    })
  }
  const shared = connection
  const agents = new Map<string, Agent>()
  const joining = new Map<string, Promise<Agent>>()

  return {
    connection: shared,
    agents,
    join(sessionId, overrides = {}) {
      const pending = joining.get(sessionId)
      if (pending !== undefined || agents.has(sessionId)) {
        return Promise.reject(new Error(`an agent already serves ${sessionId} on this host`))
      }
      const joined = joinSession({ ...defaults, ...overrides, sessionId, connection: shared }).then(
        (agent) => {
          joining.delete(sessionId)
          agents.set(sessionId, agent)
          return agent
        },
        (error: unknown) => {
          joining.delete(sessionId)
          throw error
        },
      )
      joining.set(sessionId, joined)
      return joined
    },
    async leave(sessionId) {
      const agent = agents.get(sessionId)
      if (agent === undefined) return
      agents.delete(sessionId)
      await agent.leave()
    },
    async close() {
      await Promise.allSettled([...joining.values()])
      const leaving = [...agents.values()].map((agent) => agent.leave())
      agents.clear()
      await Promise.allSettled(leaving)
      if (given === undefined) await shared.destroy()
    },
  }
}
