// No false ack in a cluster: while JetStream has no quorum (2 of 3 nats-servers killed) writes are
// refused with a transient 45xx close code or never acked, and reads keep working; while one
// nats-server is cut off from the others by a partition, the Colloquy node that reaches only it
// never acks, the others do, and once healed nothing is lost or duplicated.

import { afterEach, describe, expect, it } from 'vitest'
import { type ColloquyCluster, type ColloquyNode, startColloquyCluster } from '../helpers/colloquy-cluster.js'
import { hasNatsServer, unstableIt, warnIfNoNatsServer } from '../helpers/nats-cluster.js'
import { until, withTimeout } from '../helpers/wait.js'
import { connectWsPeer, type WsPeer } from '../helpers/ws-peer.js'

warnIfNoNatsServer(import.meta.url)

const unstable = unstableIt('quorum-partition.test.ts')

/** Sends `count` items on `client`, asks for an ack; resolves true if acked within `ms`. */
async function pushAndAsk(client: WsPeer, items: readonly string[], ms: number): Promise<boolean> {
  client.peer.doc.getArray<string>('items').push([...items])
  const counter = client.peer.requestAck()
  return client.peer.whenAcked(counter, ms).then(
    () => true,
    () => false,
  )
}

/** Waits for the handshake; a failure shows the end of the node's log. */
async function synced(peer: WsPeer, node: ColloquyNode): Promise<void> {
  await peer.whenSynced(15_000).catch((error: unknown) => {
    throw new Error(`${String(error)} on ${node.name}:\n${node.process?.output().slice(-4_000)}`)
  })
}

/** Connects to `node` until a handshake completes (each try 15 s, 60 s in all). */
async function readerAfterHeal(node: ColloquyNode): Promise<WsPeer> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const peer = await connectWsPeer(node.url, 'split')
    try {
      await peer.whenSynced(15_000)
      return peer
    } catch (error) {
      peer.close()
      if (Date.now() > deadline) throw error
    }
  }
}

describe.skipIf(!hasNatsServer)('a Colloquy cluster without JetStream quorum', () => {
  let cluster: ColloquyCluster | undefined
  afterEach(async () => {
    await cluster?.stop()
    cluster = undefined
  })

  it('never acks a write while 2 of 3 nats-servers are down, and still serves reads', async () => {
    cluster = await startColloquyCluster()
    const node = cluster.nodes[0]!
    const writer = await connectWsPeer(node.url, 'quorum')
    await writer.whenSynced(15_000)
    expect(await pushAndAsk(writer, ['before'], 10_000)).toBe(true)

    await cluster.nats.nodes[1]!.kill()
    await cluster.nats.nodes[2]!.kill()
    // Refused with a transient code (45xx), or left unacknowledged: never a false ack.
    const acked = await pushAndAsk(writer, ['without quorum'], 6_000)
    const closeCode = await withTimeout(writer.closed, 1, 'closed').catch(() => undefined)
    expect(acked, 'an ack without quorum').toBe(false)
    if (closeCode !== undefined) expect(closeCode).toBeGreaterThanOrEqual(4500)
    if (closeCode !== undefined) expect(closeCode).toBeLessThan(4600)

    // Reads: a new client on the same node syncs what was acked.
    const reader = await connectWsPeer(node.url, 'quorum')
    await reader.whenSynced(15_000)
    expect(reader.peer.doc.getArray<string>('items').toArray()).toContain('before')
    reader.close()
    writer.close()
  }, 60_000)

  // Regression (issue 15): a reader on another node, 30 s after the heal, had none of the 20 updates
  // the majority acked during the partition (1 run in 4 here). Its node loaded the session through
  // an ordered consumer that nats-server had placed on the healed replica, still catching up, and
  // the scan stopped where that replica counted nothing pending (see scanSubject).
  // Open failure (issue 15) since that fix: in a clean-clone CI run of session 7 a reader on c2 (a
  // majority node) had m-before and every b- item but none of the 20 a- items. Not explained; a
  // guess to check: right after the heal the old leader on n3 still answers the stream API (last
  // seq of the subject) before it steps down.
  unstable(
    'never acks on the cut-off side of a partition, and loses or duplicates nothing once healed',
    async () => {
      // Colloquy node c3 reaches only nats-server n3; n3 is the one the partition isolates.
      cluster = await startColloquyCluster({
        partitionable: true,
        natsOf: (i) => (i === 2 ? [2] : [i, (i + 1) % 2]),
      })
      const [c1, , c3] = cluster.nodes
      const majority = await connectWsPeer(c1!.url, 'split')
      const minority = await connectWsPeer(c3!.url, 'split')
      await synced(majority, c1!)
      await synced(minority, c3!)
      expect(await pushAndAsk(minority, ['m-before'], 10_000)).toBe(true)

      cluster.proxies!.isolate(2)
      const majorityItems = Array.from({ length: 20 }, (_, i) => `a-${i}`)
      const minorityItems = Array.from({ length: 20 }, (_, i) => `b-${i}`)
      const minorityAcked = pushAndAsk(minority, minorityItems, 8_000)
      // The majority may wait for a new stream leader (if n3 led it) before it acks.
      const majorityAcked = await pushAndAsk(majority, majorityItems, 20_000)
      expect(majorityAcked, 'the majority acks').toBe(true)
      expect(await minorityAcked, 'an ack from the cut-off side').toBe(false)

      cluster.proxies!.heal()
      // After healing the minority's writes reach the log (acked now or re-sent on reconnect).
      const everything = ['m-before', ...majorityItems, ...minorityItems]
      // A node may fail to load the session while JetStream settles after the heal (its API times
      // out): the client reconnects, as providers do, bounded.
      const reader = await readerAfterHeal(cluster.nodes[1]!)
      const items = reader.peer.doc.getArray<string>('items')
      await until(
        () => everything.every((item) => items.toArray().includes(item)),
        30_000,
        'every item',
      ).catch(
        () => undefined, // the assertion names what is missing
      )
      expect(everything.filter((item) => !items.toArray().includes(item))).toEqual([])
      expect(items.length, 'no item twice').toBe(new Set(items.toArray()).size)
      expect(items.length).toBe(everything.length)
      for (const client of [reader, majority, minority]) client.close()
    },
    90_000,
  )
})
