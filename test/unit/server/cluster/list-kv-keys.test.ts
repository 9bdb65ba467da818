import { describe, expect, it } from 'vitest'
import { type JetStreamResources, listKvKeys } from '../../../../server/cluster/jetstream-log.js'

/**
 * A connection whose one stream answers stream infos as nats-server does for a filter matching
 * more subjects than a page holds (`total`, `limit`, `offset`: 100,000 a page there, 100 here).
 */
function pagedResources(keys: number, limit: number): { resources: JetStreamResources; asked: unknown[] } {
  const subjects = Array.from({ length: keys }, (_, i) => `$KV.b.k${String(i).padStart(5, '0')}`)
  const asked: unknown[] = []
  const nc = {
    requestMany: async (_subject: string, payload: string) => {
      const body = JSON.parse(payload) as { offset?: number }
      asked.push(body)
      const offset = body.offset ?? 0
      const page = subjects.slice(offset, offset + limit)
      const answer = {
        total: keys,
        limit,
        offset,
        config: { num_replicas: 1 },
        state: { last_seq: keys, subjects: Object.fromEntries(page.map((s) => [s, 1])) },
      }
      return (async function* () {
        yield { json: () => answer }
      })()
    },
  }
  const resources = { nc, jsm: { getOptions: () => ({}) } } as unknown as JetStreamResources
  return { resources, asked }
}

describe('listKvKeys', () => {
  it('reads every page of a stream info that matched more keys than one answer holds', async () => {
    const { resources, asked } = pagedResources(250, 100)
    const keys = await listKvKeys(resources, 'b')
    expect(keys).toHaveLength(250)
    expect(new Set(keys).size).toBe(250)
    expect(keys).toContain('k00249')
    expect(asked).toEqual([
      { subjects_filter: '$KV.b.>' },
      { subjects_filter: '$KV.b.>', offset: 100 },
      { subjects_filter: '$KV.b.>', offset: 200 },
    ])
  })

  it('asks once when every key fits one answer', async () => {
    const { resources, asked } = pagedResources(40, 100)
    await expect(listKvKeys(resources, 'b')).resolves.toHaveLength(40)
    expect(asked).toHaveLength(1)
  })
})
