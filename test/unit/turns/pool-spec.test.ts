// The pool and automatic-turn flags: parsed into pools and rules, refused at start when wrong.

import { describe, expect, it } from 'vitest'
import { ConfigError, parseConfig } from '../../../server/config.js'
import { parseAutoTurnRules } from '../../../server/turns/auto-turns.js'
import { parsePoolSpecs } from '../../../server/turns/pool-spec.js'

describe('--turn-pools and --turn-auto', () => {
  it('parse name:concurrency[:maxQueued[:maxQueuedPerTenant]] with defaults', () => {
    expect(parsePoolSpecs(['gpu:16:500:50', 'batch:4', 'cpu:2:30'])).toEqual([
      { name: 'gpu', concurrency: 16, maxQueued: 500, maxQueuedPerTenant: 50 },
      { name: 'batch', concurrency: 4, maxQueued: 10_000, maxQueuedPerTenant: 10_000 },
      { name: 'cpu', concurrency: 2, maxQueued: 30, maxQueuedPerTenant: 30 },
    ])
    expect(parseAutoTurnRules(['gpu=chat-', 'cpu'])).toEqual([
      { pool: 'gpu', sessionPrefix: 'chat-' },
      { pool: 'cpu', sessionPrefix: '' },
    ])
  })

  it('refuse bad specs, repeated pools and rules naming unknown pools at start', () => {
    for (const flags of [
      ['--turn-pools', 'GPU:1'],
      ['--turn-pools', 'gpu:0'],
      ['--turn-pools', 'gpu'],
      ['--turn-pools', 'gpu:1:2:3:4'],
      ['--turn-pools', 'gpu:1,gpu:2'],
      ['--turn-pools', 'gpu:1', '--turn-auto', 'cpu=chat-'],
      ['--turn-pools', 'gpu:1', '--turn-auto', 'gpu=chat/'],
    ]) {
      expect(() => parseConfig(flags, {}), flags.join(' ')).toThrow(ConfigError)
    }
    expect(parseConfig(['--turn-pools', 'gpu:2', '--turn-auto', 'gpu=Chat-'], {})).toMatchObject({
      turnPools: ['gpu:2'],
      turnAuto: ['gpu=Chat-'],
    })
  })
})
