// The NATS relay between nodes, on a real 3-node nats-server cluster with two relays (one per
// "node") and a small in-memory log for gap repair: updates cross at once, a dropped message is
// read back from the log, and a dead node's presence goes from everyone's within seconds.

import { connect, type NatsConnection } from '@nats-io/transport-node'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as Y from 'yjs'
import {
  createNatsDistribution,
  type MessageKind,
  type NatsDistribution,
  type NatsDistributionObserver,
  type RepairLog,
  subjectToken,
} from '../../server/cluster/nats-distribution.js'
import { createRelayMetrics } from '../../server/cluster/relay-metrics.js'
import { createSilentLogger, type Logger } from '../../server/observability/log.js'
import type { LogEntry, SessionMeta } from '../../server/persistence/store.js'
import type { DistributionSink } from '../../server/session/distribution.js'
import {
  hasNatsServer,
  type NatsCluster,
  startNatsCluster,
  warnIfNoNatsServer,
} from '../helpers/nats-cluster.js'
import { capturingLogger } from '../helpers/test-server.js'
import { until } from '../helpers/wait.js'

warnIfNoNatsServer(import.meta.url)

/** A session as a node holds it: a document and its presence, fed by the relay. */
function createSink(knownSeq = 0): DistributionSink & { doc: Y.Doc; awareness: awarenessProtocol.Awareness } {
  const doc = new Y.Doc()
  const awareness = new awarenessProtocol.Awareness(doc)
  awareness.setLocalState(null)
  return {
    doc,
    awareness,
    knownSeq,
    applyRemoteUpdate: (update) => Y.applyUpdate(doc, update, 'remote'),
    applyRemoteAwareness: (update) => awarenessProtocol.applyAwarenessUpdate(awareness, update, 'remote'),
  }
}

/** The shared log, sparse like the stream's: every append takes the next seq of all sessions. */
function createLog(): RepairLog & { append(sessionId: string, update: Uint8Array): number } {
  const entries = new Map<string, LogEntry[]>()
  let seq = 0
  const metaOf = (sessionId: string): SessionMeta | undefined => {
    const log = entries.get(sessionId)
    if (log === undefined) return undefined
    return {
      sessionId,
      lastSeq: log.at(-1)?.seq ?? 0,
      checkpointSeq: 0,
      logCount: log.length,
      logBytes: 0,
      checkpointBytes: 0,
      createdAt: 0,
      updatedAt: 0,
    }
  }
  return {
    append(sessionId, update) {
      seq += 3 // other sessions' entries in between
      const log = entries.get(sessionId) ?? []
      log.push({ seq, time: Date.now(), update })
      entries.set(sessionId, log)
      return seq
    },
    getMeta: async (sessionId) => metaOf(sessionId),
    lastLogSeq: async (sessionId) => metaOf(sessionId)?.lastSeq ?? 0,
    readLog: async (sessionId, range = {}) =>
      (entries.get(sessionId) ?? []).filter(
        (entry) => entry.seq >= (range.fromSeq ?? 0) && entry.seq <= (range.toSeq ?? Number.MAX_SAFE_INTEGER),
      ),
    load: async (sessionId) => ({
      meta: metaOf(sessionId),
      checkpoint: undefined,
      log: entries.get(sessionId) ?? [],
    }),
  }
}

/** `log` whose `readLog` throws while `failing()` says so (a JetStream read that timed out); counts reads. */
function withFailingReads(
  log: ReturnType<typeof createLog>,
  failing: () => boolean,
): ReturnType<typeof createLog> & { reads: number; failed: number } {
  const wrapped = {
    ...log,
    reads: 0,
    failed: 0,
    readLog: async (sessionId: string, range?: { fromSeq?: number; toSeq?: number }) => {
      wrapped.reads++
      if (failing()) {
        wrapped.failed++
        throw new Error('readLog timed out (test)')
      }
      return log.readLog(sessionId, range)
    },
  }
  return wrapped
}

/** Lets every promise already settled run its callbacks (the in-memory log answers at once). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** An update that inserts `text` at the end of a fresh client's text (its own client id). */
function edit(text: string): Uint8Array {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, text)
  return Y.encodeStateAsUpdate(doc)
}

describe.skipIf(!hasNatsServer)('the NATS relay between nodes', () => {
  let cluster: NatsCluster
  const opened: { nc: NatsConnection; relay: NatsDistribution }[] = []

  beforeAll(async () => {
    cluster = await startNatsCluster()
  }, 60_000)
  afterEach(async () => {
    for (const { nc, relay } of opened.splice(0)) {
      await relay.close()
      await nc.close()
    }
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  // Tests of one mechanism put both relays on one nats-server: a subscription reaches the other
  // servers a moment later, and a message published there before it would be dropped (the relay
  // repairs that too, but by a check the test did not mean to exercise).
  const startNode = async (
    nodeId: string,
    server: number,
    log: RepairLog,
    drop?: (kind: MessageKind) => boolean,
    heartbeatMs = 60_000,
    observer?: NatsDistributionObserver,
    logger: Logger = createSilentLogger(),
    // Each commit announced at once: the tests of a loss mechanism decide what is dropped when.
    announceDelayMs = 0,
  ): Promise<{ nc: NatsConnection; relay: NatsDistribution }> => {
    const nc = await connect({ servers: [cluster.urls[server]!], timeout: 5_000 })
    const relay = createNatsDistribution({
      connection: nc,
      nodeId,
      log,
      logger,
      // The timer's checks stay out of the way unless a test asks (tick()) or sets a short period.
      heartbeatMs,
      deadAfterMs: heartbeatMs * 4,
      logCheckMs: 0,
      announceDelayMs,
      ...(observer === undefined ? {} : { observer }),
      ...(drop === undefined ? {} : { sendFilter: (kind) => !drop(kind) }),
    })
    const node = { nc, relay }
    opened.push(node)
    return node
  }

  it('relays an update to the node that has the session loaded within milliseconds', async () => {
    const log = createLog()
    const a = await startNode('a', 0, log)
    const b = await startNode('b', 2, log)
    const sink = createSink()
    b.relay.join('s.1', sink)
    await b.nc.flush()
    // Across servers b's subscription takes a moment to reach a's server: a re-sends (the same
    // update: idempotent) until it lands, bounded.
    const update = edit('hello')
    const sent = performance.now()
    await until(
      () => {
        if (sink.doc.getText('t').toString() === 'hello') return true
        a.relay.updateQueued('s.1', update)
        return false
      },
      2_000,
      'the update on b',
    )
    // Milliseconds on an idle machine; the bound leaves room for a loaded one.
    expect(performance.now() - sent).toBeLessThan(1_000)
    expect(subjectToken('s.1')).toBe('s%2E1')
  })

  /** Counts the relay messages of `sessionId` as they cross `nc` (a raw subscription). */
  const countRelayMessages = async (nc: NatsConnection, sessionId: string) => {
    const seen = { messages: 0, announcements: 0 }
    nc.subscribe(`colloquy.relay.${subjectToken(sessionId)}`, {
      callback: (_error, message) => {
        // The first byte is the message kind; 2 is a commit announcement.
        if (message.data[0] === 2) seen.announcements++
        else seen.messages++
      },
    })
    await nc.flush()
    return seen
  }

  /** An observer that sums what the relay reports. */
  const tally = () => {
    const counts = { relayed: 0, repaired: 0 }
    const observer: NatsDistributionObserver = {
      relayed: (count) => {
        counts.relayed += count
      },
      repaired: (entries) => {
        counts.repaired += entries
      },
    }
    return { counts, observer }
  }

  it('regression: relays the updates queued in one loop turn as one message, each applied and counted', async () => {
    // Bench [C2] (issue 15): one NATS message per update cost every nats-server and every node a
    // message each at high rates; the updates of one turn now cross as one.
    const log = createLog()
    const { counts, observer } = tally()
    const a = await startNode('a', 0, log)
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    const sink = createSink()
    b.relay.join('batched', sink)
    const wire = await countRelayMessages(b.nc, 'batched')
    const words = ['one ', 'two ', 'three ', 'four ', 'five']
    for (const word of words) a.relay.updateQueued('batched', edit(word))
    await until(() => counts.relayed === words.length, 3_000, 'five updates relayed')
    await b.nc.flush()
    expect(wire.messages).toBe(1)
    expect(sink.doc.getText('t').length).toBe(words.join('').length)
    // A later turn's update is a message of its own, its counter following the batch's.
    a.relay.updateQueued('batched', edit('six'))
    await until(() => counts.relayed === words.length + 1, 3_000, 'the sixth update')
    await b.nc.flush()
    expect(wire.messages).toBe(2)
    expect(counts.repaired).toBe(0)
  })

  it('sends a batch before it grows past 64 KiB, so a turn of large updates is several messages', async () => {
    const log = createLog()
    const { counts, observer } = tally()
    const a = await startNode('a', 0, log)
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    const sink = createSink()
    b.relay.join('large', sink)
    const wire = await countRelayMessages(b.nc, 'large')
    const big = 'x'.repeat(40 * 1024)
    for (let i = 0; i < 3; i++) a.relay.updateQueued('large', edit(big))
    await until(() => counts.relayed === 3, 3_000, 'three large updates relayed')
    await b.nc.flush()
    expect(wire.messages).toBe(3)
    expect(sink.doc.getText('t').length).toBe(3 * big.length)
  })

  it('regression: announces a commit only after the batch holding its updates, so nothing is read back', async () => {
    // The commit of updates queued in the same turn flushes their batch first: an announcement
    // ahead of its updates would make the receiver read them from the log for nothing.
    const memory = createLog()
    const log = withFailingReads(memory, () => false)
    const { counts, observer } = tally()
    const a = await startNode('a', 0, log)
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    const sink = createSink()
    b.relay.join('ordered', sink)
    await b.nc.flush()
    const entries = ['alpha ', 'beta'].map((text) => {
      const update = edit(text)
      a.relay.updateQueued('ordered', update)
      return { sessionId: 'ordered', time: Date.now(), update, seq: memory.append('ordered', update) }
    })
    a.relay.updatesStored(
      entries,
      entries.map((entry) => entry.seq),
    )
    await until(() => counts.relayed === 2, 3_000, 'both updates relayed')
    await a.nc.flush()
    await b.nc.flush()
    await settle()
    expect(sink.doc.getText('t').length).toBe('alpha beta'.length)
    expect(log.reads).toBe(0)
    expect(counts.repaired).toBe(0)
  })

  it('reads a lost batch back from the log and only it, when a later batch arrived and the commit is announced', async () => {
    const log = createLog()
    const { counts, observer } = tally()
    let dropNext = true
    const a = await startNode(
      'a',
      0,
      log,
      (kind) => {
        if (kind !== 'update' || !dropNext) return false
        dropNext = false
        return true
      },
      60_000,
    )
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    const sink = createSink()
    b.relay.join('partly', sink)
    await b.nc.flush()
    const queue = (texts: string[]) =>
      texts.map((text) => {
        const update = edit(text)
        a.relay.updateQueued('partly', update)
        return { sessionId: 'partly', time: Date.now(), update, seq: log.append('partly', update) }
      })
    // Turn 1: three updates, one message, lost on the wire. Turn 2: two updates that arrive.
    const lost = queue(['lost-1 ', 'lost-2 ', 'lost-3 '])
    await settle()
    const arrived = queue(['kept-1 ', 'kept-2'])
    await until(() => counts.relayed === 2, 3_000, 'the second batch relayed')
    expect(sink.doc.getText('t').length).toBe('kept-1 kept-2'.length)
    // One commit of all five: counters 1–3 were never received, so their seqs are read back.
    const entries = [...lost, ...arrived]
    a.relay.updatesStored(
      entries,
      entries.map((entry) => entry.seq),
    )
    await until(
      () => sink.doc.getText('t').length === 'lost-1 lost-2 lost-3 kept-1 kept-2'.length,
      3_000,
      'the lost batch read back',
    )
    expect(counts.repaired).toBe(3)
  })

  it('regression: announces the commits of a window as one message, and a lost update is still read back', async () => {
    // Bench [C1] (issue 15): one announcement per origin per commit was about one NATS message
    // per update at 1,000/s over 10 sessions; a window's commits now go as one message.
    const log = createLog()
    const { counts, observer } = tally()
    let updates = 0
    const a = await startNode(
      'a',
      0,
      log,
      (kind) => kind === 'update' && ++updates === 2, // the second update's message is lost
      60_000,
      undefined,
      createSilentLogger(),
      1_000,
    )
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    const sink = createSink()
    b.relay.join('windowed', sink)
    const wire = await countRelayMessages(b.nc, 'windowed')
    const texts = ['first ', 'second ', 'third']
    for (const text of texts) {
      const update = edit(text)
      a.relay.updateQueued('windowed', update)
      await settle() // its own turn: a batch of its own
      const seq = log.append('windowed', update)
      a.relay.updatesStored([{ sessionId: 'windowed', time: Date.now(), update }], [seq])
    }
    await until(
      () => sink.doc.getText('t').length === texts.join('').length,
      3_000,
      'all three, the lost one read back',
    )
    await b.nc.flush()
    expect(wire.announcements).toBe(1)
    expect(wire.messages).toBe(2)
    expect(counts.repaired).toBe(1)
  })

  it('counts relayed and repaired updates and live nodes in its metrics', async () => {
    const log = createLog()
    const registry = new Registry()
    let relay: NatsDistribution | undefined
    const observer = createRelayMetrics(registry, () => relay?.liveNodes().length ?? 0)
    const a = await startNode('a', 0, log, (kind) => kind === 'update')
    const b = await startNode('b', 0, log, undefined, 60_000, observer)
    relay = b.relay
    const sink = createSink()
    b.relay.join('metered', sink)
    await b.nc.flush()
    await a.relay.tick() // a heartbeat: b hears of a
    const update = edit('counted')
    a.relay.updateQueued('metered', update)
    const seq = log.append('metered', update)
    const entry = { sessionId: 'metered', seq, time: Date.now(), update }
    a.relay.updatesStored([entry], [seq])
    await until(() => sink.doc.getText('t').toString() === 'counted', 3_000, 'the repaired update')
    const text = await registry.metrics()
    expect(text).toContain('colloquy_relay_repaired_updates_total{reason="counter-gap"} 1')
    expect(text).toContain('colloquy_cluster_live_nodes 1')
  })

  it('counts the messages it sends by kind and the updates in them, so batching shows in its metrics', async () => {
    const log = createLog()
    const registry = new Registry()
    const a = await startNode(
      'a',
      0,
      log,
      undefined,
      60_000,
      createRelayMetrics(registry, () => 0),
    )
    const b = await startNode('b', 0, log)
    const sink = createSink()
    b.relay.join('metered-sent', sink)
    await b.nc.flush()
    const entries = ['x', 'y', 'z'].map((text) => {
      const update = edit(text)
      a.relay.updateQueued('metered-sent', update)
      return { sessionId: 'metered-sent', time: Date.now(), update, seq: log.append('metered-sent', update) }
    })
    a.relay.updatesStored(
      entries,
      entries.map((entry) => entry.seq),
    )
    await until(() => sink.doc.getText('t').length === 3, 3_000, 'the three updates on b')
    const text = await registry.metrics()
    expect(text).toContain('colloquy_relay_updates_sent_total 3')
    expect(text).toContain('colloquy_relay_messages_sent_total{kind="update"} 1')
    expect(text).toContain('colloquy_relay_messages_sent_total{kind="stored"} 1')
  })

  it('reads a dropped update back from the log once its commit is announced', async () => {
    const log = createLog()
    let dropNext = true
    const a = await startNode('a', 0, log, (kind) => {
      if (kind !== 'update' || !dropNext) return false
      dropNext = false
      return true
    })
    const b = await startNode('b', 0, log)
    const sink = createSink()
    b.relay.join('s2', sink)
    await b.nc.flush()
    const update = edit('lost on the wire')
    a.relay.updateQueued('s2', update)
    const seq = log.append('s2', update)
    const entry = { sessionId: 's2', seq, time: Date.now(), update }
    a.relay.updatesStored([entry], [seq])
    await until(
      () => sink.doc.getText('t').toString() === 'lost on the wire',
      3_000,
      "sink.doc.getText('t').toString() === 'lost on the wire",
    )
  })

  it('reads back updates whose relay and commit announcement were both lost, from the next heartbeat', async () => {
    const log = createLog()
    let dropping = true
    const a = await startNode('a', 0, log, (kind) => dropping && (kind === 'update' || kind === 'stored'))
    const b = await startNode('b', 0, log)
    const sink = createSink()
    b.relay.join('s3', sink)
    await b.nc.flush()
    const update = edit('silent')
    a.relay.updateQueued('s3', update)
    const seq = log.append('s3', update)
    const entry = { sessionId: 's3', seq, time: Date.now(), update }
    a.relay.updatesStored([entry], [seq])
    dropping = false
    await a.relay.tick()
    await until(
      () => sink.doc.getText('t').toString() === 'silent',
      3_000,
      "sink.doc.getText('t').toString() === 'silent'",
    )
  })

  it('reads back an update whose relay and announcement were lost once a later announcement arrives', async () => {
    const log = createLog()
    let dropping = true
    const a = await startNode('a', 0, log, (kind) => dropping && (kind === 'update' || kind === 'stored'))
    const b = await startNode('b', 0, log)
    const sink = createSink()
    b.relay.join('s8', sink)
    await b.nc.flush()
    for (const text of ['first ', 'second']) {
      const update = edit(text)
      a.relay.updateQueued('s8', update)
      const seq = log.append('s8', update)
      const entry = { sessionId: 's8', seq, time: Date.now(), update }
      a.relay.updatesStored([entry], [seq])
      dropping = false
    }
    await until(() => sink.doc.getText('t').length === 'first second'.length, 3_000, 'both updates')
  })

  /** Relays `text` from `a` as one committed update (stored in `log`, announced); its seq. */
  const commit = (
    a: NatsDistribution,
    log: ReturnType<typeof createLog>,
    sessionId: string,
    text: string,
  ) => {
    const update = edit(text)
    a.updateQueued(sessionId, update)
    const seq = log.append(sessionId, update)
    a.updatesStored([{ sessionId, time: Date.now(), update }], [seq])
    return seq
  }

  it('regression: reads a gap again at the next check when its first read failed, though a later update arrived', async () => {
    // kill-durability (issue 15): the repair's read timed out, the relay dropped the range, and the
    // next log check, seeing the last seq already relayed, moved the watermark over it for good.
    const memory = createLog()
    let failOnce = false
    const log = withFailingReads(memory, () => {
      if (!failOnce) return false
      failOnce = false
      return true
    })
    let dropNext = false
    const a = await startNode('a', 0, log, (kind) => {
      if (kind !== 'update' || !dropNext) return false
      dropNext = false
      return true
    })
    const repaired: string[] = []
    const b = await startNode('b', 0, log, undefined, 60_000, {
      repaired: (entries, reason) => repaired.push(`${entries} ${reason}`),
    })
    const sink = createSink()
    b.relay.join('s13', sink)
    await b.nc.flush()
    failOnce = true
    dropNext = true
    commit(a.relay, memory, 's13', 'first ') // its relay is lost: a counter gap, whose read fails
    await until(() => log.failed === 1, 3_000, 'the failed read of the gap')
    commit(a.relay, memory, 's13', 'second') // relayed: the log's last seq is one b has
    await until(() => sink.doc.getText('t').length === 'second'.length, 3_000, 'the relayed update')
    await b.relay.tick()
    await until(() => sink.doc.getText('t').length === 'first second'.length, 3_000, 'the gap read again')
    expect(repaired).toEqual(['1 counter-gap'])
    // Later checks find nothing more to read.
    await b.relay.tick()
    await b.relay.tick()
    await settle()
    expect(log.reads).toBe(2)
  })

  it('retries a gap whose reads keep failing after 1, 2, 4 checks with a warning, not in a loop', async () => {
    const memory = createLog()
    let failing = true
    const log = withFailingReads(memory, () => failing)
    const a = await startNode('a', 0, log, (kind) => kind === 'update')
    const { logger, lines } = capturingLogger()
    const b = await startNode('b', 0, log, undefined, 60_000, undefined, logger)
    const sink = createSink()
    b.relay.join('s14', sink)
    await b.nc.flush()
    commit(a.relay, memory, 's14', 'one ')
    await until(() => log.failed === 1, 3_000, 'the first failed read')
    // Each check, the reads so far: retries after 1, then 2, then 4 checks.
    const readsAfterCheck: number[] = []
    for (let check = 1; check <= 7; check++) {
      if (check === 3) {
        commit(a.relay, memory, 's14', 'two ') // a new gap waits for the retry
        // One nats-server: once a's messages were handled, b's ping comes back after them.
        await a.nc.flush()
        await b.nc.flush()
      }
      await b.relay.tick()
      await settle()
      readsAfterCheck.push(log.reads)
    }
    expect(readsAfterCheck).toEqual([2, 2, 3, 3, 3, 3, 4])
    const warnings = lines.filter((line) => line.includes('gap repair failed'))
    expect(warnings).toHaveLength(4)
    expect(JSON.parse(warnings.at(-1)!)).toMatchObject({ session: 's14', failures: 4, retryInMs: 8 * 60_000 })
    // The log answers again: the next retry reads both gaps in one read.
    failing = false
    for (let check = 0; check < 8 && sink.doc.getText('t').length === 0; check++) {
      await b.relay.tick()
      await settle()
    }
    await until(() => sink.doc.getText('t').length === 'one two '.length, 3_000, 'both gaps read')
    expect(log.reads).toBe(5)
  })

  it('reads back what the log holds that no node ever announced (a node died before it could)', async () => {
    const log = createLog()
    const b = await startNode('b', 1, log)
    const sink = createSink()
    b.relay.join('s4', sink)
    await b.nc.flush()
    log.append('s4', edit('unannounced'))
    // One check sees the log ahead, the next reads what is still unannounced.
    await b.relay.tick()
    await b.relay.tick()
    await until(
      () => sink.doc.getText('t').toString() === 'unannounced',
      3_000,
      "sink.doc.getText('t').toString() === 'unannounced'",
    )
  })

  it('catches up on a join with what was stored between the load and the subscription', async () => {
    const log = createLog()
    const b = await startNode('b', 2, log)
    const loadedAt = log.append('s5', edit('a'))
    const sink = createSink(loadedAt)
    Y.applyUpdate(sink.doc, (await log.readLog('s5'))[0]!.update)
    log.append('s5', edit('b'))
    b.relay.join('s5', sink)
    await until(() => sink.doc.getText('t').length === 2, 3_000, "sink.doc.getText('t').length === 2")
  })

  it("removes a dead node's clients from everyone's presence within seconds", async () => {
    const log = createLog()
    const a = await startNode('a', 0, log, undefined, 400)
    const b = await startNode('b', 0, log, undefined, 400)
    const sink = createSink()
    b.relay.join('s6', sink)
    await b.nc.flush()
    const client = new awarenessProtocol.Awareness(new Y.Doc())
    client.setLocalState({ user: 'on a' })
    a.relay.awarenessChanged('s6', awarenessProtocol.encodeAwarenessUpdate(client, [client.clientID]))
    await until(
      () => sink.awareness.getStates().has(client.clientID),
      5_000,
      'sink.awareness.getStates().has(client.clientID)',
    )
    await until(() => b.relay.liveNodes().includes('a'), 5_000, "b.relay.liveNodes().includes('a')")
    // kill -9 of node a: its connection drops, no goodbye.
    await a.relay.tick()
    const died = performance.now()
    await a.nc.close()
    await until(
      () => !sink.awareness.getStates().has(client.clientID),
      5_000,
      '!sink.awareness.getStates().has(client.clientID)',
    )
    expect(performance.now() - died).toBeLessThan(4_000)
    client.destroy()
  })

  it('regression: drops the presence of a node that died before this node ever heard its heartbeat', async () => {
    const log = createLog()
    // a's only heartbeat goes out when it starts, before b exists (its next would be a minute later).
    const a = await startNode('a', 0, log, undefined, 60_000)
    const b = await startNode('b', 0, log, undefined, 400)
    a.relay.join('s8', createSink())
    const sink = createSink()
    b.relay.join('s8', sink)
    await b.nc.flush()
    const client = new awarenessProtocol.Awareness(new Y.Doc())
    client.setLocalState({ user: 'on a' })
    a.relay.awarenessChanged('s8', awarenessProtocol.encodeAwarenessUpdate(client, [client.clientID]))
    await until(() => sink.awareness.getStates().has(client.clientID), 5_000, "a's client on b")
    // kill -9 of node a: its connection drops, no goodbye, and b never had a heartbeat of it.
    const died = performance.now()
    await a.nc.close()
    await until(() => !sink.awareness.getStates().has(client.clientID), 5_000, "a's client gone from b")
    expect(performance.now() - died).toBeLessThan(4_000)
    client.destroy()
  })

  /** Two relays on one nats-server that hear each other, for the whole-session control messages. */
  const startPair = async (retireTimeoutMs: number) => {
    const make = async (nodeId: string) => {
      const nc = await connect({ servers: [cluster.urls[0]!], timeout: 5_000 })
      const relay = createNatsDistribution({
        connection: nc,
        nodeId,
        log: createLog(),
        logger: createSilentLogger(),
        heartbeatMs: 200,
        retireTimeoutMs,
      })
      opened.push({ nc, relay })
      return relay
    }
    const a = await make('a')
    const b = await make('b')
    await until(() => a.liveNodes().includes('b'), 5_000, 'a hears b')
    return { a, b }
  }

  it('has every live node retire a session before a delete, and releases it after', async () => {
    const { a, b } = await startPair(5_000)
    const retired: string[] = []
    const released: string[] = []
    b.bindHost({
      isOpen: () => false,
      retire: async (sessionId, code, reason) => {
        retired.push(`${sessionId} ${code} ${reason}`)
        return () => released.push(sessionId)
      },
    })
    const everywhere = await a.retireEverywhere('s9', 1001, 'session deleted')
    expect(everywhere.nodes).toEqual(['b'])
    expect(retired).toEqual(['s9 1001 session deleted'])
    expect(released).toEqual([])
    everywhere.release()
    await until(() => released.length === 1, 5_000, 'b released s9')
    expect(released).toEqual(['s9'])
  })

  it('refuses a delete (storage-unavailable) when a live node does not confirm in time', async () => {
    const { a, b } = await startPair(400)
    b.bindHost({ isOpen: () => false, retire: () => new Promise(() => {}) })
    const started = performance.now()
    await expect(a.retireEverywhere('s10', 1001, 'session deleted')).rejects.toMatchObject({
      code: 'storage-unavailable',
    })
    expect(performance.now() - started).toBeLessThan(3_000)
  })

  it('tells which other nodes have a session open (an import onto it is refused)', async () => {
    const { a, b } = await startPair(5_000)
    b.bindHost({ isOpen: (sessionId) => sessionId === 's11', retire: async () => () => undefined })
    expect(await a.openElsewhere('s11')).toEqual(['b'])
    expect(await a.openElsewhere('s12')).toEqual([])
  })

  it("gives a node that joins the presence of the other nodes' clients", async () => {
    const log = createLog()
    const a = await startNode('a', 0, log)
    const b = await startNode('b', 2, log)
    a.relay.join('s7', createSink())
    const client = new awarenessProtocol.Awareness(new Y.Doc())
    client.setLocalState({ user: 'on a' })
    a.relay.awarenessChanged('s7', awarenessProtocol.encodeAwarenessUpdate(client, [client.clientID]))
    await a.nc.flush()
    const sink = createSink()
    b.relay.join('s7', sink)
    await until(
      () => sink.awareness.getStates().get(client.clientID)?.user === 'on a',
      3_000,
      'sink.awareness.getStates().get(client.clientID)?.user ',
    )
    client.destroy()
  })
})
