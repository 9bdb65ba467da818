// The Hocuspocus variant of the real-client page: Tiptap 3 editors (Collaboration +
// CollaborationCaret), one per document, all on one stock HocuspocusProviderWebsocket
// (@hocuspocus/provider 3.4.4) against Colloquy's /hocuspocus path. Bundled by esbuild in the test
// (browser-pages.ts, entry `hocuspocus-page.ts`); playwright drives it via `window.harness`.

import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import { Editor } from '@tiptap/core'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import StarterKit from '@tiptap/starter-kit'
import * as Y from 'yjs'
import type { HocuspocusHarness } from './hocuspocus-harness.js'

interface OpenDocument {
  readonly name: string
  readonly provider: HocuspocusProvider
  readonly editor: Editor
  readonly mount: HTMLElement
  auth: string
}

function createHarness(): HocuspocusHarness {
  let socket: HocuspocusProviderWebsocket | undefined
  let status = 'connecting'
  const closeCodes: number[] = []
  const documents: OpenDocument[] = []

  return {
    async start(options) {
      socket = new HocuspocusProviderWebsocket({ url: options.serverUrl })
      socket.on('status', ({ status: next }: { status: string }) => {
        status = next
      })
      socket.on('close', ({ event }: { event: CloseEvent }) => {
        closeCodes.push(event.code)
      })
      for (const { name, token } of options.documents) {
        const doc = new Y.Doc()
        const provider = new HocuspocusProvider({ websocketProvider: socket, name, document: doc, token })
        const mount = document.createElement('div')
        mount.className = 'editor'
        mount.dataset.document = name
        document.body.append(mount)
        const open: OpenDocument = {
          name,
          provider,
          mount,
          auth: 'pending',
          editor: new Editor({
            element: mount,
            extensions: [
              // Collaboration brings its own undo history: StarterKit's would conflict.
              StarterKit.configure({ undoRedo: false }),
              Collaboration.configure({ document: doc }),
              CollaborationCaret.configure({ provider, user: options.user }),
            ],
          }),
        }
        provider.on('authenticated', ({ scope }: { scope: string }) => {
          open.auth = scope
        })
        provider.on('authenticationFailed', ({ reason }: { reason: string }) => {
          open.auth = `denied: ${reason}`
        })
        provider.attach()
        documents.push(open)
      }
    },

    state() {
      return {
        status,
        closeCodes: [...closeCodes],
        documents: documents.map((open) => {
          const awareness = open.provider.awareness!
          const self = awareness.clientID
          return {
            name: open.name,
            auth: open.auth,
            synced: open.provider.synced,
            unsyncedChanges: open.provider.unsyncedChanges,
            editorText: open.editor.getText({ blockSeparator: '\n' }),
            peers: [...awareness.getStates().entries()]
              .filter(([id]) => id !== self)
              .map(([, state]) => String((state as { user?: { name?: string } }).user?.name ?? '')),
            carets: [...open.mount.querySelectorAll('.collaboration-carets__label')].map(
              (element) => element.textContent ?? '',
            ),
          }
        }),
      }
    },

    focusEnd(index) {
      const editor = documents[index]!.editor
      // ProseMirror's own focus, not Tiptap's focus command (that one waits for an animation frame).
      editor.view.focus()
      editor.commands.setTextSelection(Math.max(1, editor.state.doc.content.size - 1))
    },

    destroy() {
      for (const open of documents) {
        open.provider.destroy()
        open.editor.destroy()
      }
      socket?.destroy()
    },
  }
}

;(window as unknown as { harness: HocuspocusHarness }).harness = createHarness()
