// Small helpers shared by the client-side commands: flags with environment fallbacks.

import { parseArgs } from 'node:util'

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Parses `argv` strictly: string flags only, positionals allowed. */
export function parseFlags(
  argv: readonly string[],
  flags: readonly string[],
): { values: Record<string, string | undefined>; positionals: string[] } {
  const options: Record<string, { type: 'string' }> = {}
  for (const flag of flags) options[flag] = { type: 'string' }
  try {
    const parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true })
    return { values: parsed.values as Record<string, string | undefined>, positionals: parsed.positionals }
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
}

/** A positive integer flag, or `fallback`. */
export function intFlag(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const parsed = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed))
    throw new UsageError(`--${name} must be an integer`)
  return parsed
}

/** The server URL from `--url`, `COLLOQUY_URL`, or the quick-start default. */
export function serverUrl(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env.COLLOQUY_URL ?? 'ws://127.0.0.1:8080'
}
