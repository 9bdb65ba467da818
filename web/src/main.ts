// The web app's entry: routes the URL hash to a screen (`#/` the session list, `#/s/<id>` a
// conversation) and keeps this browser's identity.

import './styles.css'
import { mountConversation, type Screen } from './conversation-view.js'
import { adoptPageToken, loadIdentity } from './identity.js'
import { setPendingTitle, TitleMode, takePendingTitle } from './pending-titles.js'
import { mountSessionList } from './session-list.js'

// First of all: the token leaves the URL before anything can link to, log or share it.
adoptPageToken()

const root = document.getElementById('app')
if (root === null) throw new Error('no #app element')
const app: HTMLElement = root

let identity = loadIdentity()
let current: Screen | undefined

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
    const title = takePendingTitle(sessionId)
    current = mountConversation(app, {
      sessionId,
      identity,
      ...(title === undefined
        ? {}
        : { title: title.title, isTitleReplaced: title.mode === TitleMode.Replace }),
    })
    return
  }
  current = mountSessionList(app, {
    identity,
    onIdentity: (next) => {
      identity = next
    },
    open: (sessionId, isNew) => {
      if (isNew) setPendingTitle(sessionId, sessionId, TitleMode.IfMissing)
      location.hash = `#/s/${encodeURIComponent(sessionId)}`
    },
  })
}

window.addEventListener('hashchange', route)
route()
