// The client address behind trusted proxies (server/http/client-address.ts).

import { describe, expect, it } from 'vitest'
import { createClientAddressOf, normalizeAddress } from '../../../server/http/client-address.js'

describe('createClientAddressOf', () => {
  const behind = createClientAddressOf(['10.0.0.0/8', '::1'])

  it('uses the socket address when the peer is not trusted, whatever the header says', () => {
    expect(behind('203.0.113.9', '1.2.3.4')).toBe('203.0.113.9')
  })

  it('takes the right-most address that is not a trusted proxy', () => {
    expect(behind('10.0.0.1', '198.51.100.7')).toBe('198.51.100.7')
    expect(behind('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.1.2.3')).toBe('198.51.100.7')
    expect(behind('::1', '198.51.100.7')).toBe('198.51.100.7')
  })

  it('stops at a hop that is not an address, and keeps the last trusted one when all are trusted', () => {
    expect(behind('10.0.0.1', 'garbage, 10.0.0.2')).toBe('10.0.0.2')
    expect(behind('10.0.0.1', '10.0.0.5, 10.0.0.2')).toBe('10.0.0.5')
    expect(behind('10.0.0.1', undefined)).toBe('10.0.0.1')
  })

  it('reads IPv4-mapped IPv6 as IPv4, as uWS writes it expanded', () => {
    expect(normalizeAddress('0000:0000:0000:0000:0000:ffff:7f00:0001')).toBe('127.0.0.1')
    expect(normalizeAddress('::ffff:10.0.0.1')).toBe('10.0.0.1')
    expect(behind('0000:0000:0000:0000:0000:ffff:0a00:0001', '198.51.100.7')).toBe('198.51.100.7')
    expect(normalizeAddress('not an address')).toBeUndefined()
  })
})
