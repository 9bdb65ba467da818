// A Merger backed by one worker thread, so folding a long log never blocks the event loop that
// serves live sessions. Jobs run one at a time in the thread, in call order.

import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Merger, PackedUpdates } from './merge.js'
import { packUpdates } from './merge.js'
import type { MergeRequest, MergeResponse } from './merge-worker.js'

interface Pending {
  resolve(state: Uint8Array): void
  reject(error: Error): void
}

/**
 * Starts the compaction thread.
 *
 * @remarks Run from TypeScript sources (tests, `tsx`), the thread loads `merge-worker.ts` through
 * tsx; from the build it loads `merge-worker.js`. The thread is unref'd: it never keeps the
 * process alive. If it dies, pending merges reject and the next merge starts a new thread.
 */
export function createWorkerMerger(): Merger {
  const isSource = import.meta.url.endsWith('.ts')
  const script = new URL(isSource ? './merge-worker.ts' : './merge-worker.js', import.meta.url)
  let worker: Worker | undefined
  let nextId = 1
  let isClosed = false
  const pending = new Map<number, Pending>()

  function failAll(error: Error): void {
    for (const job of pending.values()) job.reject(error)
    pending.clear()
  }

  /** From sources, tsx's API loads the TypeScript thread script (execArgv loaders do not reach threads). */
  function startFromSource(): Worker {
    // The package root, then its ESM API file: `require.resolve('tsx/esm/api')` gives the CJS one.
    const tsxRoot = path.dirname(createRequire(import.meta.url).resolve('tsx/package.json'))
    const tsxApi = pathToFileURL(path.join(tsxRoot, 'dist/esm/api/index.mjs')).href
    const code = `import(${JSON.stringify(tsxApi)}).then((api) => api.tsImport(${JSON.stringify(script.href)}, ${JSON.stringify(import.meta.url)}))`
    return new Worker(code, { eval: true })
  }

  function start(): Worker {
    const started = isSource ? startFromSource() : new Worker(script)
    started.unref()
    started.on('message', (response: MergeResponse) => {
      const job = pending.get(response.id)
      if (job === undefined) return
      pending.delete(response.id)
      if ('error' in response) job.reject(new Error(`merge failed: ${response.error}`))
      else job.resolve(response.state)
    })
    started.on('error', (error) => {
      if (worker === started) worker = undefined
      failAll(error)
    })
    started.on('exit', (code) => {
      if (worker === started) worker = undefined
      failAll(new Error(`compaction thread exited with code ${code}`))
    })
    return started
  }

  /** Sends packed updates to the thread by transfer: `packed` is detached afterwards. */
  function send(packed: PackedUpdates): Promise<Uint8Array> {
    if (isClosed) return Promise.reject(new Error('merger closed'))
    worker ??= start()
    const thread = worker
    const id = nextId++
    return new Promise<Uint8Array>((resolve, reject) => {
      pending.set(id, { resolve, reject })
      const request: MergeRequest = { id, buffer: packed.buffer, ends: packed.ends }
      // Transfer both buffers: no copy of the bytes nor of the offsets (a plain array of 100,000
      // ends would be cloned on this thread).
      const transfer =
        packed.ends.buffer === packed.buffer ? [packed.buffer] : [packed.buffer, packed.ends.buffer]
      thread.postMessage(request, transfer as ArrayBuffer[])
    })
  }

  return {
    merge(updates) {
      if (isClosed) return Promise.reject(new Error('merger closed'))
      // The caller keeps its arrays: pack a copy, which is ours to transfer.
      return send(packUpdates(updates))
    },
    mergePacked: send,
    async close() {
      isClosed = true
      const thread = worker
      worker = undefined
      failAll(new Error('merger closed'))
      if (thread !== undefined) await thread.terminate()
    },
  }
}
