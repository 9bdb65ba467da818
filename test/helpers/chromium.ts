// Debian's Chromium for the browser tests (no browser download): where it is, whether it is there,
// and one launch with the flags every test needs (headless, no sandbox as root, no network of its
// own). Each test adds only what it is about.

import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
export const hasChromium = existsSync(CHROMIUM)

/** The flags every browser test launches Chromium with. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
] as const

/** Launches Debian's Chromium with {@link CHROMIUM_ARGS} and `extraArgs`. */
export function launchChromium(timeoutMs: number, extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: timeoutMs,
  })
}
