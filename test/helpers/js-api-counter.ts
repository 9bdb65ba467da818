// Counts the JetStream API requests a cluster sees, by kind, through a plain NATS subscription on
// `$JS.API.>` (the same account: every request's subject reaches it too). What the bench and the
// tests use to say what a check asks of the nats-servers, a figure that load does not move.

import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node'

/** A running count; {@link JsApiCounter.stop} ends the subscription and returns the counts. */
export interface JsApiCounter {
  /** Counts so far, by kind (see {@link jsApiKind}), and the total. */
  counts(): { readonly total: number; readonly byKind: Readonly<Record<string, number>> }
  /** Resolves once every request published before the call has been counted. */
  flush(): Promise<void>
  stop(): Promise<{ readonly total: number; readonly byKind: Readonly<Record<string, number>> }>
}

/**
 * A request's kind: the API verb and stream, without consumer names (`CONSUMER.CREATE.S`,
 * `CONSUMER.DELETE.S`, `STREAM.INFO.S`, `CONSUMER.MSG.NEXT.S`), and for message gets and stream
 * infos what the body asks (`STREAM.MSG.GET.S last_by_subj`, `STREAM.INFO.S subjects_filter`).
 */
export function jsApiKind(subject: string, body: Uint8Array): string {
  const tokens = subject.split('.').slice(2)
  const isMsg = tokens[1] === 'MSG'
  const kind = tokens.slice(0, isMsg ? 4 : 3).join('.')
  if (kind.startsWith('STREAM.MSG.GET') || kind.startsWith('STREAM.INFO')) {
    try {
      const request = JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>
      const keys = Object.keys(request).filter((key) => key !== 'seq' || Object.keys(request).length === 1)
      if (keys.length > 0) return `${kind} ${keys.sort().join(',')}`
    } catch {
      // An empty body (a plain info): the kind alone.
    }
  }
  return kind
}

/** Subscribes to `$JS.API.>` on `url` and counts until stopped. */
export async function startJsApiCounter(url: string): Promise<JsApiCounter> {
  const nc: NatsConnection = await connect({ servers: url, name: 'js-api-counter' })
  const byKind: Record<string, number> = {}
  let total = 0
  const sub: Subscription = nc.subscribe('$JS.API.>', {
    callback: (_error, message) => {
      const kind = jsApiKind(message.subject, message.data)
      byKind[kind] = (byKind[kind] ?? 0) + 1
      total++
    },
  })
  await nc.flush()
  const counts = () => ({ total, byKind: { ...byKind } })
  return {
    counts,
    flush: () => nc.flush(),
    async stop() {
      await nc.flush()
      sub.unsubscribe()
      await nc.close()
      return counts()
    },
  }
}

/** `STREAM.INFO.X 3, CONSUMER.CREATE.Y 12, …`, largest first. */
export function formatJsApiCounts(byKind: Readonly<Record<string, number>>): string {
  return Object.entries(byKind)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ')
}
