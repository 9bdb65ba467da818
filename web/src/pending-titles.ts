// Titles to write into a session once the app opens it: a session created from the list gets its
// name, and a fork (whose document carries its origin's title) is renamed after itself.

/** How a pending title is written: only where none is set, or over the one copied from the origin. */
export const TitleMode = {
  IfMissing: 'if-missing',
  Replace: 'replace',
} as const
export type TitleModeValue = (typeof TitleMode)[keyof typeof TitleMode]

const pending = new Map<string, { readonly title: string; readonly mode: TitleModeValue }>()

/** Remembers that `sessionId`, when next opened in this tab, gets `title`. */
export function setPendingTitle(sessionId: string, title: string, mode: TitleModeValue): void {
  pending.set(sessionId, { title, mode })
}

/** The pending title of `sessionId`, forgotten once taken. */
export function takePendingTitle(
  sessionId: string,
): { readonly title: string; readonly mode: TitleModeValue } | undefined {
  const entry = pending.get(sessionId)
  pending.delete(sessionId)
  return entry
}
