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

const TOKEN_KEY = 'colloquy:token'

/**
 * Moves an access token given as `?token=` in the page URL into this tab's sessionStorage and
 * takes it out of the address bar and history (`history.replaceState`), so it is not bookmarked,
 * shared with the URL or left in the browser history. Called once, on load.
 */
export function adoptPageToken(): void {
  const url = new URL(location.href)
  const token = url.searchParams.get('token')
  if (token === null) return
  if (token.length > 0) sessionStorage.setItem(TOKEN_KEY, token)
  url.searchParams.delete('token')
  history.replaceState(history.state, '', `${url.pathname}${url.search}${url.hash}`)
}

/** This tab's access token (needed only when the server has a secret); see {@link adoptPageToken}. */
export function pageToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined
}
