// The client's address behind trusted proxies: per-address limits and logs use the address in
// `X-Forwarded-For` only when the socket's peer is a configured proxy (`--trust-proxy`), and then
// the right-most address that is not itself a trusted proxy. Anything else a client writes in that
// header is ignored. Address matching is node:net's BlockList.

import { BlockList, isIP } from 'node:net'

/** One `--trust-proxy` entry, parsed. */
export interface AddressRange {
  readonly address: string
  readonly prefix: number
  readonly family: 'ipv4' | 'ipv6'
}

/** `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`; undefined when it is none of these. */
export function parseAddressRange(text: string): AddressRange | undefined {
  const [address = '', prefixText, ...rest] = text.split('/')
  if (rest.length > 0) return undefined
  const version = isIP(address)
  if (version === 0) return undefined
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const max = version === 4 ? 32 : 128
  if (prefixText === undefined) return { address, prefix: max, family }
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return undefined
  return { address, prefix: Number(prefixText), family }
}

const MAPPED_IPV4 = /^(?:0{1,4}:){5}ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i

/**
 * An address as text in the form logs and limits use: IPv4 dotted, IPv6 as given; IPv4-mapped
 * IPv6 (`::ffff:127.0.0.1`, or uWS's expanded `0000:…:ffff:7f00:0001`) as IPv4. Undefined when it
 * is not an address at all.
 */
export function normalizeAddress(text: string): string | undefined {
  let address = text.trim()
  if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1)
  const version = isIP(address)
  if (version === 4) return address
  if (version !== 6) return undefined
  const lower = address.toLowerCase()
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7)
  const mapped = MAPPED_IPV4.exec(lower)
  if (mapped !== null) {
    const high = Number.parseInt(mapped[1]!, 16)
    const low = Number.parseInt(mapped[2]!, 16)
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`
  }
  return lower
}

/** Resolves the client address of a request from its socket address and `X-Forwarded-For`. */
export type ClientAddressOf = (socketAddress: string, forwardedFor: string | undefined) => string

/** A resolver trusting `X-Forwarded-For` from the proxies in `trusted` (addresses or CIDRs). */
export function createClientAddressOf(trusted: readonly string[]): ClientAddressOf {
  if (trusted.length === 0) return (socketAddress) => normalizeAddress(socketAddress) ?? socketAddress
  const list = new BlockList()
  for (const entry of trusted) {
    const range = parseAddressRange(entry)
    if (range === undefined) throw new Error(`not an address or CIDR range: ${entry}`)
    list.addSubnet(range.address, range.prefix, range.family)
  }
  const isTrusted = (address: string): boolean => list.check(address, isIP(address) === 4 ? 'ipv4' : 'ipv6')
  return (socketAddress, forwardedFor) => {
    const peer = normalizeAddress(socketAddress)
    if (peer === undefined) return socketAddress
    if (!isTrusted(peer) || forwardedFor === undefined) return peer
    // Right to left: each trusted proxy appended the address it received from; the first one not
    // trusted is the client (what is left of it the client may have written itself).
    const hops = forwardedFor.split(',')
    let client = peer
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(hops[i]!)
      // A hop that is not an address: nothing to its left can be believed.
      if (hop === undefined) return client
      client = hop
      if (!isTrusted(hop)) return hop
    }
    return client
  }
}
