// Where a growing Markdown text can be cut so that what comes before never changes meaning: after a
// blank line outside a code fence. Pure and incremental (each call scans only the lines added), so
// the renderer parses the finished blocks once and only the block being written again.

/** A fence line: up to three spaces, then three or more backticks or tildes. */
const FENCE = /^ {0,3}(`{3,}|~{3,})/

/** Follows one growing text and reports how much of it is finished blocks. */
export interface BlockScanner {
  /**
   * Reads `content` (the previous content plus what was added) and returns the length of its
   * finished prefix: up to and including the last blank line outside a code fence.
   */
  advance(content: string): number
}

/** Creates a scanner for a text that only grows (start a new one when it does not). */
export function createBlockScanner(): BlockScanner {
  /** Length of the finished prefix. */
  let committed = 0
  /** The start of the first line not yet scanned. */
  let scanned = 0
  /** The fence open at `scanned` (its marker), if any. */
  let fence: string | undefined
  return {
    advance(content) {
      let lineStart = scanned
      for (let newline = content.indexOf('\n', lineStart); newline !== -1; ) {
        const line = content.slice(lineStart, newline)
        const marker = FENCE.exec(line)?.[1]
        if (fence === undefined) {
          if (marker !== undefined) fence = marker
          else if (line.trim() === '') committed = newline + 1
        } else if (
          marker !== undefined &&
          marker[0] === fence[0] &&
          marker.length >= fence.length &&
          line.trim() === marker
        ) {
          fence = undefined
        }
        lineStart = newline + 1
        newline = content.indexOf('\n', lineStart)
      }
      scanned = lineStart
      return committed
    },
  }
}
