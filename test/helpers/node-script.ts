// The `node` arguments that run one of the project's TypeScript entry points in a child process.

import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The environment variable naming the build child-build.ts made (set for the test workers). */
export const CHILD_BUILD_ENV = 'COLLOQUY_TEST_CHILD_BUILD'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * `script` is a path from the repository root under cli/, client/, server/, shared/ or
 * test/helpers/ (e.g. `server/main.ts`). Under vitest: the JavaScript that child-build.ts
 * transpiled for this run; elsewhere (the benches): the source through tsx.
 */
export function nodeScript(script: string): string[] {
  const build = process.env[CHILD_BUILD_ENV]
  if (build) return ['--enable-source-maps', path.join(build, script.replace(/\.ts$/, '.js'))]
  return ['--import', 'tsx', path.join(ROOT, script)]
}
