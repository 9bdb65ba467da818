// Export, import and fork of session snapshots: a Yjs update or the versioned conversation JSON
// out; a new session created from one in. A new session is written as one checkpoint at seq 1.

import * as Y from 'yjs'
import { ColloquyError } from '../../shared/errors.js'
import {
  buildConversationExport,
  type ConversationExport,
  docFromConversationExport,
  parseConversationExport,
} from '../../shared/export/conversation-export.js'
import { validateUpdate } from '../../shared/protocol/yjs-validate.js'
import { isValidSessionId } from '../../shared/session-id.js'
import type { HistoryDeps, HistoryPoint, StateAt, StateAtOptions } from './state.js'
import { readStateAt } from './state.js'

/** The conversation JSON of a session at a point of its history. */
export async function exportConversation(
  deps: HistoryDeps,
  sessionId: string,
  point: HistoryPoint,
  options: StateAtOptions = {},
): Promise<ConversationExport> {
  const state = await readStateAt(deps, sessionId, point, options)
  return conversationOfState(state, (deps.now ?? Date.now)())
}

/** The conversation JSON of a state already read. */
export function conversationOfState(state: StateAt, exportedAt: number): ConversationExport {
  const doc = new Y.Doc()
  try {
    Y.applyUpdate(doc, state.update)
    return buildConversationExport(doc, {
      sessionId: state.sessionId,
      seq: state.seq,
      time: state.time,
      exportedAt,
    })
  } finally {
    doc.destroy()
  }
}

/** What an import or fork created. */
export interface CreatedSession {
  readonly sessionId: string
  /** The seq of the snapshot in the new session (always 1). */
  readonly seq: number
  readonly stateBytes: number
}

function assertTarget(deps: HistoryDeps, targetId: string): void {
  if (!isValidSessionId(targetId)) {
    throw new ColloquyError('invalid-session-id', `invalid session id: ${JSON.stringify(targetId)}`)
  }
  // A loaded session without stored data would hand out seq 1 again: refuse it as existing.
  if (deps.isLoaded?.(targetId) === true) {
    throw new ColloquyError('session-exists', `session ${targetId} is open on this server`)
  }
}

/**
 * Creates session `targetId` from a Yjs update (a binary export, or any full state).
 *
 * @remarks One atomic write: a checkpoint at seq 1 with `requireNew`, so an existing target is
 * refused (`session-exists`) and never overwritten, even by a racing import. Clients that connect
 * afterwards load it like any session; their updates continue at seq 2.
 */
export async function importState(
  deps: HistoryDeps,
  targetId: string,
  update: Uint8Array,
): Promise<CreatedSession> {
  assertTarget(deps, targetId)
  try {
    validateUpdate(update)
  } catch (error) {
    throw new ColloquyError('invalid-export', 'the body is not a Yjs update', { cause: error })
  }
  // Normalise through a document: the stored checkpoint is a state, as STORAGE.md requires.
  const doc = new Y.Doc()
  let state: Uint8Array
  try {
    Y.applyUpdate(doc, update)
    state = Y.encodeStateAsUpdate(doc)
  } finally {
    doc.destroy()
  }
  const time = (deps.now ?? Date.now)()
  await deps.store.putCheckpoint(targetId, { seq: 1, time, state }, { requireNew: true })
  return { sessionId: targetId, seq: 1, stateBytes: state.byteLength }
}

/** Creates session `targetId` from a conversation JSON export (parsed JSON value). */
export async function importConversation(
  deps: HistoryDeps,
  targetId: string,
  json: unknown,
): Promise<CreatedSession> {
  const exported = parseConversationExport(json)
  assertTarget(deps, targetId)
  const doc = docFromConversationExport(exported)
  try {
    return await importState(deps, targetId, Y.encodeStateAsUpdate(doc))
  } finally {
    doc.destroy()
  }
}

/**
 * Creates session `targetId` holding the state of `sourceId` at `seq` (a branch from that turn).
 *
 * @remarks The state must be exact (inside the retention window or at a retained checkpoint);
 * the target must not exist. The source is not changed.
 */
export async function forkSession(
  deps: HistoryDeps,
  sourceId: string,
  targetId: string,
  point: HistoryPoint,
): Promise<CreatedSession & { readonly fromSessionId: string; readonly fromSeq: number }> {
  assertTarget(deps, targetId)
  if (targetId === sourceId)
    throw new ColloquyError('session-exists', 'a session cannot be forked onto itself')
  const state = await readStateAt(deps, sourceId, point)
  const created = await importState(deps, targetId, state.update)
  return { ...created, fromSessionId: sourceId, fromSeq: state.seq }
}
