// The test side of the power-loss recorder (durability-preload.c): builds the library with the
// machine's C compiler, and after a SIGKILL turns a data directory into what a power cut would keep.

import { execFile } from 'node:child_process'
import { copyFile, lstat, mkdir, readdir, readFile, rename, rm, truncate } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'durability-preload.c')

/**
 * Compiles the preload library into `outDir` with `cc`; resolves undefined (with the reason in
 * `onSkip`) when no working compiler is found.
 */
export async function buildPreload(
  outDir: string,
  onSkip: (reason: string) => void,
): Promise<string | undefined> {
  const output = path.join(outDir, 'durability-preload.so')
  try {
    await promisify(execFile)(
      process.env.CC ?? 'cc',
      [
        '-shared',
        '-fPIC',
        '-O2',
        '-Wall',
        '-Wno-format-truncation',
        '-o',
        output,
        SOURCE,
        '-ldl',
        '-lpthread',
      ],
      { timeout: 60_000 },
    )
    return output
  } catch (error) {
    onSkip(
      `no working C compiler (${process.env.CC ?? 'cc'}): ${error instanceof Error ? error.message : String(error)}`,
    )
    return undefined
  }
}

/** Where a recorded run keeps its files: the watched data directory, the event log, the trash. */
export interface PowerLossPaths {
  readonly dataDir: string
  readonly events: string
  readonly trash: string
}

/**
 * The environment that makes a child process record into `paths`; `tableSyncDelayMs` makes each
 * sync of a LevelDB table file wait that long first (a slow disk for compactions).
 */
export function preloadEnv(library: string, paths: PowerLossPaths, tableSyncDelayMs = 0): NodeJS.ProcessEnv {
  return {
    COLLOQUY_PL_TABLE_SYNC_DELAY_MS: String(tableSyncDelayMs),
    LD_PRELOAD: library,
    COLLOQUY_PL_DIR: paths.dataDir,
    COLLOQUY_PL_LOG: paths.events,
    COLLOQUY_PL_TRASH: paths.trash,
    // libuv may otherwise do file I/O through io_uring, which no preload sees.
    UV_USE_IO_URING: '0',
  }
}

/** What a cut kept and dropped, for the test's log line. */
export interface CutReport {
  readonly events: number
  readonly fileSyncs: number
  readonly directorySyncs: number
  /** Names whose creation, rename or removal was not made durable by a directory sync, undone. */
  readonly undone: readonly string[]
  /** Files cut shorter than they were, name → bytes dropped. */
  readonly shortened: Readonly<Record<string, number>>
  /** Calls the model does not cover ("X" events); the test fails on any. */
  readonly unsupported: readonly string[]
}

type DirectoryOp =
  | { readonly kind: 'create'; readonly name: string; readonly ino: string }
  | { readonly kind: 'rename'; readonly from: string; readonly to: string; readonly ino: string }
  | { readonly kind: 'unlink'; readonly name: string }

/**
 * Turns `paths.dataDir` (after its process was SIGKILLed) into what survives a power cut at that
 * instant, following the events the preload recorded, then empties the event log and the trash.
 *
 * @remarks The model: a file's bytes up to its size at its last fsync/fdatasync survive, the rest
 * is lost; a create, rename or unlink survives only if the directory was fsync'd after it (else it
 * is undone: the file is gone, back at its old name, or back). See the test's header for limits.
 */
export async function cutToDurable(paths: PowerLossPaths): Promise<CutReport> {
  const text = await readFile(paths.events, 'utf8').catch(() => '')
  const lines = text.split('\n').filter((line) => line !== '')
  if (lines.length === 0) {
    // The process changed nothing in the directory: everything in it is as durable as before.
    return { events: 0, fileSyncs: 0, directorySyncs: 0, undone: [], shortened: {}, unsupported: [] }
  }
  /** What a power cut keeps: name → inode, and each inode's durable length. */
  const durableNames = new Map<string, string>()
  const durableLength = new Map<string, number>()
  let pending: DirectoryOp[] = []
  const unsupported: string[] = []
  let fileSyncs = 0
  let directorySyncs = 0
  const apply = (op: DirectoryOp): void => {
    if (op.kind === 'create') durableNames.set(op.name, op.ino)
    else if (op.kind === 'unlink') durableNames.delete(op.name)
    else {
      durableNames.delete(op.from)
      durableNames.set(op.to, op.ino)
    }
  }
  for (const line of lines) {
    const [kind, ...fields] = line.split(' ')
    switch (kind) {
      case 'I':
        durableNames.set(fields[2]!, fields[0]!)
        durableLength.set(fields[0]!, Number(fields[1]))
        break
      case 'C':
        durableLength.set(fields[0]!, 0)
        pending.push({ kind: 'create', ino: fields[0]!, name: fields[1]! })
        break
      case 'Z':
        durableLength.set(fields[0]!, 0)
        break
      case 'S':
        fileSyncs++
        durableLength.set(fields[0]!, Number(fields[1]))
        break
      case 'R':
        pending.push({ kind: 'rename', ino: fields[0]!, from: fields[1]!, to: fields[2]! })
        break
      case 'U':
        pending.push({ kind: 'unlink', name: fields[1]! })
        break
      case 'D':
        directorySyncs++
        for (const op of pending) apply(op)
        pending = []
        break
      default:
        unsupported.push(line)
    }
  }

  // Every inode still reachable: by its name in the data directory or its number in the trash.
  const sourceOf = new Map<string, string>()
  const currentNames = new Map<string, string>()
  for (const dir of [paths.trash, paths.dataDir]) {
    for (const name of await readdir(dir)) {
      const stat = await lstat(path.join(dir, name), { bigint: true })
      if (!stat.isFile()) continue
      sourceOf.set(String(stat.ino), path.join(dir, name))
      if (dir === paths.dataDir) currentNames.set(name, String(stat.ino))
    }
  }

  const undone = pending.map((op) =>
    op.kind === 'rename' ? `rename ${op.from} -> ${op.to}` : `${op.kind} ${op.name}`,
  )
  const shortened: Record<string, number> = {}
  const staging = `${paths.dataDir}.staging`
  await rm(staging, { recursive: true, force: true })
  await mkdir(staging)
  for (const [name, ino] of durableNames) {
    const source = sourceOf.get(ino)
    if (source === undefined) throw new Error(`power-loss model: inode ${ino} of ${name} is gone`)
    const target = path.join(staging, name)
    await copyFile(source, target)
    const size = Number((await lstat(target)).size)
    const keep = Math.min(size, durableLength.get(ino) ?? size)
    if (keep < size) {
      await truncate(target, keep)
      shortened[name] = size - keep
    }
  }
  for (const name of currentNames.keys()) {
    if (!durableNames.has(name)) undone.push(`(absent after the cut) ${name}`)
  }
  await rm(paths.dataDir, { recursive: true, force: true })
  await rename(staging, paths.dataDir)
  await rm(paths.trash, { recursive: true, force: true })
  await mkdir(paths.trash)
  await rm(paths.events, { force: true })
  return { events: lines.length, fileSyncs, directorySyncs, undone, shortened, unsupported }
}
