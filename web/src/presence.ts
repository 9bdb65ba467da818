// Who is in the session, from the awareness states `{ user: { id, kind, name }, state }` that
// devices and agents publish; agents show what they are doing (idle, thinking, waiting, streaming).

import type { Awareness } from 'y-protocols/awareness'
import { h } from './dom.js'

interface Present {
  readonly id: string
  readonly kind: 'device' | 'agent'
  readonly name: string
  readonly state: string | undefined
  /** What a person should read about the state ("waiting for the model, retry 2 of 3"). */
  readonly detail: string | undefined
  readonly isSelf: boolean
}

const STATE_RANK: Readonly<Record<string, number>> = { streaming: 4, waiting: 3, thinking: 2, idle: 1 }

function readPresent(awareness: Awareness): Present[] {
  const byId = new Map<string, Present>()
  for (const [clientId, raw] of awareness.getStates()) {
    const state = raw as {
      user?: { id?: unknown; kind?: unknown; name?: unknown }
      state?: unknown
      detail?: unknown
    }
    const user = state.user
    if (user === undefined || typeof user.id !== 'string') continue
    const present: Present = {
      id: user.id,
      kind: user.kind === 'agent' ? 'agent' : 'device',
      name: typeof user.name === 'string' ? user.name : user.id,
      state: typeof state.state === 'string' ? state.state : undefined,
      detail: typeof state.detail === 'string' ? state.detail.slice(0, 120) : undefined,
      isSelf: clientId === awareness.clientID,
    }
    // One person in two tabs is shown once; an agent's busiest connection wins.
    const known = byId.get(present.id)
    const rank = (p: Present | undefined): number => STATE_RANK[p?.state ?? ''] ?? 0
    if (known === undefined || rank(present) > rank(known) || present.isSelf) byId.set(present.id, present)
  }
  return [...byId.values()].sort(
    (a, b) => Number(b.isSelf) - Number(a.isSelf) || a.name.localeCompare(b.name),
  )
}

const AGENT_STATE: Readonly<Record<string, string>> = {
  idle: 'idle',
  thinking: 'thinking…',
  waiting: 'waiting for the model…',
  streaming: 'answering…',
}

/** Renders the participants into `list` (replacing its items). */
export function renderPresence(list: HTMLUListElement, awareness: Awareness): void {
  const items = readPresent(awareness).map((present) => {
    // An agent's own detail wins ("waiting for the model, retry 2 of 3"); it is text, never markup.
    const state =
      present.kind === 'agent'
        ? (present.detail ?? AGENT_STATE[present.state ?? 'idle'] ?? present.state ?? '')
        : ''
    return h(
      'li',
      {
        class: `presence-item kind-${present.kind}`,
        'data-presence-id': present.id,
        'data-presence-kind': present.kind,
        'data-presence-state': present.state ?? '',
      },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }, present.name.slice(0, 1).toUpperCase()),
      h('span', { class: 'presence-name' }, present.isSelf ? `${present.name} (you)` : present.name),
      h('span', { class: `kind kind-${present.kind}` }, present.kind),
      state.length > 0 && h('span', { class: `agent-state agent-${present.state ?? 'idle'}` }, state),
    )
  })
  list.replaceChildren(...items)
}
