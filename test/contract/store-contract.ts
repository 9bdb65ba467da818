// The contract every Store backend must pass: ordering, isolation, atomicity, meta, checkpoints.
// Run it from a `*.test.ts` file with a factory for the backend (see leveldb-store.test.ts).
// The store assigns seqs: dense stores must give exactly 1, 2, 3, … per session (checked), sparse
// ones strictly increasing seqs; every other expectation is written against the seqs returned.

import { randomFillSync } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { AppendEntry, Store } from '../../server/persistence/store.js'

/** A store opened for one test of the contract. */
export interface StoreUnderTest {
  readonly store: Store
  /**
   * Opens a new store on the same data as `store`. The suite closes the previous store first.
   * Omit it for backends that keep nothing across instances; the durability tests are then skipped.
   */
  readonly reopen?: () => Promise<Store>
  /** Closes whatever store is still open and removes its data. */
  readonly cleanup: () => Promise<void>
}

const encoder = new TextEncoder()

/** A log entry whose update bytes name its session and tag, at time 1000 + tag. */
function entry(sessionId: string, tag: number, time = 1000 + tag): AppendEntry {
  return { sessionId, time, update: encoder.encode(`${sessionId}#${tag}`) }
}

function isIncreasing(seqs: readonly number[]): boolean {
  return seqs.every((seq, i) => Number.isSafeInteger(seq) && seq > 0 && (i === 0 || seq > seqs[i - 1]!))
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  )
}

/** Registers the Store contract suite for one backend. `open` is called once per test. */
export function runStoreContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`Store contract: ${name}`, () => {
    let subject: StoreUnderTest
    let store: Store

    beforeEach(async () => {
      subject = await open()
      store = subject.store
    })

    afterEach(async () => {
      await subject.cleanup()
    })

    /** Dense stores number 1, 2, 3, …: the suite then checks the exact seqs too. */
    const isDense = (): boolean => store.seqs !== 'sparse'

    /** Appends and returns the seqs, checking they increase per session (and are exact when dense). */
    async function append(entries: readonly AppendEntry[], dense?: readonly number[]): Promise<number[]> {
      const seqs = [...(await store.append(entries))]
      expect(seqs).toHaveLength(entries.length)
      const bySession = new Map<string, number[]>()
      entries.forEach((e, i) => {
        bySession.set(e.sessionId, [...(bySession.get(e.sessionId) ?? []), seqs[i]!])
      })
      for (const [sessionId, own] of bySession) expect(isIncreasing(own), sessionId).toBe(true)
      if (dense !== undefined && isDense()) expect(seqs).toEqual(dense)
      return seqs
    }

    async function reopen(): Promise<Store> {
      const reopenStore = subject.reopen
      if (reopenStore === undefined) throw new Error('this backend cannot reopen')
      await store.close()
      store = await reopenStore()
      return store
    }

    it('loads appended entries in seq order with their times and bytes', async () => {
      const seqs = await append([entry('s', 1), entry('s', 2), entry('s', 3)], [1, 2, 3])
      const { meta, checkpoint, log } = await store.load('s')
      expect(checkpoint).toBeUndefined()
      expect(meta?.lastSeq).toBe(seqs[2])
      expect(log.map((e) => [e.seq, e.time, text(e.update)])).toEqual([
        [seqs[0], 1001, 's#1'],
        [seqs[1], 1002, 's#2'],
        [seqs[2], 1003, 's#3'],
      ])
    })

    it('continues seqs across several appends, each above everything stored before', async () => {
      const first = await append([entry('s', 1)], [1])
      const second = await append([entry('s', 2), entry('s', 3)], [2, 3])
      const third = await append([entry('s', 10)], [4])
      const all = [...first, ...second, ...third]
      expect(isIncreasing(all)).toBe(true)
      const { log, meta } = await store.load('s')
      expect(log.map((e) => e.seq)).toEqual(all)
      expect(log.map((e) => text(e.update))).toEqual(['s#1', 's#2', 's#3', 's#10'])
      expect(meta?.lastSeq).toBe(third[0])
    })

    it('gives concurrent appends to one session distinct seqs in one order', async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => append([entry('c', 2 * i), entry('c', 2 * i + 1)])),
      )
      const all = results.flat().sort((a, b) => a - b)
      expect(new Set(all).size).toBe(16)
      const log = await store.readLog('c')
      expect(log.map((e) => e.seq)).toEqual(all)
      // Each call's entries stay in call order.
      for (const [i, seqs] of results.entries()) {
        const tags = seqs.map((seq) => text(log.find((e) => e.seq === seq)!.update))
        expect(tags).toEqual([`c#${2 * i}`, `c#${2 * i + 1}`])
      }
      expect(await store.getMeta('c')).toMatchObject({ lastSeq: all[15], logCount: 16 })
      if (isDense()) expect(all).toEqual(Array.from({ length: 16 }, (_, i) => i + 1))
    })

    it('writes entries of many sessions in one append', async () => {
      const entries: AppendEntry[] = []
      for (let tag = 1; tag <= 5; tag++) {
        for (let i = 0; i < 40; i++) entries.push(entry(`session-${i}`, tag))
      }
      const seqs = await append(entries)
      for (let i = 0; i < 40; i++) {
        const { log } = await store.load(`session-${i}`)
        expect(log.map((e) => text(e.update))).toEqual([1, 2, 3, 4, 5].map((tag) => `session-${i}#${tag}`))
        const own = seqs.filter((_, j) => entries[j]!.sessionId === `session-${i}`)
        expect(log.map((e) => e.seq)).toEqual(own)
        if (isDense()) expect(own).toEqual([1, 2, 3, 4, 5])
      }
      expect((await store.listSessions()).length).toBe(40)
    })

    it('keeps sessions whose ids are prefixes of each other apart', async () => {
      const ids = ['a', 'a.', 'ab', 'a:b', 'a-', 'a0', 'aa', 'A', 'a.b', 'abc', 'b']
      const seqs = await append(ids.flatMap((id, i) => [entry(id, 1), entry(id, 2 + i)]))
      const seqsOf = (i: number) => [seqs[2 * i]!, seqs[2 * i + 1]!]
      await store.putCheckpoint('a', { seq: seqsOf(0)[0]!, time: 5, state: encoder.encode('cp a') })
      for (const [i, id] of ids.entries()) {
        const { log, meta } = await store.load(id)
        const expected = id === 'a' ? [`${id}#${2 + i}`] : [`${id}#1`, `${id}#${2 + i}`]
        expect(log.map((e) => text(e.update))).toEqual(expected)
        expect(meta?.logCount).toBe(2)
        expect(await store.listCheckpoints(id)).toHaveLength(id === 'a' ? 1 : 0)
        expect((await store.readLog(id)).map((e) => e.seq)).toEqual(seqsOf(i))
      }
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual([...ids].sort())
      await store.deleteSession('a')
      for (const id of ids.filter((id) => id !== 'a')) {
        expect((await store.load(id)).log).toHaveLength(2)
      }
    })

    it('loads unknown sessions as empty, with meta undefined', async () => {
      await append([entry('known', 1)])
      expect(await store.load('unknown')).toEqual({ meta: undefined, checkpoint: undefined, log: [] })
      expect(await store.getMeta('unknown')).toBeUndefined()
      expect(await store.readLog('unknown')).toEqual([])
      expect(await store.listCheckpoints('unknown')).toEqual([])
      expect(await store.append([])).toEqual([])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['known'])
    })

    it('round-trips a 16 MiB update byte for byte', async () => {
      const big = randomFillSync(new Uint8Array(16 * 1024 * 1024))
      const [seq] = await append([{ sessionId: 'big', time: 1, update: big }, entry('big', 2)])
      const [stored, after] = (await store.load('big')).log
      expect(stored?.seq).toBe(seq)
      expect(stored?.update.byteLength).toBe(big.byteLength)
      expect(sameBytes(stored!.update, big)).toBe(true)
      expect(text(after!.update)).toBe('big#2')
      expect((await store.getMeta('big'))?.logBytes).toBe(big.byteLength + 'big#2'.length)
      const [read] = await store.readLog('big', { fromSeq: seq!, limit: 1 })
      expect(sameBytes(read!.update, big)).toBe(true)
    })

    it('keeps every log entry, checkpoint and meta across close and reopen', async ({ skip }) => {
      if (subject.reopen === undefined) skip()
      const [s1, s2] = await append([entry('s', 1), entry('s', 2), entry('t', 1)])
      await store.putCheckpoint('s', { seq: s1!, time: 50, state: encoder.encode('state@1') })
      const [s3] = await append([entry('s', 3)])
      const before = { s: await store.load('s'), t: await store.load('t'), list: await store.listSessions() }
      await reopen()
      expect(await store.load('s')).toEqual(before.s)
      expect(await store.load('t')).toEqual(before.t)
      expect(await store.listSessions()).toEqual(before.list)
      const [s4] = await append([entry('s', 4)])
      expect(s4).toBeGreaterThan(s3!)
      expect((await store.load('s')).log.map((e) => e.seq)).toEqual([s2, s3, s4])
    })

    it('keeps meta counts, sizes, seqs and times', async () => {
      await append([entry('s', 1, 100), entry('s', 2, 200)])
      const [last] = await append([{ sessionId: 's', time: 150, update: new Uint8Array(7) }], [3])
      const expected = {
        sessionId: 's',
        lastSeq: last,
        checkpointSeq: 0,
        logCount: 3,
        logBytes: 3 + 3 + 7,
        checkpointBytes: 0,
        createdAt: 100,
        updatedAt: 200,
      }
      // A sparse store also says how far its log was trimmed (nothing yet), and counts the entries
      // above the latest checkpoint (all of them: there is none).
      expect(await store.getMeta('s')).toEqual(
        isDense() ? expected : { ...expected, trimmedThrough: 0, sinceCheckpoint: { count: 3, bytes: 13 } },
      )
      store.release('s')
      expect((await store.getMeta('s'))?.logBytes).toBe(13)
      expect((await store.load('s')).meta).toEqual(await store.getMeta('s'))
    })

    it('loads the latest checkpoint and only the log after it', async () => {
      const seqs = await append([1, 2, 3, 4, 5].map((tag) => entry('s', tag)))
      const [, two, , four, five] = seqs as [number, number, number, number, number]
      await store.putCheckpoint('s', { seq: two, time: 20, state: encoder.encode('state@2') })
      await store.putCheckpoint('s', { seq: four, time: 40, state: encoder.encode('state@4') })
      const { checkpoint, log, meta } = await store.load('s')
      expect(checkpoint?.seq).toBe(four)
      expect(checkpoint?.time).toBe(40)
      expect(text(checkpoint!.state)).toBe('state@4')
      expect(log.map((e) => e.seq)).toEqual([five])
      expect(meta).toMatchObject({ checkpointSeq: four, checkpointBytes: 7, logCount: 5, lastSeq: five })
      // Only `five` lies above the checkpoint, though five entries are retained.
      if (!isDense()) expect(meta?.sinceCheckpoint).toEqual({ count: 1, bytes: 3 })
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([two, four])
      // An older checkpoint written later does not become the latest.
      await store.putCheckpoint('s', { seq: seqs[0]!, time: 10, state: encoder.encode('s1') })
      expect((await store.load('s')).checkpoint?.seq).toBe(four)
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([seqs[0], two, four])
      expect((await store.getMeta('s'))?.checkpointBytes).toBe(7)
    })

    it('trims the log and old checkpoints in putCheckpoint and fixes the meta', async () => {
      const seqs = await append([1, 2, 3, 4, 5, 6].map((tag) => entry('s', tag)))
      const at = (tag: number) => seqs[tag - 1]!
      await append([entry('other', 1)])
      await store.putCheckpoint('s', { seq: at(2), time: 20, state: encoder.encode('two') })
      await store.putCheckpoint(
        's',
        { seq: at(4), time: 40, state: encoder.encode('four!') },
        { trimLogThrough: at(3) },
      )
      expect((await store.readLog('s')).map((e) => e.seq)).toEqual([at(4), at(5), at(6)])
      expect(await store.getMeta('s')).toMatchObject({
        logCount: 3,
        logBytes: 9,
        lastSeq: at(6),
        checkpointSeq: at(4),
      })
      if (!isDense()) {
        expect((await store.getMeta('s'))?.trimmedThrough).toBe(at(3))
        expect((await store.getMeta('s'))?.sinceCheckpoint).toEqual({ count: 2, bytes: 6 })
      }
      await store.putCheckpoint(
        's',
        { seq: at(6), time: 60, state: encoder.encode('six') },
        { trimLogThrough: at(6), trimCheckpointsBefore: at(6) },
      )
      expect(await store.readLog('s')).toEqual([])
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([at(6)])
      expect(await store.getMeta('s')).toMatchObject({
        logCount: 0,
        logBytes: 0,
        lastSeq: at(6),
        checkpointSeq: at(6),
        checkpointBytes: 3,
      })
      const loaded = await store.load('s')
      expect([loaded.checkpoint?.seq, loaded.log]).toEqual([at(6), []])
      expect((await store.load('other')).log).toHaveLength(1)
      const [seven] = await append([entry('s', 7)], [7])
      expect(seven).toBeGreaterThan(at(6))
      expect((await store.load('s')).log.map((e) => e.seq)).toEqual([seven])
    })

    it('refuses trims past the checkpoint, which would lose data', async () => {
      const seqs = await append([1, 2, 3].map((tag) => entry('s', tag)))
      const checkpoint = { seq: seqs[1]!, time: 1, state: new Uint8Array(1) }
      await expect(store.putCheckpoint('s', checkpoint, { trimLogThrough: seqs[2]! })).rejects.toThrow(
        RangeError,
      )
      await expect(store.putCheckpoint('s', checkpoint, { trimCheckpointsBefore: seqs[2]! })).rejects.toThrow(
        RangeError,
      )
      expect(await store.listCheckpoints('s')).toEqual([])
      expect((await store.getMeta('s'))?.logCount).toBe(3)
    })

    it('starts a session from a checkpoint ahead of any log (an import), appending after it', async () => {
      await store.putCheckpoint('imported', { seq: 10, time: 5, state: encoder.encode('snapshot') })
      expect(await store.getMeta('imported')).toMatchObject({ lastSeq: 10, checkpointSeq: 10, logCount: 0 })
      const [next] = await append([entry('imported', 11)], [11])
      expect(next).toBeGreaterThan(10)
      const { checkpoint, log, meta } = await store.load('imported')
      expect([checkpoint?.seq, log.map((e) => e.seq)]).toEqual([10, [next]])
      expect(meta?.lastSeq).toBe(next)
    })

    it('reads checkpoint ranges, newest first when reversed', async () => {
      const seqs = await append([1, 2, 3, 4, 5, 6].map((tag) => entry('s', tag)))
      const at = (tag: number) => seqs[tag - 1]!
      for (const tag of [2, 4, 6]) {
        await store.putCheckpoint('s', { seq: at(tag), time: tag * 10, state: encoder.encode(`cp${tag}`) })
      }
      const listed = async (range: Parameters<Store['listCheckpoints']>[1]) =>
        (await store.listCheckpoints('s', range)).map((cp) => cp.seq)
      expect(await listed({ toSeq: at(5), reverse: true, limit: 1 })).toEqual([at(4)])
      expect(await listed({ fromSeq: at(3) })).toEqual([at(4), at(6)])
      expect(await listed({ reverse: true })).toEqual([at(6), at(4), at(2)])
      expect(await listed({ toSeq: at(1) })).toEqual([])
      expect(await listed({ fromSeq: at(2), toSeq: at(4), limit: 1 })).toEqual([at(2)])
    })

    it('lists checkpoints without their states, over the same ranges as listCheckpoints', async () => {
      const listInfo = store.listCheckpointInfo?.bind(store)
      expect(listInfo, 'every built-in store implements listCheckpointInfo').toBeDefined()
      if (listInfo === undefined) return
      const seqs = await append([1, 2, 3, 4, 5, 6].map((tag) => entry('s', tag)))
      const at = (tag: number) => seqs[tag - 1]!
      for (const tag of [2, 4, 6]) {
        await store.putCheckpoint('s', {
          seq: at(tag),
          time: tag * 10,
          state: encoder.encode(`cp${tag}`.repeat(tag)),
        })
      }
      const ranges: Parameters<Store['listCheckpoints']>[1][] = [
        undefined,
        { toSeq: at(5), reverse: true, limit: 1 },
        { fromSeq: at(3) },
        { reverse: true },
        { toSeq: at(1) },
        { fromSeq: at(2), toSeq: at(4), limit: 1 },
      ]
      const expected = async (range: Parameters<Store['listCheckpoints']>[1]) =>
        (await store.listCheckpoints('s', range)).map(({ seq, time, state }) => ({
          seq,
          time,
          bytes: state.byteLength,
        }))
      for (const range of ranges) expect(await listInfo('s', range)).toEqual(await expected(range))
      expect(await listInfo('s')).toEqual([
        { seq: at(2), time: 20, bytes: 6 },
        { seq: at(4), time: 40, bytes: 12 },
        { seq: at(6), time: 60, bytes: 18 },
      ])
      expect(await listInfo('unknown')).toEqual([])
      await expect(listInfo('not a valid id')).rejects.toMatchObject({ code: 'invalid-session-id' })
      // Stays exact across later writes (a store may remember what it listed).
      await store.putCheckpoint(
        's',
        { seq: at(6), time: 61, state: encoder.encode('again') },
        { deleteCheckpoints: [at(2)], trimCheckpointsBefore: 0 },
      )
      expect(await listInfo('s')).toEqual(await expected(undefined))
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([at(4), at(6)])
      await store.putCheckpoint('s', { seq: at(5), time: 50, state: encoder.encode('older') })
      await store.putCheckpoint(
        's',
        { seq: at(6), time: 62, state: encoder.encode('x') },
        { trimCheckpointsBefore: at(5) },
      )
      expect(await listInfo('s')).toEqual(await expected(undefined))
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([at(5), at(6)])
      await store.deleteSession('s')
      expect(await listInfo('s')).toEqual([])
      await store.putCheckpoint('s', { seq: 3, time: 3, state: encoder.encode('new') })
      expect(await listInfo('s')).toEqual([{ seq: 3, time: 3, bytes: 3 }])
    })

    it('lists checkpoints without states consistently with concurrent checkpoint writes', async () => {
      const listInfo = store.listCheckpointInfo?.bind(store)
      if (listInfo === undefined) return
      const seqs = await append([1, 2, 3, 4, 5, 6, 7, 8].map((tag) => entry('s', tag)))
      const at = (tag: number) => seqs[tag - 1]!
      await store.putCheckpoint('s', { seq: at(1), time: 1, state: encoder.encode('cp1') })
      // A listing racing with writes may see either side of each write, but the next one is exact.
      await Promise.all([
        listInfo('s'),
        store.putCheckpoint('s', { seq: at(3), time: 3, state: encoder.encode('cp3') }),
        listInfo('s'),
        store.putCheckpoint(
          's',
          { seq: at(5), time: 5, state: encoder.encode('cp5') },
          { deleteCheckpoints: [at(1)] },
        ),
        listInfo('s'),
      ])
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([at(3), at(5)])
      if (subject.reopen !== undefined) {
        await reopen()
        expect(await store.listCheckpointInfo?.('s')).toEqual([
          { seq: at(3), time: 3, bytes: 3 },
          { seq: at(5), time: 5, bytes: 3 },
        ])
      }
    })

    it('trims a log of many thousand entries in the one checkpoint batch', async () => {
      const count = 10_000
      const seqs: number[] = []
      for (let start = 1; start <= count; start += 2_500) {
        seqs.push(...(await append(Array.from({ length: 2_500 }, (_, i) => entry('long', start + i)))))
      }
      if (isDense()) expect(seqs).toEqual(Array.from({ length: count }, (_, i) => i + 1))
      await store.putCheckpoint(
        'long',
        { seq: seqs[count - 2]!, time: 1, state: encoder.encode('cp') },
        { trimLogThrough: seqs[count - 2]! },
      )
      expect((await store.readLog('long')).map((e) => e.seq)).toEqual([seqs[count - 1]])
      expect(await store.getMeta('long')).toMatchObject({
        lastSeq: seqs[count - 1],
        checkpointSeq: seqs[count - 2],
        logCount: 1,
        logBytes: `long#${count}`.length,
      })
    })

    it('deletes chosen older checkpoints in the same batch as a new one', async () => {
      const seqs = await append([1, 2, 3, 4, 5, 6].map((tag) => entry('s', tag)))
      const at = (tag: number) => seqs[tag - 1]!
      for (const tag of [1, 2, 3]) {
        await store.putCheckpoint('s', { seq: at(tag), time: tag, state: encoder.encode(`cp${tag}`) })
      }
      await store.putCheckpoint(
        's',
        { seq: at(5), time: 5, state: encoder.encode('cp5') },
        { deleteCheckpoints: [at(1), at(3)], trimLogThrough: at(2) },
      )
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([at(2), at(5)])
      expect((await store.readLog('s')).map((e) => e.seq)).toEqual([at(3), at(4), at(5), at(6)])
      await expect(
        store.putCheckpoint(
          's',
          { seq: at(6), time: 6, state: new Uint8Array(1) },
          { deleteCheckpoints: [at(6)] },
        ),
      ).rejects.toThrow(RangeError)
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([at(2), at(5)])
    })

    it('refuses a checkpoint that requires a new session when the session exists', async () => {
      const [seq] = await append([entry('taken', 1)])
      await expect(
        store.putCheckpoint('taken', { seq: seq!, time: 1, state: new Uint8Array(1) }, { requireNew: true }),
      ).rejects.toMatchObject({ code: 'session-exists' })
      expect(await store.listCheckpoints('taken')).toEqual([])
      await store.putCheckpoint(
        'fresh',
        { seq: 1, time: 1, state: encoder.encode('x') },
        { requireNew: true },
      )
      expect(await store.getMeta('fresh')).toMatchObject({ lastSeq: 1, checkpointSeq: 1 })
      const [next] = await append([entry('fresh', 2)], [2])
      expect(next).toBeGreaterThan(1)
    })

    it('refuses a checkpoint that requires an existing session once the session was deleted', async () => {
      const seqs = await append([entry('gone', 1), entry('gone', 2)])
      await store.deleteSession('gone')
      await expect(
        store.putCheckpoint(
          'gone',
          { seq: seqs[1]!, time: 2, state: new Uint8Array(1) },
          { requireExisting: true },
        ),
      ).rejects.toMatchObject({ code: 'session-not-found' })
      expect(await store.getMeta('gone')).toBeUndefined()
      expect(await store.listCheckpoints('gone')).toEqual([])
    })

    it('reads log ranges with inclusive bounds and a limit', async () => {
      const all = await append([1, 2, 3, 4, 5, 6, 7, 8].map((tag) => entry('s', tag)))
      const at = (tag: number) => all[tag - 1]!
      const read = async (range?: Parameters<Store['readLog']>[1]) =>
        (await store.readLog('s', range)).map((e) => e.seq)
      expect(await read()).toEqual(all)
      expect(await read({ fromSeq: at(3) })).toEqual(all.slice(2))
      expect(await read({ toSeq: at(3) })).toEqual(all.slice(0, 3))
      expect(await read({ fromSeq: at(3), toSeq: at(5) })).toEqual(all.slice(2, 5))
      expect(await read({ fromSeq: at(3), limit: 2 })).toEqual(all.slice(2, 4))
      expect(await read({ fromSeq: at(5), toSeq: at(5) })).toEqual([at(5)])
      expect(await read({ fromSeq: at(6), toSeq: at(5) })).toEqual([])
      expect(await read({ fromSeq: at(8) + 1 })).toEqual([])
      expect(await read({ limit: 0 })).toEqual([])
      expect(await read({ toSeq: Number.MAX_SAFE_INTEGER })).toHaveLength(8)
      // Bounds between two entries' seqs (a sparse log has gaps) select by seq, not by position.
      expect(await read({ fromSeq: at(2) + 1, toSeq: at(4) - 1 })).toEqual(
        all.filter((seq) => seq > at(2) && seq < at(4)),
      )
      await store.putCheckpoint('s', { seq: at(4), time: 1, state: new Uint8Array(0) })
      // readLog is not limited by checkpoints: only trimming removes entries.
      expect(await read({ toSeq: at(2) })).toEqual([at(1), at(2)])
    })

    it('lists every session in id order with its meta', async () => {
      const seqs = await append([entry('zeta', 1), entry('alpha', 1), entry('Mid', 1), entry('alpha', 2)])
      const list = await store.listSessions()
      expect(list.map((meta) => [meta.sessionId, meta.lastSeq])).toEqual([
        ['Mid', seqs[2]],
        ['alpha', seqs[3]],
        ['zeta', seqs[0]],
      ])
      expect(list[1]).toEqual(await store.getMeta('alpha'))
    })

    it('deletes one session and leaves the others alone', async () => {
      const [g1] = await append([entry('gone', 1), entry('gone', 2), entry('kept', 1), entry('gone.x', 1)])
      await store.putCheckpoint('gone', { seq: g1!, time: 1, state: new Uint8Array(3) })
      await store.deleteSession('gone')
      expect(await store.load('gone')).toEqual({ meta: undefined, checkpoint: undefined, log: [] })
      expect(await store.listCheckpoints('gone')).toEqual([])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['gone.x', 'kept'])
      expect((await store.load('kept')).log).toHaveLength(1)
      expect((await store.load('gone.x')).log).toHaveLength(1)
      // A deleted session can start over (from seq 1 in a dense store).
      const [again] = await append([entry('gone', 1)], [1])
      expect(await store.getMeta('gone')).toMatchObject({ lastSeq: again, logCount: 1, checkpointSeq: 0 })
      expect((await store.load('gone')).log.map((e) => text(e.update))).toEqual(['gone#1'])
      await store.deleteSession('never-existed')
    })

    it('does not alias stored bytes to the caller’s input or output', async () => {
      const update = encoder.encode('original')
      const state = encoder.encode('state')
      await append([{ sessionId: 's', time: 1, update }])
      await store.putCheckpoint('s', { seq: 0, time: 1, state })
      update.fill(0)
      state.fill(0)
      const first = await store.load('s')
      expect(text(first.log[0]!.update)).toBe('original')
      expect(text(first.checkpoint!.state)).toBe('state')
      first.log[0]!.update.fill(0)
      first.checkpoint!.state.fill(0)
      const [read] = await store.readLog('s')
      read!.update.fill(0)
      const [listed] = await store.listCheckpoints('s')
      listed!.state.fill(0)
      const second = await store.load('s')
      expect(text(second.log[0]!.update)).toBe('original')
      expect(text(second.checkpoint!.state)).toBe('state')
    })

    it('rejects an invalid entry, writing nothing of that append', async () => {
      await append([entry('s', 1), entry('s', 2)])
      const bad = { sessionId: 's', time: -1, update: new Uint8Array(1) }
      await expect(store.append([entry('t', 1), bad])).rejects.toThrow(RangeError)
      const notBytes = { sessionId: 's', time: 1, update: 'x' as unknown as Uint8Array }
      await expect(store.append([entry('t', 1), notBytes])).rejects.toThrow(TypeError)
      expect(await store.getMeta('t')).toBeUndefined()
      expect((await store.load('s')).log.map((e) => text(e.update))).toEqual(['s#1', 's#2'])
    })

    it('rejects invalid session ids', async () => {
      const invalid = ['', 'has space', 'slash/', 'x'.repeat(129), 'nul\u0000', 'é']
      for (const id of invalid) {
        await expect(store.append([entry(id, 1)])).rejects.toMatchObject({ code: 'invalid-session-id' })
        await expect(store.load(id)).rejects.toMatchObject({ code: 'invalid-session-id' })
      }
      await append([entry('x'.repeat(128), 1)])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['x'.repeat(128)])
    })

    it('keeps the meta consistent when appends and checkpoints of one session overlap', async () => {
      const seqs = await append([1, 2, 3].map((tag) => entry('s', tag)))
      const [later, last] = await Promise.all([
        append([entry('s', 4), entry('s', 5)]),
        append([entry('s', 6)]),
        store.putCheckpoint(
          's',
          { seq: seqs[2]!, time: 3, state: new Uint8Array(2) },
          { trimLogThrough: seqs[2]! },
        ),
        store.getMeta('s'),
        store.load('s'),
      ])
      const meta = await store.getMeta('s')
      const log = await store.readLog('s')
      expect(log.map((e) => e.seq)).toEqual([...later, ...last].sort((a, b) => a - b))
      expect(meta).toMatchObject({
        lastSeq: Math.max(...later, ...last),
        logCount: 3,
        logBytes: 9,
        checkpointSeq: seqs[2],
      })
    })

    it('rejects every operation after close', async () => {
      await append([entry('s', 1)])
      await store.close()
      await store.close()
      await expect(store.append([entry('s', 2)])).rejects.toMatchObject({ code: 'shutting-down' })
      await expect(store.load('s')).rejects.toMatchObject({ code: 'shutting-down' })
      await expect(store.listSessions()).rejects.toMatchObject({ code: 'shutting-down' })
    })
  })
}
