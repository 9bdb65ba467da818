// The page the real-client suite opens in Chromium: a Tiptap 3 or CodeMirror 6 editor bound to a
// Yjs document through a stock y-websocket provider (1.5.4, 2.1.0 or 3.1.0), optionally kept in
// IndexedDB by y-indexeddb. Bundled by esbuild in the test; playwright drives it via `window.harness`.

import { Editor } from '@tiptap/core'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import StarterKit from '@tiptap/starter-kit'
import { basicSetup, EditorView } from 'codemirror'
import { yCollab } from 'y-codemirror.next'
import { IndexeddbPersistence } from 'y-indexeddb'
import { WebsocketProvider as ProviderV3 } from 'y-websocket'
import { WebsocketProvider as ProviderV1 } from 'y-websocket-classic'
import { WebsocketProvider as ProviderV2 } from 'y-websocket-v2'
import * as Y from 'yjs'
import type { Harness, PageState, StartOptions } from './harness.js'

/** The subset of the three providers' API the page uses (their classes differ only in details). */
interface Provider {
  readonly awareness: ProviderV3['awareness']
  readonly wsconnected: boolean
  readonly synced: boolean
  on(event: string, listener: (...args: never[]) => void): void
  connect(): void
  disconnect(): void
  destroy(): void
}

/** The field names of the shared types; Tiptap's Collaboration defaults to `default`. */
const TIPTAP_FIELD = 'default'
const CODEMIRROR_FIELD = 'codemirror'

function createProvider(options: StartOptions, doc: Y.Doc): Provider {
  const common = { connect: true }
  switch (options.provider) {
    case 'v1':
      return new ProviderV1(options.serverUrl, options.room, doc, common) as unknown as Provider
    case 'v2':
      return new ProviderV2(options.serverUrl, options.room, doc, common) as unknown as Provider
    case 'v3':
      return new ProviderV3(options.serverUrl, options.room, doc, common) as unknown as Provider
  }
}

function contentOf(doc: Y.Doc, options: StartOptions): string {
  return options.editor === 'tiptap'
    ? doc.getXmlFragment(TIPTAP_FIELD).toString()
    : doc.getText(CODEMIRROR_FIELD).toString()
}

function textsOf(selector: string): string[] {
  return [...document.querySelectorAll(selector)].map((element) => element.textContent ?? '')
}

function createHarness(): Harness {
  let options: StartOptions | undefined
  let doc: Y.Doc | undefined
  let provider: Provider | undefined
  let persistence: IndexeddbPersistence | undefined
  let tiptap: Editor | undefined
  let codemirror: EditorView | undefined
  let status = 'connecting'
  const closeCodes: number[] = []

  const started = (): { options: StartOptions; doc: Y.Doc; provider: Provider } => {
    if (options === undefined || doc === undefined || provider === undefined) throw new Error('not started')
    return { options, doc, provider }
  }

  /** The element that receives input, with the caret placed at `position` (clamped). */
  const placeCaret = (position: number): HTMLElement => {
    if (tiptap !== undefined) {
      const end = tiptap.state.doc.content.size - 1
      // ProseMirror's own focus, not Tiptap's focus command: that one waits for an animation frame,
      // and keys typed meanwhile go nowhere.
      tiptap.view.focus()
      tiptap.commands.setTextSelection(Math.max(1, Math.min(position, end)))
      return tiptap.view.dom
    }
    if (codemirror !== undefined) {
      codemirror.focus()
      codemirror.dispatch({
        selection: { anchor: Math.max(0, Math.min(position, codemirror.state.doc.length)) },
      })
      return codemirror.contentDOM
    }
    throw new Error('not started')
  }

  const length = (): number =>
    tiptap !== undefined ? tiptap.state.doc.content.size : (codemirror?.state.doc.length ?? 0)

  return {
    async start(startOptions) {
      options = startOptions
      doc = new Y.Doc()
      if (startOptions.indexeddb) {
        persistence = new IndexeddbPersistence(startOptions.room, doc)
        await persistence.whenSynced
      }
      provider = createProvider(startOptions, doc)
      provider.on('status', (event: { status: string }) => {
        status = event.status
      })
      provider.on('connection-close', (event: CloseEvent | null) => {
        if (event !== null) closeCodes.push(event.code)
      })
      const mount = document.createElement('div')
      mount.id = 'editor'
      document.body.append(mount)
      const user = startOptions.user
      if (startOptions.editor === 'tiptap') {
        tiptap = new Editor({
          element: mount,
          extensions: [
            // Collaboration brings its own undo history: StarterKit's would conflict.
            StarterKit.configure({ undoRedo: false }),
            Collaboration.configure({ document: doc, field: TIPTAP_FIELD }),
            CollaborationCaret.configure({ provider, user }),
          ],
        })
      } else {
        const ytext = doc.getText(CODEMIRROR_FIELD)
        provider.awareness.setLocalStateField('user', {
          name: user.name,
          color: user.color,
          colorLight: '#eeeeee',
        })
        codemirror = new EditorView({
          parent: mount,
          doc: ytext.toString(),
          extensions: [basicSetup, yCollab(ytext, provider.awareness)],
        })
      }
    },

    state(): PageState {
      const { options, doc, provider } = started()
      const self = provider.awareness.clientID
      const peers = [...provider.awareness.getStates().entries()]
        .filter(([id]) => id !== self)
        .map(([, state]) => String((state as { user?: { name?: string } }).user?.name ?? ''))
      return {
        status,
        wsconnected: provider.wsconnected,
        synced: provider.synced,
        closeCodes: [...closeCodes],
        editorText:
          tiptap !== undefined
            ? tiptap.getText({ blockSeparator: '\n' })
            : (codemirror?.state.doc.toString() ?? ''),
        docContent: contentOf(doc, options),
        peers,
        carets: textsOf(options.editor === 'tiptap' ? '.collaboration-carets__label' : '.cm-ySelectionInfo'),
      }
    },

    connect() {
      started().provider.connect()
    },

    disconnect() {
      started().provider.disconnect()
    },

    paste(text) {
      const target = placeCaret(length())
      const data = new DataTransfer()
      data.setData('text/plain', text)
      target.dispatchEvent(
        new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }),
      )
    },

    moveCaret(fraction) {
      placeCaret(Math.round(length() * fraction))
    },

    async storedContent() {
      const { options } = started()
      const copy = new Y.Doc()
      const reader = new IndexeddbPersistence(options.room, copy)
      await reader.whenSynced
      const content = contentOf(copy, options)
      await reader.destroy()
      copy.destroy()
      return content
    },

    async destroy() {
      provider?.destroy()
      tiptap?.destroy()
      codemirror?.destroy()
      await persistence?.destroy()
      doc?.destroy()
    },
  }
}

;(window as unknown as { harness: Harness }).harness = createHarness()
