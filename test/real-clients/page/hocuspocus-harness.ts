// The contract between the Hocuspocus real-client page (hocuspocus-page.ts, bundled for Chromium)
// and the tests that drive it through playwright. No DOM types here: the Node side imports it.

/** What `window.harness.start` is told. */
export interface HocuspocusStartOptions {
  /** ws://127.0.0.1:PORT/hocuspocus of the Colloquy server. */
  readonly serverUrl: string
  /** The documents to open on the page's one socket, each with its own token. */
  readonly documents: readonly { readonly name: string; readonly token: string }[]
  /** Shown to the others as this page's caret label. */
  readonly user: { readonly name: string; readonly color: string }
}

/** One document of the page, as the tests read it. */
export interface HocuspocusDocumentState {
  readonly name: string
  /** The scope of the server's `authenticated` message, or `denied: <reason>`. */
  readonly auth: string
  readonly synced: boolean
  readonly unsyncedChanges: number
  /** The text the editor shows (blocks joined by newlines). */
  readonly editorText: string
  /** Names of the other users in this document's awareness. */
  readonly peers: readonly string[]
  /** Names on the remote carets the editor renders. */
  readonly carets: readonly string[]
}

/** A snapshot of the page. */
export interface HocuspocusPageState {
  /** The socket's last `status` event: `connecting`, `connected` or `disconnected`. */
  readonly status: string
  /** Close codes of the socket, in order. */
  readonly closeCodes: readonly number[]
  readonly documents: readonly HocuspocusDocumentState[]
}

/** What the page exposes as `window.harness`. */
export interface HocuspocusHarness {
  start(options: HocuspocusStartOptions): Promise<void>
  state(): HocuspocusPageState
  /** Real typing goes through playwright; this places the caret at the end of document `index`. */
  focusEnd(index: number): void
  destroy(): void
}

/** The page's global as the Node side types it inside `page.evaluate` callbacks. */
export interface HocuspocusHarnessGlobal {
  readonly harness: HocuspocusHarness
}
