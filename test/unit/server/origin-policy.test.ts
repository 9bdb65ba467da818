// Host and Origin verdicts (server/http/origin-policy.ts), without a server.

import { describe, expect, it } from 'vitest'
import { createOriginPolicy, hostNameOf } from '../../../server/http/origin-policy.js'

describe('hostNameOf', () => {
  it('drops the port and brackets, and lower-cases', () => {
    expect(hostNameOf('LocalHost:8080')).toBe('localhost')
    expect(hostNameOf('[::1]:8080')).toBe('::1')
    expect(hostNameOf('::1')).toBe('::1')
    expect(hostNameOf('127.0.0.1')).toBe('127.0.0.1')
  })
})

describe('an anonymous policy on 127.0.0.1', () => {
  const policy = createOriginPolicy({ listenHost: '127.0.0.1', isAnonymous: true })

  it('accepts the loopback names on any port, and requests without Host or Origin', () => {
    for (const host of ['127.0.0.1:8080', 'localhost:1', '[::1]:8080', 'LOCALHOST']) {
      expect(policy.refusal({ host }), host).toBeUndefined()
    }
    expect(policy.refusal({})).toBeUndefined()
  })

  it('refuses a foreign name, even one that ends like a loopback name', () => {
    for (const host of [
      'rebind.example:8080',
      'localhost.evil.example',
      '127.0.0.1.nip.io:8080',
      '10.0.0.1',
    ]) {
      expect(policy.refusal({ host }), host).toMatch(/not this server's/)
    }
  })

  it('accepts only its own origin, scheme http or https', () => {
    const host = '127.0.0.1:8080'
    expect(policy.refusal({ host, origin: 'http://127.0.0.1:8080' })).toBeUndefined()
    expect(policy.refusal({ host, origin: 'https://127.0.0.1:8080' })).toBeUndefined()
    for (const origin of [
      'http://127.0.0.1:8081',
      'http://localhost:8080',
      'null',
      'file://',
      'chrome-extension://x',
    ]) {
      expect(policy.refusal({ host, origin }), origin).toMatch(/not allowed/)
    }
    expect(policy.corsHeaders({ host, origin: 'http://127.0.0.1:8080' })).toEqual({})
    expect(policy.isPreflightAllowed({ host, origin: 'http://127.0.0.1:8081' })).toBe(false)
  })
})

describe('a policy on a wildcard address', () => {
  it('accepts IP literals as Host (rebinding needs a name) and the names it is given', () => {
    const policy = createOriginPolicy({
      listenHost: '0.0.0.0',
      isAnonymous: true,
      allowedHosts: ['colloquy.lan'],
    })
    expect(policy.refusal({ host: '192.168.1.20:8080' })).toBeUndefined()
    expect(policy.refusal({ host: '[fd00::1]:8080' })).toBeUndefined()
    expect(policy.refusal({ host: 'colloquy.lan:8080' })).toBeUndefined()
    expect(policy.refusal({ host: 'rebind.example:8080' })).toBeDefined()
  })
})

describe('a policy with a secret', () => {
  it('lets any origin and host try by default, and answers CORS only for listed origins', () => {
    const open = createOriginPolicy({ listenHost: '127.0.0.1', isAnonymous: false })
    expect(open.refusal({ host: 'anything.example', origin: 'https://elsewhere.example' })).toBeUndefined()
    expect(open.corsHeaders({ host: 'anything.example', origin: 'https://elsewhere.example' })).toEqual({})
    const listed = createOriginPolicy({
      listenHost: '127.0.0.1',
      isAnonymous: false,
      allowedOrigins: ['https://app.example.com'],
    })
    expect(listed.refusal({ host: 'api.example.com', origin: 'https://elsewhere.example' })).toMatch(
      /not allowed/,
    )
    expect(listed.corsHeaders({ host: 'api.example.com', origin: 'https://app.example.com' })).toEqual({
      'access-control-allow-origin': 'https://app.example.com',
      vary: 'Origin',
    })
    const any = createOriginPolicy({ listenHost: '127.0.0.1', isAnonymous: false, allowedOrigins: ['*'] })
    expect(any.isPreflightAllowed({ host: 'api.example.com', origin: 'https://x.example' })).toBe(true)
  })
})
