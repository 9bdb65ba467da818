// How guessable a token secret is: refuses blank, short, repetitive and low-entropy secrets at
// start-up, before any token is signed or checked with one. Never reports the secret itself.

/** Shortest secret accepted (characters). */
export const MIN_SECRET_LENGTH = 16
/** Least estimated entropy accepted (bits): a random 32-byte base64 secret has about 190. */
export const MIN_SECRET_BITS = 64

/**
 * An estimate of the entropy of `secret` in bits: its length times the Shannon entropy of its
 * character distribution.
 *
 * @remarks An upper bound for human-made secrets (a dictionary word scores as if random), and
 * close for random ones; what it catches are the blatant cases: `aaaa…`, `abab…`, `0000…1111`.
 */
export function estimateSecretBits(secret: string): number {
  const characters = [...secret]
  const counts = new Map<string, number>()
  for (const character of characters) counts.set(character, (counts.get(character) ?? 0) + 1)
  let bitsPerCharacter = 0
  for (const count of counts.values()) {
    const p = count / characters.length
    bitsPerCharacter -= p * Math.log2(p)
  }
  return bitsPerCharacter * characters.length
}

/** Why `secret` is too weak to sign tokens with, or undefined when it will do. */
export function secretWeakness(secret: string): string | undefined {
  const advice = 'generate one with `openssl rand -base64 32`'
  if (secret.trim().length === 0) return `it is blank; ${advice}`
  if ([...secret].length < MIN_SECRET_LENGTH) {
    return `it is shorter than ${MIN_SECRET_LENGTH} characters; ${advice}`
  }
  if (new Set(secret).size <= 2) return `it repeats one or two characters; ${advice}`
  const bits = estimateSecretBits(secret)
  if (bits < MIN_SECRET_BITS) {
    return `it has about ${Math.floor(bits)} bits of entropy, under ${MIN_SECRET_BITS}; ${advice}`
  }
  return undefined
}
