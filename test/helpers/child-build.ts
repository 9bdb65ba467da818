// vitest globalSetup: transpiles cli/, client/, server/, shared/ and test/helpers/ to JavaScript once
// per vitest process, so that the tests' child processes (servers, the CLI, agents) start with plain `node` instead of
// compiling the sources through tsx at every start (a server start: about 0.45 s of CPU instead
// of 1.2-1.4 s). Each file is transpiled on its own, as tsx does (esbuild, no bundling, no type
// check: `npm test` type-checks), so module paths and `import.meta.url` stay as in the sources.
// The build lives under test-results/ (node_modules resolves from there) in a directory of this
// process's own: `npm test` runs two vitest processes at once. node-script.ts reads its path.

import { readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { CHILD_BUILD_ENV } from './node-script.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const SOURCES = ['cli', 'client', 'server', 'shared', 'test/helpers']

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name))
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  // Both projects of one `vitest run` call this: the first build serves both.
  if (process.env[CHILD_BUILD_ENV]) return undefined
  const outdir = path.join(ROOT, 'test-results', `child-build-${process.pid}`)
  await rm(outdir, { recursive: true, force: true })
  const entryPoints = (await Promise.all(SOURCES.map(sourceFiles))).flat()
  await build({
    entryPoints,
    outdir,
    outbase: ROOT,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    logLevel: 'warning',
  })
  process.env[CHILD_BUILD_ENV] = outdir
  return async () => {
    delete process.env[CHILD_BUILD_ENV]
    await rm(outdir, { recursive: true, force: true })
  }
}
