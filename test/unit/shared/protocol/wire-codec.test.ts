import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  AuthMessageType,
  decodeMessage,
  encodeAwareness,
  encodePermissionDenied,
  encodeQueryAwareness,
  encodeSyncStatus,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  type Message,
  messageByteLength,
} from '../../../../shared/protocol/message.js'
import { classicCodec, WireProtocol } from '../../../../shared/protocol/wire-codec.js'
import { codeOf } from '../../../helpers/codec.js'

/** A message without the frame it came in as: what a session builds itself. */
function bodyOf(message: Message): Message {
  const { classicFrame: _frame, sessionId: _session, ...body } = message
  return body as Message
}

const bytes = new Uint8Array([1, 2, 3])

/** Every message the protocol defines, built as a session builds them, with its classic frame. */
const everyMessage: readonly [Message, Uint8Array][] = [
  [{ type: 'sync-step1', stateVector: bytes }, encodeSyncStep1(bytes)],
  [{ type: 'sync-step2', update: bytes }, encodeSyncStep2(bytes)],
  [{ type: 'sync-update', update: bytes }, encodeSyncUpdate(bytes)],
  [{ type: 'awareness', update: bytes }, encodeAwareness(bytes)],
  [{ type: 'query-awareness' }, encodeQueryAwareness()],
  [
    { type: 'auth', authType: AuthMessageType.PermissionDenied, reason: 'read-only' },
    encodePermissionDenied('read-only'),
  ],
  [{ type: 'sync-status', payload: new Uint8Array([0xac, 0x02]) }, encodeSyncStatus(300)],
]

describe('classicCodec', () => {
  it('names the classic protocol', () => {
    expect(classicCodec.protocol).toBe(WireProtocol.Classic)
  })

  it.each(everyMessage.map(([message, frame]) => [message.type, message, frame] as const))(
    'round-trips a %s message through the y-websocket framing',
    (_type, message, frame) => {
      const encoded = classicCodec.encode(message, 'any-session')
      expect(encoded).toEqual(frame)
      const decoded = classicCodec.decode(encoded)
      expect(bodyOf(decoded)).toEqual(message)
      expect(decodeMessage(encoded)).toEqual(message)
    },
  )

  it('keeps the frame a message came in as, and encodes the message as that very frame', () => {
    for (const [, frame] of everyMessage) {
      const decoded = classicCodec.decode(frame)
      expect(decoded.classicFrame).toBe(frame)
      expect(classicCodec.encode(decoded, 's')).toBe(frame)
    }
  })

  it('encodes a message a session built fresh, even when its payload came from a decoded one', () => {
    const received = classicCodec.decode(encodeSyncStep2(bytes))
    if (received.type !== 'sync-step2') throw new Error('unexpected type')
    // A step 2 is relayed as a sync-update: a new message, so a new frame, never the step 2's.
    const relayed = classicCodec.encode({ type: 'sync-update', update: received.update }, 's')
    expect(relayed).toEqual(encodeSyncUpdate(bytes))
  })

  it('encodes an auth message of any type with its reason', () => {
    const encoded = classicCodec.encode({ type: 'auth', authType: 7, reason: 'later' }, 's')
    expect(decodeMessage(encoded)).toEqual({ type: 'auth', authType: 7, reason: 'later' })
  })

  it('decodes as strictly as decodeMessage: malformed frames and unknown types throw their codes', () => {
    const full = encodeSyncUpdate(new Uint8Array(50))
    for (let length = 0; length < full.length; length++) {
      expect(codeOf(() => classicCodec.decode(full.subarray(0, length)))).toBe('malformed-message')
    }
    expect(codeOf(() => classicCodec.decode(new Uint8Array([...encodeSyncUpdate(bytes), 7])))).toBe(
      'malformed-message',
    )
    expect(codeOf(() => classicCodec.decode(new Uint8Array([9])))).toBe('unknown-message-type')
    expect(codeOf(() => classicCodec.decode(new Uint8Array([0, 5, 0])))).toBe('unknown-message-type')
  })

  it('throws only its own error on random bytes, and agrees with decodeMessage (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (frame) => {
        const code = codeOf(() => classicCodec.decode(frame))
        expect(code === undefined || !code.startsWith('foreign')).toBe(true)
        expect(code).toBe(codeOf(() => decodeMessage(frame)))
        if (code === undefined) {
          expect(bodyOf(classicCodec.decode(frame))).toEqual(decodeMessage(frame))
          // Relayed as received, even a frame a fresh encoding would spell differently.
          expect(classicCodec.encode(classicCodec.decode(frame), 's')).toBe(frame)
        }
      }),
      { numRuns: 3_000 },
    )
  })
})

describe('messageByteLength', () => {
  it('counts the frame a decoded message holds, or the payload of a built one', () => {
    const frame = encodeSyncUpdate(new Uint8Array(100))
    expect(messageByteLength(classicCodec.decode(frame))).toBe(frame.length)
    expect(messageByteLength({ type: 'sync-update', update: new Uint8Array(100) })).toBe(100)
  })
})
