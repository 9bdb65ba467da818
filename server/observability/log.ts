// Structured JSON logs (pino). The logger is created once in main.ts and passed down; no module
// keeps a global one.

import { pino } from 'pino'

export type Logger = pino.Logger

/** A JSON logger writing to stdout at `level` (`silent` turns it off). */
export function createLogger(level: string, name = 'colloquy'): Logger {
  return pino({ name, level, base: { pid: process.pid } })
}

/** A logger that drops everything, for tests and embedding. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' })
}
