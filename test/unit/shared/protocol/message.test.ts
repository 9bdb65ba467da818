import fc from 'fast-check'
import * as encoding from 'lib0/encoding'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  decodeAwarenessUpdate,
  encodeAwarenessUpdate,
} from '../../../../shared/protocol/awareness-validate.js'
import {
  decodeMessage,
  decodeSyncStatusCounter,
  encodeAwareness,
  encodePermissionDenied,
  encodeQueryAwareness,
  encodeSyncStatus,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
} from '../../../../shared/protocol/message.js'
import { decodeStateVectorStrict, validateUpdate } from '../../../../shared/protocol/yjs-validate.js'
import { codeOf, frame } from '../../../helpers/codec.js'

describe('decodeMessage', () => {
  it('round-trips every message the protocol defines', () => {
    const bytes = new Uint8Array([1, 2, 3])
    expect(decodeMessage(encodeSyncStep1(bytes))).toEqual({ type: 'sync-step1', stateVector: bytes })
    expect(decodeMessage(encodeSyncStep2(bytes))).toEqual({ type: 'sync-step2', update: bytes })
    expect(decodeMessage(encodeSyncUpdate(bytes))).toEqual({ type: 'sync-update', update: bytes })
    expect(decodeMessage(encodeAwareness(bytes))).toEqual({ type: 'awareness', update: bytes })
    expect(decodeMessage(encodeQueryAwareness())).toEqual({ type: 'query-awareness' })
    expect(decodeMessage(encodePermissionDenied('no'))).toEqual({ type: 'auth', authType: 0, reason: 'no' })
    const status = decodeMessage(encodeSyncStatus(300))
    expect(status.type).toBe('sync-status')
    if (status.type === 'sync-status') expect(decodeSyncStatusCounter(status.payload)).toBe(300)
  })

  it('refuses truncated frames as malformed', () => {
    const full = encodeSyncUpdate(new Uint8Array(50))
    for (let length = 0; length < full.length; length++) {
      expect(codeOf(() => decodeMessage(full.subarray(0, length)))).toBe('malformed-message')
    }
  })

  it('refuses a length that runs past the end of the frame', () => {
    const giant = frame((e) => {
      encoding.writeVarUint(e, 0)
      encoding.writeVarUint(e, 2)
      encoding.writeVarUint(e, Number.MAX_SAFE_INTEGER)
      encoding.writeUint8(e, 1)
    })
    expect(codeOf(() => decodeMessage(giant))).toBe('malformed-message')
  })

  it('refuses a varint longer than 53 bits', () => {
    const overlong = new Uint8Array([0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
    expect(codeOf(() => decodeMessage(overlong))).toBe('malformed-message')
  })

  it('refuses trailing bytes after a message', () => {
    const withTail = new Uint8Array([...encodeSyncUpdate(new Uint8Array([0, 0])), 7])
    expect(codeOf(() => decodeMessage(withTail))).toBe('malformed-message')
  })

  it('refuses unknown message and sync types', () => {
    expect(codeOf(() => decodeMessage(new Uint8Array([9])))).toBe('unknown-message-type')
    expect(codeOf(() => decodeMessage(new Uint8Array([0, 5, 0])))).toBe('unknown-message-type')
  })

  it('throws only its own error on random bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const result = codeOf(() => decodeMessage(bytes))
        expect(result === undefined || !result.startsWith('foreign')).toBe(true)
      }),
      { numRuns: 5_000 },
    )
  })
})

describe('validateUpdate', () => {
  it('accepts a real update and the empty update', () => {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'hello')
    expect(() => validateUpdate(Y.encodeStateAsUpdate(doc))).not.toThrow()
    expect(() => validateUpdate(new Uint8Array([0, 0]))).not.toThrow()
  })

  it('refuses a zero-length payload and garbage', () => {
    expect(codeOf(() => validateUpdate(new Uint8Array(0)))).toBe('invalid-update')
    expect(codeOf(() => validateUpdate(new Uint8Array([1, 2, 3, 4, 5])))).toBe('invalid-update')
  })

  it('throws only its own error on random bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const result = codeOf(() => validateUpdate(bytes))
        expect(result === undefined || result === 'invalid-update').toBe(true)
      }),
      { numRuns: 5_000 },
    )
  })

  it('refuses a broken state vector', () => {
    expect(codeOf(() => decodeStateVectorStrict(new Uint8Array([5, 1])))).toBe('invalid-state-vector')
    expect(decodeStateVectorStrict(Y.encodeStateVector(new Y.Doc())).size).toBe(0)
  })
})

describe('decodeAwarenessUpdate', () => {
  const entry = (clientId: number, clock: number, json: string) =>
    frame((e) => {
      encoding.writeVarUint(e, 1)
      encoding.writeVarUint(e, clientId)
      encoding.writeVarUint(e, clock)
      encoding.writeVarString(e, json)
    })

  it('decodes a valid update', () => {
    expect(decodeAwarenessUpdate(entry(7, 1, '{"name":"a"}'))).toEqual([
      { clientId: 7, clock: 1, stateJson: '{"name":"a"}', isRemoval: false },
    ])
    expect(decodeAwarenessUpdate(entry(7, 2, ' null '))[0]?.isRemoval).toBe(true)
  })

  it('re-encodes decoded entries byte for byte', () => {
    const update = frame((e) => {
      encoding.writeVarUint(e, 2)
      for (const [id, json] of [
        [300, '{ "spaced": true }'],
        [7, 'null'],
      ] as const) {
        encoding.writeVarUint(e, id)
        encoding.writeVarUint(e, 9)
        encoding.writeVarString(e, json)
      }
    })
    expect(encodeAwarenessUpdate(decodeAwarenessUpdate(update))).toEqual(update)
  })

  it('refuses invalid JSON, a lying count and trailing bytes', () => {
    expect(codeOf(() => decodeAwarenessUpdate(entry(7, 1, '{nope')))).toBe('malformed-message')
    expect(codeOf(() => decodeAwarenessUpdate(new Uint8Array([200, 1])))).toBe('malformed-message')
    expect(codeOf(() => decodeAwarenessUpdate(new Uint8Array([...entry(7, 1, 'null'), 0])))).toBe(
      'malformed-message',
    )
  })
})
