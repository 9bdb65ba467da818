// Loads uWebSockets.js and refuses its pure-JS fallback, which ignores backpressure and limits.

import { createRequire } from 'node:module'

export type Uws = typeof import('@trufflesuite/uws-js-unofficial')

/** True when `uws` is the native addon: the fallback exports only `App` and a few helpers. */
export function isNativeUws(uws: object): boolean {
  const candidate = uws as Record<string, unknown>
  return (
    typeof candidate.SSLApp === 'function' &&
    typeof candidate.getParts === 'function' &&
    typeof candidate.DEDICATED_COMPRESSOR_3KB === 'number'
  )
}

/**
 * Loads uWebSockets.js and checks that its native binary is the one in use.
 *
 * @throws Error when the package fell back to its JavaScript implementation (a Node.js version
 * without a shipped binary, or `UWS_USE_FALLBACK` set): the server must not run on it.
 */
export function loadNativeUws(): Uws {
  const require = createRequire(import.meta.url)
  const uws = require('@trufflesuite/uws-js-unofficial') as Uws
  if (!isNativeUws(uws)) {
    throw new Error(
      `uWebSockets.js native binary did not load (Node ${process.version}, ABI ${process.versions.modules}, ` +
        `${process.platform}-${process.arch}); refusing its pure-JS fallback. Use Node 20.x.`,
    )
  }
  return uws
}
