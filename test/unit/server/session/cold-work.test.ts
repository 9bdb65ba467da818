import { afterEach, describe, expect, it, vi } from 'vitest'
import { createColdWork } from '../../../../server/session/cold-work.js'
import { createMemoryHarness, drainTasks, type MemoryHarness } from '../../../helpers/memory-server.js'
import { withTimeout } from '../../../helpers/wait.js'

/** A clock that moves 1 ms each time it is read: a task "takes" the time between two reads. */
function steppingClock(): () => number {
  let t = 0
  return () => t++
}

describe('createColdWork', () => {
  it('runs tasks in order, a bounded number per turn, and yields between turns', () => {
    const turns: (() => void)[] = []
    const work = createColdWork({
      budgetMs: 3,
      onError: (error) => {
        throw error
      },
      now: steppingClock(),
      schedule: (run) => turns.push(run),
    })
    const ran: number[] = []
    for (let i = 0; i < 10; i++) work.defer(() => ran.push(i))
    expect(ran).toEqual([])
    expect(turns.length).toBe(1)
    // Each task reads the clock once more: 3 ms of budget are 3 tasks.
    turns.shift()!()
    expect(ran).toEqual([0, 1, 2])
    expect(work.pending).toBe(7)
    expect(turns.length).toBe(1)
    while (turns.length > 0) turns.shift()!()
    expect(ran).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(work.pending).toBe(0)
    expect(work.turns).toBe(4)
    expect(work.tasks).toBe(10)
  })

  it('runs at least one task per turn, however small the budget', () => {
    const turns: (() => void)[] = []
    const work = createColdWork({
      budgetMs: 0.001,
      onError: () => undefined,
      now: () => 0,
      schedule: (run) => turns.push(run),
    })
    const ran: number[] = []
    for (let i = 0; i < 3; i++) work.defer(() => ran.push(i))
    // The clock stands still: the budget is never used up, every task runs in the one turn.
    turns.shift()!()
    expect(ran).toEqual([0, 1, 2])
    expect(turns).toEqual([])
  })

  it('reports a task that throws and still runs the others', () => {
    const turns: (() => void)[] = []
    const errors: unknown[] = []
    const work = createColdWork({
      budgetMs: 100,
      onError: (error) => errors.push(error),
      now: () => 0,
      schedule: (run) => turns.push(run),
    })
    const ran: string[] = []
    work.defer(() => ran.push('a'))
    work.defer(() => {
      throw new Error('broken task')
    })
    work.defer(() => ran.push('c'))
    turns.shift()!()
    expect(ran).toEqual(['a', 'c'])
    expect(errors.map((e) => (e as Error).message)).toEqual(['broken task'])
  })

  it('a task that defers another keeps one turn scheduled, not two', () => {
    const turns: (() => void)[] = []
    const work = createColdWork({
      budgetMs: 2,
      onError: (error) => {
        throw error
      },
      now: steppingClock(),
      schedule: (run) => turns.push(run),
    })
    const ran: string[] = []
    work.defer(() => {
      ran.push('a')
      work.defer(() => ran.push('a2'))
    })
    work.defer(() => ran.push('b'))
    work.defer(() => ran.push('c'))
    turns.shift()!()
    // 2 ms of budget: two tasks ran, and one turn (not one per defer) waits for the rest.
    expect(ran).toEqual(['a', 'b'])
    expect(turns.length).toBe(1)
    turns.shift()!()
    expect(ran).toEqual(['a', 'b', 'c', 'a2'])
    expect(turns.length).toBe(0)
    expect(work.turns).toBe(2)
    // A deferred task that runs in the turn that deferred it leaves no empty turn behind.
    work.defer(() => work.defer(() => ran.push('d2')))
    turns.shift()!()
    expect(ran.at(-1)).toBe('d2')
    while (turns.length > 0) turns.shift()!()
    expect(work.turns).toBe(3)
  })

  it('with a budget of 0 runs each task at once', () => {
    const work = createColdWork({
      budgetMs: 0,
      onError: () => undefined,
      schedule: () => {
        throw new Error('never scheduled')
      },
    })
    const ran: number[] = []
    work.defer(() => ran.push(1))
    expect(ran).toEqual([1])
    expect(work.turns).toBe(0)
  })
})

describe('cold work in the session registry', () => {
  let harness: MemoryHarness | undefined
  afterEach(async () => {
    await harness?.close()
    harness = undefined
  })

  it("serves a loaded session's update before a queue of cold opens completes, one open per turn", async () => {
    const work = createColdWork({ budgetMs: 1, onError: () => undefined, now: steppingClock() })
    harness = createMemoryHarness({ coldWork: work })
    const writer = harness.connect('hot')
    const reader = harness.connect('hot')
    await harness.settle()
    expect(harness.registry.get('hot')?.state).toBe('ready')

    const events: string[] = []
    let readyAtHotUpdate = -1
    const COLD = 40
    const cold = Array.from({ length: COLD }, (_, i) => harness!.connect(`cold-${i}`))
    const readyCount = (): number => cold.filter((c) => c.session.state === 'ready').length
    reader.peer.doc.on('update', () => {
      readyAtHotUpdate = readyCount()
      events.push('hot update')
    })
    for (const [i, client] of cold.entries())
      void client.session.whenLoaded.then(() => events.push(`cold ${i} ready`))
    // Microtasks only (no turn of the event loop): every cold session's store read is answered.
    for (let round = 0; round < 200 && work.pending < COLD && readyCount() < COLD; round++)
      await Promise.resolve()
    expect(work.pending).toBe(COLD)
    // Now a loaded session's update, with 40 cold opens waiting for their turn.
    writer.peer.doc.getText('t').insert(0, 'while the burst loads')
    for (let round = 0; round < 200 && events.length === 0; round++) await Promise.resolve()
    expect(reader.peer.doc.getText('t').toString()).toBe('while the burst loads')
    expect(readyAtHotUpdate).toBe(0)

    await withTimeout(Promise.all(cold.map((c) => c.session.whenLoaded)), 5_000, 'the cold sessions to load')
    // The cold opens completed after it, in their order, each in a turn of its own (1 ms budget).
    expect(events).toEqual(['hot update', ...Array.from({ length: COLD }, (_, i) => `cold ${i} ready`)])
    expect(work.turns).toBeGreaterThanOrEqual(COLD)
    for (const client of cold) expect(client.session.state).toBe('ready')
  })

  it('the cold opens still serve their queued frames and the server changes still apply', async () => {
    const work = createColdWork({ budgetMs: 1, onError: () => undefined, now: steppingClock() })
    harness = createMemoryHarness({ coldWork: work })
    const a = harness.connect('s')
    // Sent while the session loads: queued, replayed when its deferred load ends.
    a.peer.doc.getText('t').insert(0, 'early')
    await harness.settle()
    expect(harness.registry.get('s')?.document.getText('t').toString()).toBe('early')
    const changed = harness.registry.changeAsServer('s', (doc, origin) => {
      doc.transact(() => doc.getMap('m').set('k', 'v'), origin)
    })
    await expect(withTimeout(changed, 5_000, 'the server change')).resolves.toBe(true)
    await harness.settle()
    expect(a.peer.doc.getMap('m').get('k')).toBe('v')
    // A change that throws rejects its caller instead of leaving it waiting.
    const failing = harness.registry.changeAsServer('s', () => {
      throw new Error('bad change')
    })
    await expect(withTimeout(failing, 5_000, 'the failing change')).rejects.toThrow('bad change')
  })
})

/** A cold-work queue whose turns run only when the test says (`runTurns`). */
function manualColdWork() {
  const turns: (() => void)[] = []
  const runTurns = (): void => {
    while (turns.length > 0) turns.shift()!()
  }
  const work = createColdWork({
    budgetMs: 1,
    onError: () => undefined,
    now: () => 0,
    schedule: (run) => turns.push(run),
  })
  return { turns, runTurns, work }
}

/** Lets the store answer and the queue run until `session` is ready (bounded). */
async function untilReady(session: { readonly state: string }, runTurns: () => void): Promise<void> {
  for (let round = 0; round < 50 && session.state !== 'ready'; round++) {
    await drainTasks(2)
    runTurns()
  }
}

describe('cold work and unloading', () => {
  let harness: MemoryHarness | undefined
  afterEach(async () => {
    vi.useRealTimers()
    await harness?.close()
    harness = undefined
  })

  it('a server change waiting in the queue keeps its idle session loaded, which unloads after it', async () => {
    const { turns, runTurns, work } = manualColdWork()
    harness = createMemoryHarness({ coldWork: work, idleUnloadMs: 5 })
    const a = harness.connect('s')
    await untilReady(a.session, runTurns)
    expect(a.session.state).toBe('ready')
    a.peer.doc.getText('t').insert(0, 'stored')
    await harness.settle()
    await expect(harness.store.getMeta('s')).resolves.toBeDefined()

    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    // Idle from here: its unload timer runs (fake) while the server's change waits for its turn.
    a.disconnect()
    const changed = harness.registry.changeAsServer('s', (doc, origin) => {
      doc.transact(() => doc.getMap('m').set('k', 'v'), origin)
    })
    for (let round = 0; round < 50 && turns.length === 0; round++) await Promise.resolve()
    expect(work.pending).toBe(1)
    vi.advanceTimersByTime(10)
    runTurns()
    await expect(withTimeout(changed, 5_000, 'the server change')).resolves.toBe(true)
    expect(a.session.document.getMap('m').get('k')).toBe('v')

    // Not kept forever: once the change is durable the idle session unloads.
    for (let round = 0; round < 50 && harness.registry.get('s') !== undefined; round++)
      await vi.advanceTimersByTimeAsync(10)
    expect(harness.registry.get('s')).toBeUndefined()
    expect(a.session.state).toBe('ended')
  })

  it('a server change waiting in the queue keeps its session from being unloaded to make room', async () => {
    const { turns, runTurns, work } = manualColdWork()
    harness = createMemoryHarness({ coldWork: work, maxSessionsInMemory: 1 })
    const a = harness.connect('s')
    await untilReady(a.session, runTurns)
    a.peer.doc.getText('t').insert(0, 'stored')
    await harness.settle()
    a.disconnect()
    const changed = harness.registry.changeAsServer('s', (doc, origin) => {
      doc.transact(() => doc.getMap('m').set('k', 'v'), origin)
    })
    for (let round = 0; round < 50 && turns.length === 0; round++) await Promise.resolve()
    expect(work.pending).toBe(1)
    // Another session wants the one place: 's' is idle and flushed, but its change is waiting.
    expect(() => harness!.connect('other')).toThrow('too many sessions in memory')
    runTurns()
    await expect(withTimeout(changed, 5_000, 'the server change')).resolves.toBe(true)
    expect(a.session.document.getMap('m').get('k')).toBe('v')
    // Once the change is durable the place can be given.
    await harness.settle()
    expect(harness.connect('other').session.id).toBe('other')
    expect(a.session.state).toBe('ended')
  })
})
