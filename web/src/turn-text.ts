// The words of a question's turn as the web app shows them (turn-status.ts renders them): pure
// functions, no DOM, so they are tested in Node.

import type { TurnEntry } from '../../shared/turns/index.js'

/** 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st. */
export function ordinal(n: number): string {
  const tens = n % 100
  if (tens >= 11 && tens <= 13) return `${n}th`
  switch (n % 10) {
    case 1:
      return `${n}st`
    case 2:
      return `${n}nd`
    case 3:
      return `${n}rd`
    default:
      return `${n}th`
  }
}

/** The text a person reads for one turn's state. */
export function describeTurn(entry: TurnEntry): string {
  const agent = entry.agent?.name ?? entry.agent?.peerId
  switch (entry.state) {
    case 'queued': {
      const place = entry.position === undefined ? 'queued' : `queued · ${ordinal(entry.position)} in line`
      return entry.attempts > 0 ? `${place} (again, after ${entry.attempts})` : place
    }
    case 'claimed':
      return agent === undefined ? 'thinking…' : `thinking… (${agent})`
    case 'streaming':
      return agent === undefined ? 'answering…' : `answering… (${agent})`
    case 'done':
      return 'answered'
    case 'cancelled':
      return 'cancelled'
    case 'expired':
      return `expired${entry.reasonText === undefined ? '' : `: ${entry.reasonText}`}`
    case 'failed': {
      const after = entry.attempts > 1 ? ` after ${entry.attempts} attempts` : ''
      return `failed${after}${entry.reasonText === undefined ? '' : `: ${entry.reasonText}`}`
    }
  }
}

/** True while a turn can still be cancelled (queued or running). */
export function isTurnRunning(entry: TurnEntry): boolean {
  return entry.state === 'queued' || entry.state === 'claimed' || entry.state === 'streaming'
}

/** Reads `?pool=NAME` from the hash route (`#/s/<id>?pool=NAME`). */
export function poolFromHash(hash: string): string | undefined {
  const query = hash.indexOf('?')
  if (query < 0) return undefined
  const pool = new URLSearchParams(hash.slice(query + 1)).get('pool')
  return pool === null || pool.length === 0 ? undefined : pool
}
