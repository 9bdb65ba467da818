// Session ids: the one rule for what names a session, shared by server, client and tools.

/** The pattern every session id matches: 1–128 characters of `A-Za-z0-9._:-`. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

/** True when `value` is a valid session id. */
export function isValidSessionId(value: string): boolean {
  return SESSION_ID_PATTERN.test(value)
}
