import { describe, expect, it } from 'vitest'
import { ERRORS, type ErrorCode, errorForCloseCode } from '../../../shared/errors.js'
import {
  CloseCode,
  isPermanentCloseCode,
  isTransientCloseCode,
} from '../../../shared/protocol/close-codes.js'

const rows = Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]

describe('the close-code table', () => {
  it('uses 4400–4499 only for what a reconnect cannot fix, and 4500–4599 only for what passes', () => {
    for (const [code, info] of rows) {
      if (isPermanentCloseCode(info.closeCode)) expect(info.isRetryable, code).toBe(false)
      if (isTransientCloseCode(info.closeCode)) expect(info.isRetryable, code).toBe(true)
    }
    for (const code of ['rate-limited', 'awareness-limit', 'too-many-connections'] as const) {
      expect(isTransientCloseCode(ERRORS[code].closeCode), code).toBe(true)
      expect(ERRORS[code].isPolicy, code).toBe(true)
    }
    for (const code of [
      'loading-queue-full',
      'session-load-failed',
      'storage-unavailable',
      'overloaded',
    ] as const) {
      expect(isTransientCloseCode(ERRORS[code].closeCode), code).toBe(true)
    }
    for (const code of [
      'malformed-message',
      'text-frame',
      'invalid-update',
      'unauthorized',
      'forbidden',
    ] as const) {
      expect(isPermanentCloseCode(ERRORS[code].closeCode), code).toBe(true)
    }
  })

  it('gives 4401 and 4403 the meanings Hocuspocus providers read: unauthorized and forbidden', () => {
    expect(errorForCloseCode(4401)).toBe('unauthorized')
    expect(errorForCloseCode(4403)).toBe('forbidden')
    expect(CloseCode.Unauthorized).toBe(4401)
    expect(CloseCode.Forbidden).toBe(4403)
  })

  it('keeps token expiry apart from both ranges: the client refreshes its token and reconnects', () => {
    const info = ERRORS['token-expired']
    expect(isPermanentCloseCode(info.closeCode) || isTransientCloseCode(info.closeCode)).toBe(false)
    expect(info.isRetryable).toBe(true)
    expect(errorForCloseCode(info.closeCode)).toBe('token-expired')
  })

  it('gives every close code sent on a socket one row that names it', () => {
    const ours = Object.values(CloseCode).filter((code) => code >= 4000)
    for (const code of ours) expect(errorForCloseCode(code), String(code)).toBeDefined()
    expect(new Set(ours).size).toBe(ours.length)
  })
})
