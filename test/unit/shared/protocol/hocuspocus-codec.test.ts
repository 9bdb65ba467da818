import { writeAuthentication } from '@hocuspocus/common'
import { OutgoingMessage } from '@hocuspocus/server'
import * as encoding from 'lib0/encoding'
import { describe, expect, it } from 'vitest'
import {
  decodeHocuspocusBody,
  encodeHocuspocus,
  HocuspocusMessageType,
  HocuspocusSyncStatus,
  hocuspocusCodec,
  readDocumentName,
} from '../../../../shared/protocol/hocuspocus-codec.js'
import { AuthMessageType, AuthScope, type Message } from '../../../../shared/protocol/message.js'
import { classicCodec, WireProtocol } from '../../../../shared/protocol/wire-codec.js'
import { codeOf, frame } from '../../../helpers/codec.js'

const doc = 'session-ä1'
const bytes = new Uint8Array([1, 2, 3])

/** Every message type, as a session or a provider builds it. */
const everyMessage: readonly Message[] = [
  { type: 'sync-step1', stateVector: bytes },
  { type: 'sync-step2', update: bytes },
  { type: 'sync-update', update: bytes },
  { type: 'awareness', update: bytes },
  { type: 'query-awareness' },
  { type: 'auth', authType: AuthMessageType.PermissionDenied, reason: 'read-only token' },
  { type: 'auth-token', token: 'eyJ.a.b' },
  { type: 'auth-token', token: 'eyJ.a.b', clientVersion: '4.8.0' },
  { type: 'authenticated', scope: AuthScope.ReadWrite },
  { type: 'authenticated', scope: AuthScope.ReadOnly },
  { type: 'stateless', payload: '{"signal":"typing"}' },
  { type: 'close', reason: 'too many documents' },
  { type: 'sync-status', payload: HocuspocusSyncStatus.Saved },
  { type: 'sync-status', payload: HocuspocusSyncStatus.Refused },
]

describe('hocuspocusCodec', () => {
  it('names the hocuspocus protocol and carries every message type', () => {
    expect(hocuspocusCodec.protocol).toBe(WireProtocol.Hocuspocus)
    for (const message of everyMessage) expect(hocuspocusCodec.carries(message.type)).toBe(true)
  })

  it.each(everyMessage.map((message) => [message.type, message] as const))(
    'round-trips a %s message with its document name',
    (_type, message) => {
      const encoded = hocuspocusCodec.encode(message, doc)
      expect(readDocumentName(encoded).documentName).toBe(doc)
      const { classicFrame: _frame, ...decoded } = hocuspocusCodec.decode(encoded)
      expect(decoded).toEqual({ ...message, sessionId: doc })
    },
  )

  it('writes the frames Hocuspocus 3.4.4 itself sends', () => {
    const same = (message: Message, theirs: OutgoingMessage): void => {
      expect(hocuspocusCodec.encode(message, doc)).toEqual(theirs.toUint8Array())
    }
    same(
      { type: 'authenticated', scope: AuthScope.ReadOnly },
      new OutgoingMessage(doc).writeAuthenticated(true),
    )
    same(
      { type: 'authenticated', scope: AuthScope.ReadWrite },
      new OutgoingMessage(doc).writeAuthenticated(false),
    )
    same(
      { type: 'auth', authType: AuthMessageType.PermissionDenied, reason: 'no' },
      new OutgoingMessage(doc).writePermissionDenied('no'),
    )
    same({ type: 'stateless', payload: 'hi' }, new OutgoingMessage(doc).writeStateless('hi'))
    same(
      { type: 'sync-status', payload: HocuspocusSyncStatus.Saved },
      new OutgoingMessage(doc).writeSyncStatus(true),
    )
    same(
      { type: 'sync-status', payload: HocuspocusSyncStatus.Refused },
      new OutgoingMessage(doc).writeSyncStatus(false),
    )
    same({ type: 'close', reason: 'bye' }, new OutgoingMessage(doc).writeCloseMessage('bye'))
    same({ type: 'query-awareness' }, new OutgoingMessage(doc).writeQueryAwareness())
    same(
      { type: 'sync-update', update: bytes },
      new OutgoingMessage(doc).createSyncMessage().writeUpdate(bytes),
    )
  })

  it('reads the auth message of provider 3.x (token only) and 4.x (token, then its version)', () => {
    const v3 = frame((e) => {
      encoding.writeVarString(e, doc)
      encoding.writeVarUint(e, HocuspocusMessageType.Auth)
      writeAuthentication(e, 'tok')
    })
    const v4 = frame((e) => {
      encoding.writeVarString(e, doc)
      encoding.writeVarUint(e, HocuspocusMessageType.Auth)
      writeAuthentication(e, 'tok')
      encoding.writeVarString(e, '4.8.0')
    })
    expect(hocuspocusCodec.decode(v3)).toEqual({ type: 'auth-token', token: 'tok', sessionId: doc })
    expect(hocuspocusCodec.decode(v4)).toEqual({
      type: 'auth-token',
      token: 'tok',
      clientVersion: '4.8.0',
      sessionId: doc,
    })
  })

  it("reads a provider's close, which carries no reason", () => {
    const close = frame((e) => {
      encoding.writeVarString(e, doc)
      encoding.writeVarUint(e, HocuspocusMessageType.Close)
    })
    expect(hocuspocusCodec.decode(close)).toEqual({ type: 'close', reason: '', sessionId: doc })
  })

  it('tells the document name apart from the body, so a bad body concerns one document', () => {
    const bad = frame((e) => {
      encoding.writeVarString(e, doc)
      encoding.writeVarUint(e, HocuspocusMessageType.Sync)
      encoding.writeVarUint(e, 2)
      encoding.writeVarUint(e, 50) // a length past the end
    })
    const { documentName, bodyOffset } = readDocumentName(bad)
    expect(documentName).toBe(doc)
    expect(codeOf(() => decodeHocuspocusBody(bad, documentName, bodyOffset))).toBe('malformed-message')
  })

  it('refuses a frame with no readable document name as malformed', () => {
    expect(codeOf(() => readDocumentName(new Uint8Array([])))).toBe('malformed-message')
    expect(codeOf(() => readDocumentName(new Uint8Array([5, 0x61])))).toBe('malformed-message')
    expect(
      codeOf(() => readDocumentName(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))),
    ).toBe('malformed-message')
    // Invalid UTF-8 in the name: a lone continuation byte, an overlong encoding.
    expect(codeOf(() => hocuspocusCodec.decode(new Uint8Array([1, 0x80, 0])))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(new Uint8Array([2, 0xc0, 0xaf, 0])))).toBe('malformed-message')
  })

  it('refuses malformed bodies: truncated, trailing bytes, bad UTF-8, an unknown scope', () => {
    const named = (...body: number[]): Uint8Array => Uint8Array.of(1, 0x64, ...body)
    expect(codeOf(() => hocuspocusCodec.decode(named()))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(0, 0)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(1, 1, 7, 9)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(3, 0)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(5, 1, 0xff)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(2, 0, 1, 0xfe)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(2, 2, 3, 0x61, 0x6c, 0x6c)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(8)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(8, 1, 1)))).toBe('malformed-message')
    expect(codeOf(() => hocuspocusCodec.decode(named(7, 1)))).toBe('malformed-message')
  })

  it('counts unknown types as unknown, like the classic codec: a message type, a sync type, an auth type', () => {
    const named = (...body: number[]): Uint8Array => Uint8Array.of(1, 0x64, ...body)
    expect(codeOf(() => hocuspocusCodec.decode(named(HocuspocusMessageType.SyncReply, 0, 0)))).toBe(
      'unknown-message-type',
    )
    expect(codeOf(() => hocuspocusCodec.decode(named(HocuspocusMessageType.BroadcastStateless, 0)))).toBe(
      'unknown-message-type',
    )
    expect(codeOf(() => hocuspocusCodec.decode(named(42)))).toBe('unknown-message-type')
    expect(codeOf(() => hocuspocusCodec.decode(named(0, 9, 0)))).toBe('unknown-message-type')
    expect(codeOf(() => hocuspocusCodec.decode(named(2, 7)))).toBe('unknown-message-type')
  })

  it('never throws anything but a ColloquyError on random frames', () => {
    let seed = 7
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff
      return seed
    }
    for (let i = 0; i < 2000; i++) {
      const frameBytes = Uint8Array.from({ length: next() % 12 }, () => next() & 0xff)
      const code = codeOf(() => hocuspocusCodec.decode(frameBytes))
      expect(code === undefined || code === 'malformed-message' || code === 'unknown-message-type').toBe(true)
    }
  })

  it('encodes the same message for two documents as two frames differing only in the name', () => {
    const message: Message = { type: 'sync-update', update: bytes }
    const a = encodeHocuspocus(message, 'a')
    const b = encodeHocuspocus(message, 'b')
    expect(a.subarray(2)).toEqual(b.subarray(2))
    expect(a[1]).not.toBe(b[1])
  })
})

describe('the hocuspocus and classic codecs together', () => {
  it('keeps the classic frame of sync, awareness and query-awareness bodies, so classic peers get them as they came', () => {
    for (const message of everyMessage.slice(0, 5)) {
      const framed = hocuspocusCodec.encode(message, doc)
      const decoded = hocuspocusCodec.decode(framed)
      const classic = classicCodec.encode(message, doc)
      expect(decoded.classicFrame).toEqual(classic)
      // The very bytes of the Hocuspocus frame, not a copy: relaying costs no encoding.
      expect(classicCodec.encode(decoded, doc).buffer).toBe(framed.buffer)
      // And back: a classic frame written after the name is the Hocuspocus frame.
      expect(hocuspocusCodec.encode(classicCodec.decode(classic), doc)).toEqual(framed)
    }
  })

  it('never sends a Hocuspocus auth or sync-status frame to a classic peer, nor a classic one to Hocuspocus', () => {
    const status = hocuspocusCodec.decode(
      hocuspocusCodec.encode({ type: 'sync-status', payload: Uint8Array.of(1) }, doc),
    )
    expect(status.classicFrame).toBeUndefined()
    const classicStatus = classicCodec.decode(
      classicCodec.encode({ type: 'sync-status', payload: Uint8Array.of(5) }, doc),
    )
    expect(hocuspocusCodec.encode(classicStatus, doc)).toEqual(
      hocuspocusCodec.encode({ type: 'sync-status', payload: Uint8Array.of(5) }, doc),
    )
  })
})

describe('classicCodec and the hocuspocus-only messages', () => {
  it('does not carry stateless, close, authenticated or auth-token, and refuses to encode them', () => {
    for (const type of ['stateless', 'close', 'authenticated', 'auth-token'] as const) {
      expect(classicCodec.carries(type)).toBe(false)
    }
    expect(classicCodec.carries('sync-update')).toBe(true)
    expect(codeOf(() => classicCodec.encode({ type: 'stateless', payload: 'x' }, doc))).toBe('internal')
  })
})
