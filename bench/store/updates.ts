// Real small Yjs updates for the store benchmark: one Y.Doc per session, short inserts into a Y.Text.
// Generated before a scenario starts, so the timed loop measures storage, not Yjs.

import * as Y from 'yjs'

const WORDS = [
  'the tool said ',
  'calling search ',
  'result: ok ',
  'thinking more ',
  'next step is ',
  'user replied ',
]

/**
 * Makes `perSession` consecutive updates for each of `sessions` documents, each one insert of a
 * short word at the end of a Y.Text, captured from `doc.on('update')`.
 */
export function makeSessionUpdates(sessions: number, perSession: number, seed = 1): Uint8Array[][] {
  const pools: Uint8Array[][] = []
  for (let s = 0; s < sessions; s++) {
    const doc = new Y.Doc()
    // A fixed client id per session keeps the update sizes (varint client ids) reproducible.
    doc.clientID = 1_000_000 + seed * 10_000 + s
    const pool: Uint8Array[] = []
    doc.on('update', (update: Uint8Array) => pool.push(update))
    const text = doc.getText('t')
    for (let i = 0; i < perSession; i++) text.insert(text.length, WORDS[(s + i) % WORDS.length]!)
    doc.destroy()
    pools.push(pool)
  }
  return pools
}
