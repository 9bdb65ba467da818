// Builds the browser app (web/src) into static files: hashed bundles plus an index.html that names
// them. Used by `npm run build:web`, `npm run dev:web` (watch) and the end-to-end tests.

import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const WEB_DIR = path.dirname(fileURLToPath(import.meta.url))

/** Options of {@link buildWeb}. */
export interface BuildWebOptions {
  /** Where the files go (emptied first). */
  readonly outDir: string
  /** Minify (default true); source maps are always written. */
  readonly minify?: boolean
}

/** The files of one build, relative to `outDir`. */
export interface WebBuild {
  readonly outDir: string
  readonly script: string
  readonly stylesheet: string
}

function buildOptions(outDir: string, minify: boolean): esbuild.BuildOptions & { metafile: true } {
  return {
    entryPoints: [path.join(WEB_DIR, 'src', 'main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    outdir: outDir,
    entryNames: '[name]-[hash]',
    minify,
    sourcemap: true,
    metafile: true,
    logLevel: 'silent',
  }
}

async function writeIndex(outDir: string, metafile: esbuild.Metafile): Promise<WebBuild> {
  const outputs = Object.keys(metafile.outputs).map((file) => path.basename(file))
  const script = outputs.find((file) => file.endsWith('.js'))
  const stylesheet = outputs.find((file) => file.endsWith('.css'))
  if (script === undefined || stylesheet === undefined)
    throw new Error('web build produced no script or stylesheet')
  const template = await readFile(path.join(WEB_DIR, 'index.html'), 'utf8')
  const html = template
    .replace('{{stylesheet}}', `/app/${stylesheet}`)
    .replace('{{script}}', `/app/${script}`)
  await writeFile(path.join(outDir, 'index.html'), html)
  // The icon keeps its name: the server answers /favicon.ico with it, and index.html links it.
  await copyFile(path.join(WEB_DIR, 'favicon.svg'), path.join(outDir, 'favicon.svg'))
  return { outDir, script, stylesheet }
}

/** Builds the app once into `outDir`. */
export async function buildWeb(options: BuildWebOptions): Promise<WebBuild> {
  const outDir = path.resolve(options.outDir)
  await rm(outDir, { recursive: true, force: true })
  await mkdir(outDir, { recursive: true })
  const result = await esbuild.build(buildOptions(outDir, options.minify ?? true))
  return writeIndex(outDir, result.metafile)
}

/** Rebuilds into `outDir` on every change under web/src (reload the page to see it). */
export async function watchWeb(outDir: string): Promise<esbuild.BuildContext> {
  const resolved = path.resolve(outDir)
  await mkdir(resolved, { recursive: true })
  const context = await esbuild.context({
    ...buildOptions(resolved, false),
    plugins: [
      {
        name: 'colloquy-index',
        setup(build) {
          build.onEnd(async (result) => {
            if (result.errors.length > 0) {
              console.error(`web build failed: ${result.errors.map((e) => e.text).join('; ')}`)
              return
            }
            if (result.metafile !== undefined) await writeIndex(resolved, result.metafile)
            console.log(`web app rebuilt into ${resolved}`)
          })
        },
      },
    ],
  })
  await context.watch()
  return context
}

const isMain =
  process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (isMain) {
  const outDir = process.argv.includes('--out')
    ? (process.argv[process.argv.indexOf('--out') + 1] ?? 'dist/web')
    : 'dist/web'
  if (process.argv.includes('--watch')) {
    await watchWeb(outDir)
  } else {
    const build = await buildWeb({ outDir })
    console.log(`web app built into ${build.outDir}`)
  }
}
