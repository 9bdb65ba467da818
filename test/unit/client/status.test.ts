import { describe, expect, it } from 'vitest'
import { classifyClose } from '../../../client/status.js'
import { ERRORS, type ErrorCode, errorForCloseCode } from '../../../shared/errors.js'
import { CloseCode } from '../../../shared/protocol/close-codes.js'

describe('classifyClose', () => {
  it('follows the shared error table for every close code in it', () => {
    for (const [code, info] of Object.entries(ERRORS) as [ErrorCode, (typeof ERRORS)[ErrorCode]][]) {
      const verdict = classifyClose(info.closeCode, '')
      // Several error codes share a close code; the table's first row for it names the verdict.
      expect(verdict.errorCode).toBe(errorForCloseCode(info.closeCode))
      expect(verdict.isRetryable, code).toBe(ERRORS[verdict.errorCode!].isRetryable)
    }
  })

  it('calls policy closes non-retryable and load or storage trouble retryable', () => {
    expect(classifyClose(CloseCode.MalformedMessage, 'malformed message')).toEqual({
      closeCode: 4400,
      reason: 'malformed message',
      errorCode: 'malformed-message',
      isRetryable: false,
    })
    expect(classifyClose(CloseCode.TextFrame, '').isRetryable).toBe(false)
    expect(classifyClose(CloseCode.Unauthorized, '').errorCode).toBe('unauthorized')
    expect(classifyClose(CloseCode.Forbidden, '').errorCode).toBe('forbidden')
    expect(classifyClose(CloseCode.InvalidUpdate, '').errorCode).toBe('invalid-update')
    expect(classifyClose(CloseCode.StorageUnavailable, '')).toMatchObject({
      errorCode: 'storage-unavailable',
      isRetryable: true,
    })
    expect(classifyClose(CloseCode.GoingAway, '')).toMatchObject({
      errorCode: 'shutting-down',
      isRetryable: true,
      reason: 'server shutting down',
    })
  })

  it('retries codes outside the table, such as a dropped connection, except 4400–4499', () => {
    expect(classifyClose(1006, '')).toEqual({ closeCode: 1006, reason: 'connection lost', isRetryable: true })
    expect(classifyClose(4999, 'custom')).toEqual({ closeCode: 4999, reason: 'custom', isRetryable: true })
    expect(classifyClose(4599, 'later')).toEqual({ closeCode: 4599, reason: 'later', isRetryable: true })
    expect(classifyClose(4499, 'never')).toEqual({ closeCode: 4499, reason: 'never', isRetryable: false })
  })
})
