// What this browser has seen of each session: how many messages were shown when it was last open,
// kept in localStorage, so the session list can mark sessions with messages added since.

const PREFIX = 'colloquy:seen:'

/** The number of messages shown when `sessionId` was last open here, or undefined if never. */
export function seenCount(sessionId: string): number | undefined {
  try {
    const raw = localStorage.getItem(PREFIX + sessionId)
    const count = raw === null ? Number.NaN : Number(raw)
    return Number.isSafeInteger(count) && count >= 0 ? count : undefined
  } catch {
    return undefined // storage disabled: nothing remembered
  }
}

/** Records that `count` messages of `sessionId` were shown. */
export function markSeen(sessionId: string, count: number): void {
  try {
    if (seenCount(sessionId) !== count) localStorage.setItem(PREFIX + sessionId, String(count))
  } catch {
    // Storage full or disabled: the list just cannot tell what is new.
  }
}

/** Forgets `sessionId` (it was deleted). */
export function forgetSeen(sessionId: string): void {
  try {
    localStorage.removeItem(PREFIX + sessionId)
  } catch {
    // Nothing stored.
  }
}
