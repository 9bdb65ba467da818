// Bounded waits on a sync client's events, and a log of its status events.

import type { StatusEvent, SyncClient } from '../../client/sync-client.js'
import { withTimeout } from './wait.js'

/** Records every status event of `client` from now on. */
export function collectStatuses(client: SyncClient): StatusEvent[] {
  const events: StatusEvent[] = []
  client.on('status', (event) => events.push(event))
  return events
}

/** Resolves with the first status event (from now on) that matches `predicate`; rejects after `ms`. */
export function nextStatus(
  client: SyncClient,
  predicate: (event: StatusEvent) => boolean,
  ms: number,
  label: string,
): Promise<StatusEvent> {
  let off: () => void = () => undefined
  const found = new Promise<StatusEvent>((resolve) => {
    off = client.on('status', (event) => {
      if (predicate(event)) resolve(event)
    })
  })
  return withTimeout(found, ms, label).finally(off)
}
