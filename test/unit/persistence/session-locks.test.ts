import { describe, expect, it } from 'vitest'
import { createSessionLocks } from '../../../server/persistence/session-locks.js'

describe('createSessionLocks', () => {
  it('serves callers of one session in call order, one at a time', async () => {
    const locks = createSessionLocks()
    const events: string[] = []
    const run = async (name: string, ids: string[]) => {
      const unlock = await locks.acquire(ids)
      events.push(`${name} in`)
      await Promise.resolve()
      events.push(`${name} out`)
      unlock()
    }
    await Promise.all([run('first', ['a']), run('second', ['a', 'b']), run('third', ['b'])])
    expect(events).toEqual(['first in', 'first out', 'second in', 'second out', 'third in', 'third out'])
  })

  it('lets callers of disjoint sessions hold their locks at the same time', async () => {
    const locks = createSessionLocks()
    const unlockA = await locks.acquire(['a'])
    const unlockB = await locks.acquire(['b'])
    let isCIn = false
    const c = locks.acquire(['a', 'c']).then((unlock) => {
      isCIn = true
      unlock()
    })
    await new Promise((resolve) => setImmediate(resolve))
    expect(isCIn).toBe(false)
    unlockA()
    unlockA()
    await c
    expect(isCIn).toBe(true)
    unlockB()
    // Every lock is free again: a new caller gets in at once.
    const unlockAll = await locks.acquire(['a', 'b', 'c'])
    unlockAll()
  })
})
