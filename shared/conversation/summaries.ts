// The `summaries` array: context-compression entries, each standing for every message up to one
// message id. Choosing which summary a model sees is context-window.ts's job.

import * as Y from 'yjs'
import {
  type Author,
  isPeerKind,
  newId,
  SCHEMA_VERSION,
  SummaryKey,
  type SummaryView,
  summariesArray,
} from './schema.js'
import { ensureSessionCreated } from './session-info.js'
import {
  parseAuthor,
  readEntryId,
  readFiniteNumber,
  readString,
  readText,
  storedAuthor,
} from './tolerant-read.js'

/** What {@link addSummary} needs. */
export interface AddSummaryInput {
  /** The id of the newest message the summary stands for. */
  readonly coversThroughId: string
  readonly text: string
  readonly author: Author
  /** The summary's size as its writer counted it; informational (contextWindow counts for itself). */
  readonly tokens?: number
  /** Default: a new random UUID. */
  readonly id?: string
  /** Milliseconds since the epoch; default `Date.now()`. */
  readonly createdAt?: number
}

/**
 * Reads one summary map, filling documented defaults for anything missing or ill-typed.
 *
 * @remarks Never throws. id → derived from the Yjs item; coversThroughId → `''` (a summary that
 * covers nothing known, which contextWindow ignores); text → `''` (a string or a `Y.Text`);
 * author → the unknown author; createdAt → `0`; tokens left out unless a finite number ≥ 0.
 */
export function readSummaryMap(map: Y.Map<unknown>, index: number): SummaryView {
  const tokens = readFiniteNumber(map.get(SummaryKey.Tokens))
  return {
    id: readEntryId(map, index),
    coversThroughId: readString(map.get(SummaryKey.CoversThroughId)) ?? '',
    text: readText(map.get(SummaryKey.Text)),
    author: parseAuthor(map.get(SummaryKey.Author)),
    createdAt: readFiniteNumber(map.get(SummaryKey.CreatedAt)) ?? 0,
    ...(tokens === undefined || tokens < 0 ? {} : { tokens }),
  }
}

/** Reads every summary in array order (the order they were added); entries that are not maps are skipped. */
export function readSummaries(doc: Y.Doc): SummaryView[] {
  const views: SummaryView[] = []
  summariesArray(doc).forEach((entry, index) => {
    if (entry instanceof Y.Map) views.push(readSummaryMap(entry, index))
  })
  return views
}

/**
 * Appends a summary in one transaction and returns its view.
 *
 * @remarks The covered message need not exist yet on this replica (the summariser may be ahead of
 * it); until it does, contextWindow ignores the summary. The text is a plain string: summaries are
 * written whole, not streamed.
 */
export function addSummary(doc: Y.Doc, input: AddSummaryInput, origin?: unknown): SummaryView {
  if (!isPeerKind(input.author.kind)) throw new TypeError(`unknown peer kind: ${String(input.author.kind)}`)
  const array = summariesArray(doc)
  const map = new Y.Map<unknown>()
  const createdAt = input.createdAt ?? Date.now()
  let index = 0
  doc.transact(() => {
    index = array.length
    array.push([map])
    map.set(SummaryKey.Id, input.id ?? newId())
    map.set(SummaryKey.CoversThroughId, input.coversThroughId)
    map.set(SummaryKey.Text, input.text)
    map.set(SummaryKey.Author, storedAuthor(input.author))
    map.set(SummaryKey.CreatedAt, createdAt)
    if (input.tokens !== undefined) map.set(SummaryKey.Tokens, input.tokens)
    map.set(SummaryKey.SchemaVersion, SCHEMA_VERSION)
    ensureSessionCreated(doc, createdAt)
  }, origin)
  return readSummaryMap(map, index)
}
