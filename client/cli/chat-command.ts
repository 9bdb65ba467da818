// `colloquy chat <session>`: a terminal client that shows the conversation live (streaming replies,
// who is here, connection status) and sends what you type as a user message.

import readline from 'node:readline'
import {
  type Author,
  appendMessage,
  type MessageView,
  observeMessages,
  readMessages,
  requestCancel,
  touchParticipant,
} from '../../shared/conversation/index.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { createNodeSyncClient } from '../node.js'
import type { ConnectionStatus } from '../sync-client.js'
import { parseFlags, serverUrl, UsageError } from './args.js'
import { describeRefusal, refusalAwareWebSocket, type UpgradeRefusal } from './upgrade-refusal.js'

export const usage = `Usage: colloquy chat <session> [--url ws://127.0.0.1:8080] [--name NAME] [--id ID] [--token TOKEN]

Shows the conversation live and sends each line you type as a user message.
  /cancel   cancel the reply being streamed      /quit   leave (or Ctrl-D)
Environment: COLLOQUY_URL, COLLOQUY_TOKEN, USER (default name).
`

interface Presence {
  user?: { id?: unknown; name?: unknown; kind?: unknown }
  state?: unknown
}

function describeMessage(message: MessageView): string {
  const who = message.author.name ?? message.author.id
  const kind = message.author.kind === 'agent' ? ' (agent)' : ''
  const marks: Record<MessageView['status'], string> = {
    streaming: ' ▍',
    complete: '',
    cancelled: ' [cancelled]',
    error: ` [error: ${message.error ?? 'unknown'}]`,
  }
  return `${who}${kind}: ${message.content}${marks[message.status]}`
}

/** Runs the chat until /quit, Ctrl-D or a signal; resolves the exit code. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseFlags(argv, ['url', 'name', 'id', 'token'])
  const sessionId = positionals[0]
  if (sessionId === undefined || !isValidSessionId(sessionId)) {
    throw new UsageError('a session id (1-128 characters of A-Za-z0-9._:-) is required')
  }
  const name = values.name ?? env.USER ?? 'you'
  const author: Author = { id: values.id ?? `device:${name}`, kind: 'device', name }
  const token = values.token ?? env.COLLOQUY_TOKEN
  const output = process.stdout
  const isTty = output.isTTY === true
  // A refused upgrade (bad token, refused id, 429) is not a network failure: say so and stop.
  let refuse: (refusal: UpgradeRefusal) => void = () => {}
  let earlyRefusal: UpgradeRefusal | undefined
  const client = createNodeSyncClient({
    url: serverUrl(values.url, env),
    sessionId,
    WebSocket: refusalAwareWebSocket((refusal) => {
      earlyRefusal ??= refusal
      refuse(refusal)
    }),
    ...(token === undefined ? {} : { token: () => token }),
  })
  client.awareness.setLocalState({ user: author, state: 'idle' })
  let status: ConnectionStatus = client.status
  let statusNote = ''
  const printed = new Set<string>()

  const rl = readline.createInterface({ input: process.stdin, output, prompt: '> ' })

  const render = (): void => {
    const messages = readMessages(client.doc)
    if (!isTty) {
      // Piped: print each message once it is finished, as plain lines.
      for (const message of messages) {
        if (message.status !== 'streaming' && !printed.has(message.id)) {
          printed.add(message.id)
          output.write(`${describeMessage(message)}\n`)
        }
      }
      return
    }
    const here = [...client.awareness.getStates().values()]
      .map((state) => state as Presence)
      .filter((state) => state.user !== undefined)
      .map((state) => {
        const who = typeof state.user?.name === 'string' ? state.user.name : String(state.user?.id ?? '?')
        return state.user?.kind === 'agent' ? `${who} (agent: ${String(state.state ?? 'idle')})` : who
      })
    const rows = Math.max(10, output.rows ?? 24)
    const header = `Colloquy · ${sessionId} · ${status}${statusNote} · here: ${here.join(', ') || 'nobody'}`
    const lines = messages.flatMap((message) => describeMessage(message).split('\n'))
    const visible = lines.slice(-(rows - 4))
    output.write(
      `\x1b[2J\x1b[H${header}\n${'─'.repeat(Math.min(80, output.columns ?? 80))}\n${visible.join('\n')}\n`,
    )
    rl.prompt(true)
  }

  let renderTimer: NodeJS.Timeout | undefined
  const scheduleRender = (): void => {
    renderTimer ??= setTimeout(() => {
      renderTimer = undefined
      render()
    }, 30)
  }

  const offMessages = observeMessages(client.doc, scheduleRender)
  client.awareness.on('change', scheduleRender)
  const offStatus = client.on('status', (event) => {
    status = event.status
    statusNote = event.status === 'connected' ? '' : event.reason === undefined ? '' : ` (${event.reason})`
    scheduleRender()
  })
  const offSynced = client.on('synced', () => {
    touchParticipant(client.doc, author)
    scheduleRender()
  })

  return new Promise<number>((resolve) => {
    let isClosing = false
    /** Stops listening and rendering, once; false when already closing. */
    const stop = (): boolean => {
      if (isClosing) return false
      isClosing = true
      clearTimeout(renderTimer)
      offMessages()
      offStatus()
      offSynced()
      rl.close()
      return true
    }
    const close = (): void => {
      if (!stop()) return
      // Give the last message a bounded chance to become durable, then leave.
      let flushTimer: NodeJS.Timeout | undefined
      const timeout = new Promise<void>((done) => {
        flushTimer = setTimeout(done, 3_000)
      })
      Promise.race([client.whenFlushed(), timeout])
        .catch(() => undefined)
        .then(() => {
          clearTimeout(flushTimer)
          return client.destroy()
        })
        .then(
          () => {
            if (isTty) output.write('\n')
            resolve(0)
          },
          () => resolve(1),
        )
    }
    rl.on('line', (line) => {
      const text = line.trim()
      if (text === '/quit') return close()
      if (text === '/cancel') {
        const streaming = [...readMessages(client.doc)].reverse().find((m) => m.status === 'streaming')
        if (streaming !== undefined) requestCancel(client.doc, streaming.id, author)
      } else if (text.length > 0) {
        appendMessage(client.doc, { role: 'user', author, content: text })
      }
      scheduleRender()
    })
    rl.on('close', close)
    process.once('SIGTERM', close)
    refuse = (refusal) => {
      if (!stop()) return
      if (isTty) output.write('\n')
      process.stderr.write(`colloquy chat: ${describeRefusal(refusal)}\n`)
      // Nothing reached the server: there is nothing to flush.
      client.destroy().then(
        () => resolve(1),
        () => resolve(1),
      )
    }
    if (earlyRefusal !== undefined) refuse(earlyRefusal)
    else render()
  })
}
