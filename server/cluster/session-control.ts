// Whole-session requests between the nodes of a cluster, over core NATS. Before a delete, a node
// has every other live node retire the session (close its connections, flush its writes, refuse
// it until released) and confirm; before an import or a fork, it asks which nodes have the target
// open. Every node subscribes to one subject, `<prefix>.control`; answers come back on a fresh
// inbox of the asking node. Part of the relay (nats-distribution.ts), which lends it its
// connection and its table of live nodes.

import { createInbox, type NatsConnection } from '@nats-io/transport-node'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { ColloquyError } from '../../shared/errors.js'
import type { Logger } from '../observability/log.js'
import type { DistributionHost, RetiredEverywhere } from '../session/distribution.js'

/** What the control part of the relay uses of the relay. */
export interface SessionControlOptions {
  readonly nc: NatsConnection
  readonly nodeId: string
  /** Unique to this process (request ids start with it). */
  readonly incarnation: string
  readonly prefix: string
  /** The nodes heard from lately, this one excluded: who must answer a request. */
  readonly liveNodes: () => Iterable<string>
  /** True while `node` is still heard from (one that died meanwhile owes no answer). */
  readonly isLive: (node: string) => boolean
  /**
   * How long a request waits for every live node (ms); a node keeps a session retired twice this
   * long for a deleter that never released it (it died mid-delete).
   */
  readonly timeoutMs: number
  readonly logger: Logger
  /** Sends one message (the relay drops it once closed, or when a test filters it). */
  readonly publish: (subject: string, payload: Uint8Array) => void
}

/** The whole-session requests of one node: see {@link createSessionControl}. */
export interface SessionControl {
  /** Lets the others' requests act on this process's sessions. */
  bindHost(host: DistributionHost): void
  /** See `Distribution.retireEverywhere`. */
  retireEverywhere(sessionId: string, code: number, reason: string): Promise<RetiredEverywhere>
  /** See `Distribution.openElsewhere`. */
  openElsewhere(sessionId: string): Promise<string[]>
  /** Stops answering and releases every session held for another node. */
  close(): void
}

const Kind = {
  retire: 1,
  answer: 2,
  release: 3,
  probe: 4,
} as const

/** Starts answering other nodes' whole-session requests (subscribes at once). */
export function createSessionControl(options: SessionControlOptions): SessionControl {
  const { nc, nodeId, logger, timeoutMs, publish } = options
  const subject = `${options.prefix}.control`
  let host: DistributionHost | undefined
  let requests = 0
  let isClosed = false
  /** Sessions retired here at another node's request, by request id: the release and its timer. */
  const retiredHere = new Map<string, { release: () => void; timer: NodeJS.Timeout }>()

  const releaseHere = (requestId: string): void => {
    const held = retiredHere.get(requestId)
    if (held === undefined) return
    retiredHere.delete(requestId)
    clearTimeout(held.timer)
    held.release()
  }

  const sendRelease = (requestId: string): void => {
    const encoder = encoding.createEncoder()
    encoding.writeUint8(encoder, Kind.release)
    encoding.writeVarString(encoder, nodeId)
    encoding.writeVarString(encoder, requestId)
    publish(subject, encoding.toUint8Array(encoder))
  }

  /** Answers a request of another node on its inbox: `value` 1 for yes (retired, open), 0 for no. */
  const answer = (replyTo: string, requestId: string, value: number): void => {
    const encoder = encoding.createEncoder()
    encoding.writeUint8(encoder, Kind.answer)
    encoding.writeVarString(encoder, nodeId)
    encoding.writeVarString(encoder, requestId)
    encoding.writeVarUint(encoder, value)
    publish(replyTo, encoding.toUint8Array(encoder))
  }

  /** Another node deletes a session (retire), asks whether it is open here (probe), or is done. */
  const onControl = (data: Uint8Array): void => {
    const decoder = decoding.createDecoder(data)
    const kind = decoding.readUint8(decoder)
    const node = decoding.readVarString(decoder)
    if (node === nodeId) return
    const requestId = decoding.readVarString(decoder)
    if (kind === Kind.release) {
      releaseHere(requestId)
      return
    }
    if (kind !== Kind.retire && kind !== Kind.probe) return
    const replyTo = decoding.readVarString(decoder)
    const sessionId = decoding.readVarString(decoder)
    if (kind === Kind.probe) {
      answer(replyTo, requestId, host?.isOpen(sessionId) === true ? 1 : 0)
      return
    }
    const code = decoding.readVarUint(decoder)
    const reason = decoding.readVarString(decoder)
    logger.info({ session: sessionId, by: node }, 'session retired for a delete on another node')
    const retiring = host?.retire(sessionId, code, reason) ?? Promise.resolve(() => undefined)
    retiring.then(
      (release) => {
        if (isClosed) {
          release()
          return
        }
        // A deleter that dies before releasing must not block the session here for ever.
        const timer = setTimeout(() => releaseHere(requestId), 2 * timeoutMs)
        timer.unref()
        retiredHere.set(requestId, { release, timer })
        answer(replyTo, requestId, 1)
      },
      (error: unknown) => {
        // No confirmation: the deleter times out and refuses the delete (nothing is deleted).
        logger.warn({ session: sessionId, by: node, err: error }, 'retiring a session for a delete failed')
      },
    )
  }

  const subscription = nc.subscribe(subject, {
    callback: (error, message) => {
      if (error !== null) return
      try {
        onControl(message.data)
      } catch (thrown) {
        logger.warn({ err: thrown }, 'control message dropped: malformed')
      }
    },
  })

  /**
   * Sends a request (`kind`, then `rest` of its fields) to every node and collects their answers on
   * a fresh inbox until every node alive when asked answered, or `timeoutMs` passed. A node that
   * died meanwhile owes no answer; the others that did not answer are `missing`.
   */
  const askEveryNode = async (
    kind: typeof Kind.retire | typeof Kind.probe,
    requestId: string,
    rest: (encoder: encoding.Encoder) => void,
  ): Promise<{ answers: Map<string, number>; missing: string[] }> => {
    const expected = new Set(options.liveNodes())
    const answers = new Map<string, number>()
    if (expected.size === 0 || isClosed) return { answers, missing: [] }
    const inbox = createInbox(`${options.prefix}.inbox`)
    let done: () => void = () => undefined
    const allAnswered = new Promise<void>((resolve) => {
      done = resolve
    })
    const replies = nc.subscribe(inbox, {
      callback: (error, message) => {
        if (error !== null) return
        try {
          const decoder = decoding.createDecoder(message.data)
          if (decoding.readUint8(decoder) !== Kind.answer) return
          const node = decoding.readVarString(decoder)
          if (decoding.readVarString(decoder) !== requestId || !expected.delete(node)) return
          answers.set(node, decoding.readVarUint(decoder))
          if (expected.size === 0) done()
        } catch (thrown) {
          logger.warn({ err: thrown }, 'control answer dropped: malformed')
        }
      },
    })
    try {
      // The inbox must be known to the other servers before anyone answers on it.
      await nc.flush()
      const encoder = encoding.createEncoder()
      encoding.writeUint8(encoder, kind)
      encoding.writeVarString(encoder, nodeId)
      encoding.writeVarString(encoder, requestId)
      encoding.writeVarString(encoder, inbox)
      rest(encoder)
      publish(subject, encoding.toUint8Array(encoder))
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        allAnswered,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs)
        }),
      ])
      clearTimeout(timer)
      return { answers, missing: [...expected].filter((node) => options.isLive(node)) }
    } finally {
      replies.unsubscribe()
    }
  }

  return {
    bindHost(bound) {
      host = bound
    },

    async retireEverywhere(sessionId, code, reason) {
      const requestId = `${options.incarnation}~r${++requests}`
      const release = (): void => sendRelease(requestId)
      const { answers, missing } = await askEveryNode(Kind.retire, requestId, (encoder) => {
        encoding.writeVarString(encoder, sessionId)
        encoding.writeVarUint(encoder, code)
        encoding.writeVarString(encoder, reason)
      })
      if (missing.length > 0) {
        release()
        const confirmed = [...answers.keys()]
        logger.warn(
          { session: sessionId, missing, confirmed },
          'delete refused: live nodes did not retire the session',
        )
        throw new ColloquyError(
          'storage-unavailable',
          `nodes ${missing.join(', ')} did not confirm that they closed session ${sessionId}: nothing deleted, retry`,
        )
      }
      return { nodes: [...answers.keys()], release: answers.size === 0 ? () => undefined : release }
    },

    async openElsewhere(sessionId) {
      const requestId = `${options.incarnation}~p${++requests}`
      const { answers, missing } = await askEveryNode(Kind.probe, requestId, (encoder) =>
        encoding.writeVarString(encoder, sessionId),
      )
      if (missing.length > 0)
        throw new ColloquyError(
          'storage-unavailable',
          `nodes ${missing.join(', ')} did not say whether session ${sessionId} is open there: retry`,
        )
      return [...answers].filter(([, isOpen]) => isOpen === 1).map(([node]) => node)
    },

    close() {
      if (isClosed) return
      isClosed = true
      subscription.unsubscribe()
      for (const requestId of [...retiredHere.keys()]) releaseHere(requestId)
    },
  }
}
