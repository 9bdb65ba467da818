// The contract between the real-client test page (editor-page.ts, bundled for Chromium) and the
// tests that drive it through playwright: which editor and provider to start, and what it reports.

/** The stock y-websocket releases the suite runs, by the package alias they are installed under. */
export const ProviderVersion = {
  /** `y-websocket-classic` = y-websocket 1.5.4. */
  V1: 'v1',
  /** `y-websocket-v2` = y-websocket 2.1.0. */
  V2: 'v2',
  /** `y-websocket` 3.1.0. */
  V3: 'v3',
} as const
export type ProviderVersion = (typeof ProviderVersion)[keyof typeof ProviderVersion]

export const EditorKind = {
  /** Tiptap 3 (ProseMirror) bound to a Y.XmlFragment with Collaboration + CollaborationCaret. */
  Tiptap: 'tiptap',
  /** CodeMirror 6 bound to a Y.Text with y-codemirror.next's yCollab. */
  CodeMirror: 'codemirror',
} as const
export type EditorKind = (typeof EditorKind)[keyof typeof EditorKind]

/** What `window.harness.start` is told. */
export interface StartOptions {
  /** ws://127.0.0.1:PORT of the Colloquy server. */
  readonly serverUrl: string
  readonly room: string
  readonly provider: ProviderVersion
  readonly editor: EditorKind
  /** Shown to the others as this page's caret label. */
  readonly user: { readonly name: string; readonly color: string }
  /** Keep the document in IndexedDB (y-indexeddb) under the room's name too. */
  readonly indexeddb: boolean
}

/** A snapshot of the page, read by the tests. */
export interface PageState {
  /** The provider's last `status` event: `connecting`, `connected` or `disconnected`. */
  readonly status: string
  /** The provider's own flag: its WebSocket is open. */
  readonly wsconnected: boolean
  readonly synced: boolean
  /** Every close code this page's WebSocket saw, in order. */
  readonly closeCodes: readonly number[]
  /** The text the editor shows (Tiptap: blocks joined by newlines). */
  readonly editorText: string
  /** The shared Yjs type as a string (XML for Tiptap's fragment, the text for CodeMirror). */
  readonly docContent: string
  /** Names of the other users in this page's awareness. */
  readonly peers: readonly string[]
  /** Names on the remote carets the editor renders. */
  readonly carets: readonly string[]
}

/** What the page exposes as `window.harness`. */
export interface Harness {
  /** Creates the editor and the provider; resolves once the document loaded from IndexedDB (if used). */
  start(options: StartOptions): Promise<void>
  state(): PageState
  /** The provider's own connect()/disconnect() (what an app's offline switch calls). */
  connect(): void
  disconnect(): void
  /** Dispatches a real `paste` event with `text` at the end of the editor's content. */
  paste(text: string): void
  /** Moves the caret to a position (0 = start), as a click would. */
  moveCaret(fraction: number): void
  /** The shared type as stored in IndexedDB, read through a second y-indexeddb instance. */
  storedContent(): Promise<string>
  /** Flushes y-indexeddb and destroys provider and editor. */
  destroy(): Promise<void>
}

/**
 * The page's global as the Node side types it inside `page.evaluate` callbacks (they run in the
 * page, where `globalThis` is `window`; the Node typecheck has no DOM types).
 */
export interface HarnessGlobal {
  readonly harness: Harness
}
