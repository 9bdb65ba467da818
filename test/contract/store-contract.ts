// The contract every Store backend must pass: ordering, isolation, atomicity, meta, checkpoints.
// Run it from a `*.test.ts` file with a factory for the backend (see leveldb-store.test.ts).

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

/** A log entry whose update bytes name its session and seq, at time 1000 + seq. */
function entry(sessionId: string, seq: number, time = 1000 + seq): AppendEntry {
  return { sessionId, seq, time, update: encoder.encode(`${sessionId}#${seq}`) }
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

    async function reopen(): Promise<Store> {
      const reopenStore = subject.reopen
      if (reopenStore === undefined) throw new Error('this backend cannot reopen')
      await store.close()
      store = await reopenStore()
      return store
    }

    it('loads appended entries in seq order with their times and bytes', async () => {
      await store.append([entry('s', 1), entry('s', 2), entry('s', 3)])
      const { meta, checkpoint, log } = await store.load('s')
      expect(checkpoint).toBeUndefined()
      expect(meta?.lastSeq).toBe(3)
      expect(log.map((e) => [e.seq, e.time, text(e.update)])).toEqual([
        [1, 1001, 's#1'],
        [2, 1002, 's#2'],
        [3, 1003, 's#3'],
      ])
    })

    it('continues seqs across several appends', async () => {
      await store.append([entry('s', 1)])
      await store.append([entry('s', 2), entry('s', 3)])
      await store.append([entry('s', 10)])
      const { log, meta } = await store.load('s')
      expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 10])
      expect(meta?.lastSeq).toBe(10)
    })

    it('writes entries of many sessions in one append', async () => {
      const entries: AppendEntry[] = []
      for (let seq = 1; seq <= 5; seq++) {
        for (let i = 0; i < 40; i++) entries.push(entry(`session-${i}`, seq))
      }
      await store.append(entries)
      for (let i = 0; i < 40; i++) {
        const { log } = await store.load(`session-${i}`)
        expect(log.map((e) => text(e.update))).toEqual([1, 2, 3, 4, 5].map((seq) => `session-${i}#${seq}`))
      }
      expect((await store.listSessions()).length).toBe(40)
    })

    it('keeps sessions whose ids are prefixes of each other apart', async () => {
      const ids = ['a', 'a.', 'ab', 'a:b', 'a-', 'a0', 'aa', 'A', 'a.b', 'abc', 'b']
      await store.append(ids.flatMap((id, i) => [entry(id, 1), entry(id, 2 + i)]))
      await store.putCheckpoint('a', { seq: 1, time: 5, state: encoder.encode('cp a') })
      for (const [i, id] of ids.entries()) {
        const { log, meta } = await store.load(id)
        const expected = id === 'a' ? [`${id}#${2 + i}`] : [`${id}#1`, `${id}#${2 + i}`]
        expect(log.map((e) => text(e.update))).toEqual(expected)
        expect(meta?.logCount).toBe(2)
        expect(await store.listCheckpoints(id)).toHaveLength(id === 'a' ? 1 : 0)
        expect((await store.readLog(id)).map((e) => e.seq)).toEqual([1, 2 + i])
      }
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual([...ids].sort())
      await store.deleteSession('a')
      for (const id of ids.filter((id) => id !== 'a')) {
        expect((await store.load(id)).log).toHaveLength(2)
      }
    })

    it('loads unknown sessions as empty, with meta undefined', async () => {
      await store.append([entry('known', 1)])
      expect(await store.load('unknown')).toEqual({ meta: undefined, checkpoint: undefined, log: [] })
      expect(await store.getMeta('unknown')).toBeUndefined()
      expect(await store.readLog('unknown')).toEqual([])
      expect(await store.listCheckpoints('unknown')).toEqual([])
      await store.append([])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['known'])
    })

    it('round-trips a 16 MiB update byte for byte', async () => {
      const big = randomFillSync(new Uint8Array(16 * 1024 * 1024))
      await store.append([{ sessionId: 'big', seq: 1, time: 1, update: big }])
      const [stored] = (await store.load('big')).log
      expect(stored?.update.byteLength).toBe(big.byteLength)
      expect(sameBytes(stored!.update, big)).toBe(true)
      expect((await store.getMeta('big'))?.logBytes).toBe(big.byteLength)
    })

    it('keeps every log entry, checkpoint and meta across close and reopen', async ({ skip }) => {
      if (subject.reopen === undefined) skip()
      await store.append([entry('s', 1), entry('s', 2), entry('t', 1)])
      await store.putCheckpoint('s', { seq: 1, time: 50, state: encoder.encode('state@1') })
      await store.append([entry('s', 3)])
      const before = { s: await store.load('s'), t: await store.load('t'), list: await store.listSessions() }
      await reopen()
      expect(await store.load('s')).toEqual(before.s)
      expect(await store.load('t')).toEqual(before.t)
      expect(await store.listSessions()).toEqual(before.list)
      await store.append([entry('s', 4)])
      expect((await store.load('s')).log.map((e) => e.seq)).toEqual([2, 3, 4])
    })

    it('keeps meta counts, sizes, seqs and times', async () => {
      await store.append([entry('s', 1, 100), entry('s', 2, 200)])
      await store.append([{ sessionId: 's', seq: 3, time: 150, update: new Uint8Array(7) }])
      expect(await store.getMeta('s')).toEqual({
        sessionId: 's',
        lastSeq: 3,
        checkpointSeq: 0,
        logCount: 3,
        logBytes: 3 + 3 + 7,
        checkpointBytes: 0,
        createdAt: 100,
        updatedAt: 200,
      })
      store.release('s')
      expect((await store.getMeta('s'))?.logBytes).toBe(13)
      expect((await store.load('s')).meta).toEqual(await store.getMeta('s'))
    })

    it('loads the latest checkpoint and only the log after it', async () => {
      await store.append([1, 2, 3, 4, 5].map((seq) => entry('s', seq)))
      await store.putCheckpoint('s', { seq: 2, time: 20, state: encoder.encode('state@2') })
      await store.putCheckpoint('s', { seq: 4, time: 40, state: encoder.encode('state@4') })
      const { checkpoint, log, meta } = await store.load('s')
      expect(checkpoint?.seq).toBe(4)
      expect(checkpoint?.time).toBe(40)
      expect(text(checkpoint!.state)).toBe('state@4')
      expect(log.map((e) => e.seq)).toEqual([5])
      expect(meta).toMatchObject({ checkpointSeq: 4, checkpointBytes: 7, logCount: 5, lastSeq: 5 })
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([2, 4])
      // An older checkpoint written later does not become the latest.
      await store.putCheckpoint('s', { seq: 1, time: 10, state: encoder.encode('s1') })
      expect((await store.load('s')).checkpoint?.seq).toBe(4)
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([1, 2, 4])
      expect((await store.getMeta('s'))?.checkpointBytes).toBe(7)
    })

    it('trims the log and old checkpoints in putCheckpoint and fixes the meta', async () => {
      await store.append([1, 2, 3, 4, 5, 6].map((seq) => entry('s', seq)))
      await store.append([entry('other', 1)])
      await store.putCheckpoint('s', { seq: 2, time: 20, state: encoder.encode('two') })
      await store.putCheckpoint(
        's',
        { seq: 4, time: 40, state: encoder.encode('four!') },
        { trimLogThrough: 3 },
      )
      expect((await store.readLog('s')).map((e) => e.seq)).toEqual([4, 5, 6])
      expect(await store.getMeta('s')).toMatchObject({
        logCount: 3,
        logBytes: 9,
        lastSeq: 6,
        checkpointSeq: 4,
      })
      await store.putCheckpoint(
        's',
        { seq: 6, time: 60, state: encoder.encode('six') },
        { trimLogThrough: 6, trimCheckpointsBefore: 6 },
      )
      expect(await store.readLog('s')).toEqual([])
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([6])
      expect(await store.getMeta('s')).toMatchObject({
        logCount: 0,
        logBytes: 0,
        lastSeq: 6,
        checkpointSeq: 6,
        checkpointBytes: 3,
      })
      const loaded = await store.load('s')
      expect([loaded.checkpoint?.seq, loaded.log]).toEqual([6, []])
      expect((await store.load('other')).log).toHaveLength(1)
      await store.append([entry('s', 7)])
      expect((await store.load('s')).log.map((e) => e.seq)).toEqual([7])
    })

    it('refuses trims past the checkpoint, which would lose data', async () => {
      await store.append([1, 2, 3].map((seq) => entry('s', seq)))
      const checkpoint = { seq: 2, time: 1, state: new Uint8Array(1) }
      await expect(store.putCheckpoint('s', checkpoint, { trimLogThrough: 3 })).rejects.toThrow(RangeError)
      await expect(store.putCheckpoint('s', checkpoint, { trimCheckpointsBefore: 3 })).rejects.toThrow(
        RangeError,
      )
      expect(await store.listCheckpoints('s')).toEqual([])
      expect((await store.getMeta('s'))?.logCount).toBe(3)
    })

    it('starts a session from a checkpoint ahead of any log (an import)', async () => {
      await store.putCheckpoint('imported', { seq: 10, time: 5, state: encoder.encode('snapshot') })
      expect(await store.getMeta('imported')).toMatchObject({ lastSeq: 10, checkpointSeq: 10, logCount: 0 })
      await expect(store.append([entry('imported', 10)])).rejects.toThrow(RangeError)
      await store.append([entry('imported', 11)])
      const { checkpoint, log } = await store.load('imported')
      expect([checkpoint?.seq, log.map((e) => e.seq)]).toEqual([10, [11]])
    })

    it('reads checkpoint ranges, newest first when reversed', async () => {
      await store.append([1, 2, 3, 4, 5, 6].map((seq) => entry('s', seq)))
      for (const seq of [2, 4, 6]) {
        await store.putCheckpoint('s', { seq, time: seq * 10, state: encoder.encode(`cp${seq}`) })
      }
      const seqs = async (range: Parameters<Store['listCheckpoints']>[1]) =>
        (await store.listCheckpoints('s', range)).map((cp) => cp.seq)
      expect(await seqs({ toSeq: 5, reverse: true, limit: 1 })).toEqual([4])
      expect(await seqs({ fromSeq: 3 })).toEqual([4, 6])
      expect(await seqs({ reverse: true })).toEqual([6, 4, 2])
      expect(await seqs({ toSeq: 1 })).toEqual([])
      expect(await seqs({ fromSeq: 2, toSeq: 4, limit: 1 })).toEqual([2])
    })

    it('lists checkpoints without their states, over the same ranges as listCheckpoints', async () => {
      const listInfo = store.listCheckpointInfo?.bind(store)
      expect(listInfo, 'both built-in stores implement listCheckpointInfo').toBeDefined()
      if (listInfo === undefined) return
      await store.append([1, 2, 3, 4, 5, 6].map((seq) => entry('s', seq)))
      for (const seq of [2, 4, 6]) {
        await store.putCheckpoint('s', { seq, time: seq * 10, state: encoder.encode(`cp${seq}`.repeat(seq)) })
      }
      const ranges: Parameters<Store['listCheckpoints']>[1][] = [
        undefined,
        { toSeq: 5, reverse: true, limit: 1 },
        { fromSeq: 3 },
        { reverse: true },
        { toSeq: 1 },
        { fromSeq: 2, toSeq: 4, limit: 1 },
      ]
      const expected = async (range: Parameters<Store['listCheckpoints']>[1]) =>
        (await store.listCheckpoints('s', range)).map(({ seq, time, state }) => ({
          seq,
          time,
          bytes: state.byteLength,
        }))
      for (const range of ranges) expect(await listInfo('s', range)).toEqual(await expected(range))
      expect(await listInfo('s')).toEqual([
        { seq: 2, time: 20, bytes: 6 },
        { seq: 4, time: 40, bytes: 12 },
        { seq: 6, time: 60, bytes: 18 },
      ])
      expect(await listInfo('unknown')).toEqual([])
      await expect(listInfo('not a valid id')).rejects.toMatchObject({ code: 'invalid-session-id' })
      // Stays exact across later writes (a store may remember what it listed).
      await store.putCheckpoint(
        's',
        { seq: 6, time: 61, state: encoder.encode('again') },
        { deleteCheckpoints: [2], trimCheckpointsBefore: 0 },
      )
      expect(await listInfo('s')).toEqual(await expected(undefined))
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([4, 6])
      await store.putCheckpoint('s', { seq: 5, time: 50, state: encoder.encode('older') })
      await store.putCheckpoint(
        's',
        { seq: 6, time: 62, state: encoder.encode('x') },
        { trimCheckpointsBefore: 5 },
      )
      expect(await listInfo('s')).toEqual(await expected(undefined))
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([5, 6])
      await store.deleteSession('s')
      expect(await listInfo('s')).toEqual([])
      await store.putCheckpoint('s', { seq: 3, time: 3, state: encoder.encode('new') })
      expect(await listInfo('s')).toEqual([{ seq: 3, time: 3, bytes: 3 }])
    })

    it('lists checkpoints without states consistently with concurrent checkpoint writes', async () => {
      const listInfo = store.listCheckpointInfo?.bind(store)
      if (listInfo === undefined) return
      await store.append([1, 2, 3, 4, 5, 6, 7, 8].map((seq) => entry('s', seq)))
      await store.putCheckpoint('s', { seq: 1, time: 1, state: encoder.encode('cp1') })
      // A listing racing with writes may see either side of each write, but the next one is exact.
      await Promise.all([
        listInfo('s'),
        store.putCheckpoint('s', { seq: 3, time: 3, state: encoder.encode('cp3') }),
        listInfo('s'),
        store.putCheckpoint(
          's',
          { seq: 5, time: 5, state: encoder.encode('cp5') },
          { deleteCheckpoints: [1] },
        ),
        listInfo('s'),
      ])
      expect((await listInfo('s')).map((info) => info.seq)).toEqual([3, 5])
      if (subject.reopen !== undefined) {
        await reopen()
        expect(await store.listCheckpointInfo?.('s')).toEqual([
          { seq: 3, time: 3, bytes: 3 },
          { seq: 5, time: 5, bytes: 3 },
        ])
      }
    })

    it('trims a log of many thousand entries in the one checkpoint batch', async () => {
      const count = 10_000
      for (let start = 1; start <= count; start += 2_500) {
        await store.append(Array.from({ length: 2_500 }, (_, i) => entry('long', start + i)))
      }
      await store.putCheckpoint(
        'long',
        { seq: count - 1, time: 1, state: encoder.encode('cp') },
        { trimLogThrough: count - 1 },
      )
      expect((await store.readLog('long')).map((e) => e.seq)).toEqual([count])
      expect(await store.getMeta('long')).toMatchObject({
        lastSeq: count,
        checkpointSeq: count - 1,
        logCount: 1,
        logBytes: `long#${count}`.length,
      })
    })

    it('deletes chosen older checkpoints in the same batch as a new one', async () => {
      await store.append([1, 2, 3, 4, 5, 6].map((seq) => entry('s', seq)))
      for (const seq of [1, 2, 3]) {
        await store.putCheckpoint('s', { seq, time: seq, state: encoder.encode(`cp${seq}`) })
      }
      await store.putCheckpoint(
        's',
        { seq: 5, time: 5, state: encoder.encode('cp5') },
        { deleteCheckpoints: [1, 3], trimLogThrough: 2 },
      )
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([2, 5])
      expect((await store.readLog('s')).map((e) => e.seq)).toEqual([3, 4, 5, 6])
      await expect(
        store.putCheckpoint('s', { seq: 6, time: 6, state: new Uint8Array(1) }, { deleteCheckpoints: [6] }),
      ).rejects.toThrow(RangeError)
      expect((await store.listCheckpoints('s')).map((cp) => cp.seq)).toEqual([2, 5])
    })

    it('refuses a checkpoint that requires a new session when the session exists', async () => {
      await store.append([entry('taken', 1)])
      await expect(
        store.putCheckpoint('taken', { seq: 1, time: 1, state: new Uint8Array(1) }, { requireNew: true }),
      ).rejects.toMatchObject({ code: 'session-exists' })
      expect(await store.listCheckpoints('taken')).toEqual([])
      await store.putCheckpoint(
        'fresh',
        { seq: 1, time: 1, state: encoder.encode('x') },
        { requireNew: true },
      )
      expect(await store.getMeta('fresh')).toMatchObject({ lastSeq: 1, checkpointSeq: 1 })
    })

    it('refuses a checkpoint that requires an existing session once the session was deleted', async () => {
      await store.append([entry('gone', 1), entry('gone', 2)])
      await store.deleteSession('gone')
      await expect(
        store.putCheckpoint('gone', { seq: 2, time: 2, state: new Uint8Array(1) }, { requireExisting: true }),
      ).rejects.toMatchObject({ code: 'session-not-found' })
      expect(await store.getMeta('gone')).toBeUndefined()
      expect(await store.listCheckpoints('gone')).toEqual([])
    })

    it('reads log ranges with inclusive bounds and a limit', async () => {
      await store.append([1, 2, 3, 4, 5, 6, 7, 8].map((seq) => entry('s', seq)))
      const seqs = async (range?: Parameters<Store['readLog']>[1]) =>
        (await store.readLog('s', range)).map((e) => e.seq)
      expect(await seqs()).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
      expect(await seqs({ fromSeq: 3 })).toEqual([3, 4, 5, 6, 7, 8])
      expect(await seqs({ toSeq: 3 })).toEqual([1, 2, 3])
      expect(await seqs({ fromSeq: 3, toSeq: 5 })).toEqual([3, 4, 5])
      expect(await seqs({ fromSeq: 3, limit: 2 })).toEqual([3, 4])
      expect(await seqs({ fromSeq: 5, toSeq: 5 })).toEqual([5])
      expect(await seqs({ fromSeq: 6, toSeq: 5 })).toEqual([])
      expect(await seqs({ fromSeq: 9 })).toEqual([])
      expect(await seqs({ limit: 0 })).toEqual([])
      expect(await seqs({ toSeq: Number.MAX_SAFE_INTEGER })).toHaveLength(8)
      await store.putCheckpoint('s', { seq: 4, time: 1, state: new Uint8Array(0) })
      // readLog is not limited by checkpoints: only trimming removes entries.
      expect(await seqs({ toSeq: 2 })).toEqual([1, 2])
    })

    it('lists every session in id order with its meta', async () => {
      await store.append([entry('zeta', 1), entry('alpha', 1), entry('Mid', 1), entry('alpha', 2)])
      const list = await store.listSessions()
      expect(list.map((meta) => [meta.sessionId, meta.lastSeq])).toEqual([
        ['Mid', 1],
        ['alpha', 2],
        ['zeta', 1],
      ])
      expect(list[1]).toEqual(await store.getMeta('alpha'))
    })

    it('deletes one session and leaves the others alone', async () => {
      await store.append([entry('gone', 1), entry('gone', 2), entry('kept', 1), entry('gone.x', 1)])
      await store.putCheckpoint('gone', { seq: 1, time: 1, state: new Uint8Array(3) })
      await store.deleteSession('gone')
      expect(await store.load('gone')).toEqual({ meta: undefined, checkpoint: undefined, log: [] })
      expect(await store.listCheckpoints('gone')).toEqual([])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['gone.x', 'kept'])
      expect((await store.load('kept')).log).toHaveLength(1)
      expect((await store.load('gone.x')).log).toHaveLength(1)
      // A deleted session can start over from seq 1.
      await store.append([entry('gone', 1)])
      expect(await store.getMeta('gone')).toMatchObject({ lastSeq: 1, logCount: 1, checkpointSeq: 0 })
      await store.deleteSession('never-existed')
    })

    it('does not alias stored bytes to the caller’s input or output', async () => {
      const update = encoder.encode('original')
      const state = encoder.encode('state')
      await store.append([{ sessionId: 's', seq: 1, time: 1, update }])
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

    it('rejects a seq at or below the last stored one, writing nothing of that append', async () => {
      await store.append([entry('s', 1), entry('s', 2)])
      await expect(store.append([entry('t', 1), entry('s', 2)])).rejects.toThrow(RangeError)
      await expect(store.append([entry('t', 1), entry('s', 4), entry('s', 3)])).rejects.toThrow(RangeError)
      await expect(store.append([entry('u', 0)])).rejects.toThrow(RangeError)
      expect(await store.getMeta('t')).toBeUndefined()
      expect((await store.load('s')).log.map((e) => e.seq)).toEqual([1, 2])
      // The same entries are accepted once they are valid: a rejected append can be retried.
      await store.append([entry('t', 1), entry('s', 3)])
      expect((await store.getMeta('s'))?.lastSeq).toBe(3)
    })

    it('rejects invalid session ids', async () => {
      const invalid = ['', 'has space', 'slash/', 'x'.repeat(129), 'nul\u0000', 'é']
      for (const id of invalid) {
        await expect(store.append([entry(id, 1)])).rejects.toMatchObject({ code: 'invalid-session-id' })
        await expect(store.load(id)).rejects.toMatchObject({ code: 'invalid-session-id' })
      }
      await store.append([entry('x'.repeat(128), 1)])
      expect((await store.listSessions()).map((meta) => meta.sessionId)).toEqual(['x'.repeat(128)])
    })

    it('keeps the meta consistent when appends and checkpoints of one session overlap', async () => {
      await store.append([1, 2, 3].map((seq) => entry('s', seq)))
      await Promise.all([
        store.append([entry('s', 4), entry('s', 5)]),
        store.putCheckpoint('s', { seq: 3, time: 3, state: new Uint8Array(2) }, { trimLogThrough: 3 }),
        store.append([entry('s', 6)]),
        store.getMeta('s'),
        store.load('s'),
      ])
      const meta = await store.getMeta('s')
      const log = await store.readLog('s')
      expect(log.map((e) => e.seq)).toEqual([4, 5, 6])
      expect(meta).toMatchObject({ lastSeq: 6, logCount: 3, logBytes: 9, checkpointSeq: 3 })
    })

    it('rejects every operation after close', async () => {
      await store.append([entry('s', 1)])
      await store.close()
      await store.close()
      await expect(store.append([entry('s', 2)])).rejects.toMatchObject({ code: 'shutting-down' })
      await expect(store.load('s')).rejects.toMatchObject({ code: 'shutting-down' })
      await expect(store.listSessions()).rejects.toMatchObject({ code: 'shutting-down' })
    })
  })
}
