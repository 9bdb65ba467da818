// The web app's entry: routes the URL hash to a screen (`#/` the session list, `#/s/<id>` a
// conversation) and keeps this browser's identity.

import './styles.css'
import { mountConversation, type Screen } from './conversation-view.js'
import { adoptPageToken, loadIdentity } from './identity.js'
import { mountSessionList } from './session-list.js'

// First of all: the token leaves the URL before anything can link to, log or share it.
adoptPageToken()

const root = document.getElementById('app')
if (root === null) throw new Error('no #app element')
const app: HTMLElement = root

let identity = loadIdentity()
let current: Screen | undefined
/** Sessions created from the list in this tab: their title is written once synced. */
const created = new Set<string>()

function route(): void {
  current?.destroy()
  current = undefined
  const match = /^#\/s\/([^?]+)/.exec(location.hash)
  const encoded = match?.[1]
  if (encoded !== undefined) {
    let sessionId: string
    try {
      sessionId = decodeURIComponent(encoded)
    } catch {
      location.hash = '#/'
      return
    }
    const isNew = created.delete(sessionId)
    current = mountConversation(app, { sessionId, identity, ...(isNew ? { title: sessionId } : {}) })
    return
  }
  current = mountSessionList(app, {
    identity,
    onIdentity: (next) => {
      identity = next
    },
    open: (sessionId, isNew) => {
      if (isNew) created.add(sessionId)
      location.hash = `#/s/${encodeURIComponent(sessionId)}`
    },
  })
}

window.addEventListener('hashchange', route)
route()
