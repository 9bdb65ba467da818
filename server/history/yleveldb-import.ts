// Import of a y-leveldb directory (what the classic y-websocket server writes with YPERSISTENCE):
// every document becomes a Colloquy session. Reads the directory only; never writes into it.

import { ClassicLevel } from 'classic-level'
import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { importState } from './snapshots.js'
import type { HistoryDeps } from './state.js'

/** y-leveldb's key element tags (`YEncodingString`, `YEncodingUint32` in y-leveldb 0.1 and 0.2). */
const TAG_STRING = 0
const TAG_UINT32 = 1

/**
 * Decodes a y-leveldb key: a sequence of (tag, value) where tag 0 is a lib0 var-string and tag 1 a
 * 4-byte big-endian integer. Document updates are `["v1", docName, "update", clock]`.
 */
export function decodeYLeveldbKey(key: Uint8Array): (string | number)[] {
  const decoder = decoding.createDecoder(key)
  const parts: (string | number)[] = []
  while (decoding.hasContent(decoder)) {
    const tag = decoding.readUint8(decoder)
    if (tag === TAG_STRING) parts.push(decoding.readVarString(decoder))
    else if (tag === TAG_UINT32) {
      const bytes = decoding.readUint8Array(decoder, 4)
      parts.push(((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0)
    } else throw new RangeError(`unknown y-leveldb key tag ${tag}`)
  }
  return parts
}

/** One document of the directory and what became of it. */
export interface ImportedDocument {
  readonly docName: string
  readonly sessionId: string
  /** Stored y-leveldb updates the document was built from. */
  readonly updates: number
  readonly stateBytes?: number
  /** Set when the document was not imported. */
  readonly error?: { readonly code: string; readonly message: string }
}

/** Options of {@link importYLeveldbDirectory}. */
export interface YLeveldbImportOptions {
  /** Prepended to each document name to form the session id (default ''). */
  readonly sessionPrefix?: string
  /** Called after each document, imported or not. */
  readonly onDocument?: (result: ImportedDocument) => void
}

/**
 * Imports every document of the y-leveldb database at `location` as a new session.
 *
 * @remarks
 * - The directory is opened read-only in spirit: we iterate its keys and never write (y-leveldb's
 *   own `getYDoc` would merge and rewrite long logs in place).
 * - A document's updates (`["v1", name, "update", clock]`, in clock order) are applied to one
 *   Y.Doc and stored as the new session's checkpoint at seq 1, exactly like `importState`.
 * - A document whose name is not a valid session id, or whose session already exists, is
 *   reported in the result and skipped; the others are still imported.
 * - The classic server must be stopped (LevelDB allows one process per directory).
 */
export async function importYLeveldbDirectory(
  deps: HistoryDeps,
  location: string,
  options: YLeveldbImportOptions = {},
): Promise<ImportedDocument[]> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
    keyEncoding: 'view',
    valueEncoding: 'view',
    createIfMissing: false,
  })
  try {
    await db.open()
  } catch (error) {
    throw new ColloquyError('bad-request', `cannot open y-leveldb directory ${location}`, { cause: error })
  }
  const results: ImportedDocument[] = []
  const prefix = options.sessionPrefix ?? ''
  let current: { name: string; doc: Y.Doc; updates: number } | undefined

  const finish = async (): Promise<void> => {
    if (current === undefined) return
    const { name, doc, updates } = current
    current = undefined
    const sessionId = `${prefix}${name}`
    let result: ImportedDocument
    try {
      if (!isValidSessionId(sessionId)) {
        throw new ColloquyError(
          'invalid-session-id',
          `document name ${JSON.stringify(name)} is not a valid session id`,
        )
      }
      const created = await importState(deps, sessionId, Y.encodeStateAsUpdate(doc))
      result = { docName: name, sessionId, updates, stateBytes: created.stateBytes }
    } catch (error) {
      const err = toColloquyError(error)
      result = { docName: name, sessionId, updates, error: { code: err.code, message: err.message } }
    } finally {
      doc.destroy()
    }
    results.push(result)
    options.onDocument?.(result)
  }

  try {
    const iterator = db.iterator()
    try {
      for (;;) {
        const chunk = await iterator.nextv(1024)
        if (chunk.length === 0) break
        for (const [key, value] of chunk) {
          let parts: (string | number)[]
          try {
            parts = decodeYLeveldbKey(key)
          } catch {
            continue // not a y-leveldb key (another application's data): not ours to import
          }
          const [version, name, kind] = parts
          if (version !== 'v1' || typeof name !== 'string' || kind !== 'update') continue
          if (current?.name !== name) {
            await finish()
            current = { name, doc: new Y.Doc(), updates: 0 }
          }
          Y.applyUpdate(current.doc, value)
          current.updates++
        }
      }
    } finally {
      await iterator.close()
    }
    await finish()
  } finally {
    current?.doc.destroy()
    await db.close()
  }
  return results
}
