// Who this browser is: a stable device id and a display name, kept in localStorage. Every tab of
// one browser profile shares it; another profile (or device) is another participant.

import type { Author } from '../../shared/conversation/index.js'

const KEY = 'colloquy:identity'

function randomId(): string {
  return crypto.randomUUID()
}

/** Reads the identity, creating one the first time. */
export function loadIdentity(): Author {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? 'null') as { id?: unknown; name?: unknown } | null
    if (stored !== null && typeof stored.id === 'string' && typeof stored.name === 'string') {
      return { id: stored.id, kind: 'device', name: stored.name }
    }
  } catch {
    // A corrupt entry: start over with a fresh identity below.
  }
  const id = `device:${randomId()}`
  const identity: Author = { id, kind: 'device', name: `Guest ${id.slice(7, 11)}` }
  saveIdentity(identity)
  return identity
}

/** Stores the identity (after a name change). */
export function saveIdentity(identity: Author): void {
  localStorage.setItem(KEY, JSON.stringify({ id: identity.id, name: identity.name }))
}

/** An access token from `?token=` in the page URL (needed only when the server has a secret). */
export function pageToken(): string | undefined {
  return new URLSearchParams(location.search).get('token') ?? undefined
}
