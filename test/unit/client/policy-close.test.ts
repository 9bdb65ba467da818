import { describe, expect, it } from 'vitest'
import { classifyClose } from '../../../client/status.js'
import { CloseCode } from '../../../shared/protocol/close-codes.js'

describe('policy closes', () => {
  it('are retryable but marked policy, so the client waits the longest backoff', () => {
    for (const code of [CloseCode.RateLimited, CloseCode.AwarenessLimit, CloseCode.TooManyConnections]) {
      const verdict = classifyClose(code, '')
      expect(verdict.isRetryable).toBe(true)
      expect(verdict.isPolicy).toBe(true)
    }
  })

  it('leave storage and expiry closes on the normal backoff', () => {
    expect(classifyClose(CloseCode.StorageUnavailable, '').isPolicy).toBeUndefined()
    const expired = classifyClose(CloseCode.TokenExpired, '')
    expect(expired.errorCode).toBe('token-expired')
    expect(expired.isRetryable).toBe(true)
  })
})
