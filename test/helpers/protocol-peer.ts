// A minimal protocol peer for tests: a Y.Doc that speaks the wire protocol over any send function
// (memory or WebSocket) and records what it receives, including acks.

import * as Y from 'yjs'
import {
  decodeMessage,
  decodeSyncStatusCounter,
  encodeSyncStatus,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  type Message,
} from '../../shared/protocol/message.js'

export const REMOTE = Symbol('remote')

export interface ProtocolPeerOptions {
  /** Send local doc changes as sync updates automatically (default true). */
  readonly autoSend?: boolean
  readonly doc?: Y.Doc
}

/** A test peer: call `handle` with every frame from the server, it answers through `send`. */
export class ProtocolPeer {
  readonly doc: Y.Doc
  readonly messages: Message[] = []
  readonly acks: number[] = []
  private ackListeners: (() => void)[] = []
  private send: (frame: Uint8Array) => void
  private nextCounter = 1

  constructor(send: (frame: Uint8Array) => void, options: ProtocolPeerOptions = {}) {
    this.send = send
    this.doc = options.doc ?? new Y.Doc()
    if (options.autoSend ?? true) {
      this.doc.on('update', (update: Uint8Array, origin: unknown) => {
        if (origin !== REMOTE) this.send(encodeSyncUpdate(update))
      })
    }
  }

  /** Points the peer at a new connection (after a reconnect). */
  rebind(send: (frame: Uint8Array) => void): void {
    this.send = send
  }

  /** Starts the handshake: sends our state vector. */
  start(): void {
    this.send(encodeSyncStep1(Y.encodeStateVector(this.doc)))
  }

  /** Handles one frame from the server. */
  handle(frame: Uint8Array): void {
    const message = decodeMessage(frame)
    this.messages.push(message)
    switch (message.type) {
      case 'sync-step1':
        this.send(encodeSyncStep2(Y.encodeStateAsUpdate(this.doc, message.stateVector)))
        return
      case 'sync-step2':
      case 'sync-update':
        Y.applyUpdate(this.doc, message.update, REMOTE)
        return
      case 'sync-status': {
        const counter = decodeSyncStatusCounter(message.payload)
        if (counter !== undefined) this.acks.push(counter)
        const listeners = this.ackListeners
        this.ackListeners = []
        for (const listener of listeners) listener()
        return
      }
      default:
        return
    }
  }

  /** Sends a sync-status with the next counter and returns that counter. */
  requestAck(): number {
    const counter = this.nextCounter++
    this.send(encodeSyncStatus(counter))
    return counter
  }

  /** Resolves once `counter` has been acknowledged (rejects after `timeoutMs`). */
  whenAcked(counter: number, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`ack ${counter} not received in ${timeoutMs} ms`)),
        timeoutMs,
      )
      const check = (): void => {
        if (this.acks.includes(counter)) {
          clearTimeout(timer)
          resolve()
        } else this.ackListeners.push(check)
      }
      check()
    })
  }

  /** Sends an arbitrary frame (hostile-input tests). */
  sendRaw(frame: Uint8Array): void {
    this.send(frame)
  }
}
