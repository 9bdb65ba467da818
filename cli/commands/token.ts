// `colloquy token`: mints an access token for operators (HS256, signed with the server's secret).

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { secretWeakness } from '../../server/auth/secret-strength.js'
import { type AccessRole, mintToken, type PeerKindClaim } from '../../server/auth/tokens.js'
import { isValidPriority, isValidTenant } from '../../shared/turns/turn.js'

export const usage = `Usage: colloquy token --peer ID (--session ID | --prefix PREFIX) [options]

Prints a signed access token for one session or every session under a prefix.
  --secret SECRET   the server's secret (default: COLLOQUY_SECRET; shows in ps, prefer the next)
  --secret-file F   read the secret from the first line of F (default: COLLOQUY_SECRET_FILE)
  --peer ID         the peer id the token names (its sub claim)
  --session ID      exactly this session, or
  --prefix PREFIX   every session whose id starts with PREFIX ("" for all)
  --role ROLE       read | write | admin (default write)
  --kind KIND       device | agent (default device)
  --tenant T        the tenant every turn this token creates is charged to (tnt claim); without
                    it a write token's turns go to tenant "default", an admin token names any
  --priority CLASS  the best priority class its turns may use, 0 (first) to 2 (pri claim);
                    without it 1 for a write token, 0 for an admin token
  --ttl SECONDS     lifetime (default 3600; the server refuses tokens valid for longer than its
                    --max-token-lifetime-s, 30 days by default)
`

class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Prints one token; exit code 0. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let values: Record<string, string | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      options: Object.fromEntries(
        [
          'secret',
          'secret-file',
          'peer',
          'session',
          'prefix',
          'role',
          'kind',
          'ttl',
          'tenant',
          'priority',
        ].map((name) => [name, { type: 'string' as const }]),
      ),
      strict: true,
    }).values as Record<string, string | undefined>
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  const secretFile = values['secret-file'] ?? env.COLLOQUY_SECRET_FILE
  let secret = values.secret ?? env.COLLOQUY_SECRET
  if (secret === undefined && secretFile !== undefined) {
    try {
      secret = (readFileSync(secretFile, 'utf8').split(/\r?\n/)[0] ?? '').trim()
    } catch (error) {
      throw new UsageError(
        `cannot read ${secretFile}: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
  }
  if (secret === undefined)
    throw new UsageError('a secret is required (--secret-file, COLLOQUY_SECRET, --secret)')
  const weakness = secretWeakness(secret)
  if (weakness !== undefined) throw new UsageError(`the secret is too weak: ${weakness}`)
  if (values.peer === undefined) throw new UsageError('--peer is required')
  const role = (values.role ?? 'write') as AccessRole
  if (!['read', 'write', 'admin'].includes(role)) throw new UsageError('--role must be read, write or admin')
  const kind = (values.kind ?? 'device') as PeerKindClaim
  if (kind !== 'device' && kind !== 'agent') throw new UsageError('--kind must be device or agent')
  const ttlSeconds = Number(values.ttl ?? 3600)
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0)
    throw new UsageError('--ttl must be a positive integer')
  if (values.tenant !== undefined && !isValidTenant(values.tenant))
    throw new UsageError('--tenant must be 1–64 of A-Za-z0-9._:-')
  const bestPriority = values.priority === undefined ? undefined : Number(values.priority)
  if (values.priority !== undefined && (values.priority.trim() === '' || !isValidPriority(bestPriority)))
    throw new UsageError('--priority must be 0, 1 or 2')
  const token = await mintToken({
    secret,
    peerId: values.peer,
    role,
    kind,
    ttlSeconds,
    ...(values.session === undefined ? {} : { sessionId: values.session }),
    ...(values.prefix === undefined ? {} : { sessionPrefix: values.prefix }),
    ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
    ...(bestPriority === undefined ? {} : { bestPriority }),
  })
  process.stdout.write(`${token}\n`)
  return 0
}
