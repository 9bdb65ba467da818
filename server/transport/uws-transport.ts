// The uWebSockets.js edge: HTTP upgrade (session id checked before anything is loaded), WebSocket
// callbacks turned into Peer calls, frames decoded and encoded with the socket's wire codec, one
// pub/sub topic per session and protocol, and plain HTTP routes. What a message means is the
// session's business.

import { ColloquyError, toColloquyError } from '../../shared/errors.js'
import { hocuspocusCodec } from '../../shared/protocol/hocuspocus-codec.js'
import type { Message } from '../../shared/protocol/message.js'
import { classicCodec, type WireCodec } from '../../shared/protocol/wire-codec.js'
import { isValidSessionId } from '../../shared/session-id.js'
import { type ClientAddressOf, createClientAddressOf } from '../http/client-address.js'
import type { Logger } from '../observability/log.js'
import { type MessageHandler, type Peer, receiveFrame, type Topic } from '../session/peer.js'
import type { DocumentPeerHooks, MuxSocket, SocketHandler } from './hocuspocus-mux.js'
import type { Uws } from './uws.js'

type UwsApp = ReturnType<Uws['App']>
type UwsSocket = import('@trufflesuite/uws-js-unofficial').WebSocket<SocketData>
type MuxUwsSocket = import('@trufflesuite/uws-js-unofficial').WebSocket<MuxSocketData>
type UwsListenSocket = import('@trufflesuite/uws-js-unofficial').us_listen_socket
type UwsHttpResponse = import('@trufflesuite/uws-js-unofficial').HttpResponse
type UwsHttpRequest = import('@trufflesuite/uws-js-unofficial').HttpRequest

/**
 * What the transport calls for one accepted connection: each binary frame is copied out of uWS's
 * reused buffer, decoded with the socket's codec and handed over as a message (`receive`), or as
 * the error its decoding raised (`refuse`).
 */
export interface ConnectionHandler extends MessageHandler {
  /** The socket closed, for whatever reason. */
  closed(code: number): void
}

/** An upgrade request, copied out of uWS. */
export interface UpgradeRequest {
  readonly sessionId: string
  readonly query: URLSearchParams
  /** The client's address (behind a trusted proxy, from `X-Forwarded-For`). */
  readonly remote: string
  /** The `Host` and `Origin` headers, when sent (checked against the origin policy). */
  readonly host?: string
  readonly origin?: string
}

/** An upgrade request to the Hocuspocus path: no session in the URL (each frame names its document). */
export type SocketUpgradeRequest = Omit<UpgradeRequest, 'sessionId'>

/**
 * The path of the Hocuspocus protocol: `/hocuspocus`, or anything under `/hocuspocus/` (providers
 * often append a document or app name; it is ignored: every frame names its document).
 */
export const HOCUSPOCUS_PATH = '/hocuspocus'

/** How the transport serves the Hocuspocus protocol on {@link HOCUSPOCUS_PATH}. */
export interface HocuspocusEndpoint {
  /** Decides on the socket's upgrade (origin, shutdown, attempts): tokens come per document. */
  readonly admit: (request: SocketUpgradeRequest) => Admission | Promise<Admission>
  /** The handler of one accepted socket: its frames and its close (see hocuspocus-mux.ts). */
  readonly open: (socket: MuxSocket, admitted: unknown) => SocketHandler
}

/** The answer to an upgrade request. */
export type Admission = { readonly error: ColloquyError } | { readonly admitted: unknown }

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/** Options of {@link createUwsTransport}. */
export interface UwsTransportOptions {
  readonly uws: Uws
  readonly host: string
  readonly port: number
  readonly maxMessageBytes: number
  readonly maxBackpressureBytes: number
  readonly logger: Logger
  /**
   * The wire protocol of every socket (default: the classic y-websocket one). One today; a
   * protocol on its own path would pick its codec at the upgrade.
   */
  readonly codec?: WireCodec
  /** The client address from the socket's and `X-Forwarded-For` (absent: the socket's). */
  readonly clientAddressOf?: ClientAddressOf
  /** Called for each new WebSocket; the returned handler receives its frames. */
  readonly accept: (sessionId: string, peer: Peer, admitted: unknown) => ConnectionHandler
  /**
   * Decides on an upgrade request whose session id is valid, before any session is touched: an
   * error is answered with its HTTP status; anything else is handed to `accept` as `admitted`.
   */
  readonly admit: (request: UpgradeRequest) => Admission | Promise<Admission>
  /** Serves the Hocuspocus protocol on {@link HOCUSPOCUS_PATH} (absent: that path is a session id). */
  readonly hocuspocus?: HocuspocusEndpoint
  /** Every plain HTTP request (not an upgrade) goes here: the router of server/http/router.ts. */
  readonly http: (res: UwsHttpResponse, req: UwsHttpRequest) => void
}

/** The running transport. */
export interface UwsTransport {
  /** The port actually listened on (useful with port 0). */
  readonly port: number
  /** The session topic factory bound to this app. */
  topic(sessionId: string): Topic
  /** Stops accepting connections; open ones stay. */
  stopListening(): void
  /** Number of open WebSocket connections. */
  readonly connectionCount: number
}

interface SocketData {
  sessionId: string
  remote: string
  admitted: unknown
  peer?: UwsPeer
  handler?: ConnectionHandler
}

interface MuxSocketData {
  remote: string
  admitted: unknown
  owner?: UwsPeer
  handler?: SocketHandler
}

let nextPeerId = 1

/** The uWS topic of one session and protocol: its subscribers all take the same bytes. */
function topicName(codec: WireCodec, sessionId: string): string {
  return `${codec.protocol}/${sessionId}`
}

/** A Peer over one uWS socket. After the socket closes every call is a no-op. */
class UwsPeer implements Peer {
  readonly id = nextPeerId++
  readonly remote: string
  readonly socket: UwsSocket | MuxUwsSocket
  readonly codec: WireCodec
  readonly sessionId: string
  isClosed = false

  constructor(
    socket: UwsSocket | MuxUwsSocket,
    options: { remote: string; codec: WireCodec; sessionId: string },
  ) {
    this.socket = socket
    this.remote = options.remote
    this.codec = options.codec
    this.sessionId = options.sessionId
  }

  send(message: Message): void {
    if (this.isClosed) return
    const frame = this.codec.encode(message, this.sessionId)
    // Cork: sends made outside a uWS callback (acks after a commit) then leave in one syscall.
    // A send over maxBackpressure is dropped by uWS and, with closeOnBackpressureLimit, closes the
    // socket: the reader reconnects and catches up by state vector, so nothing is lost.
    this.socket.cork(() => this.socket.send(frame, true))
  }

  close(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    // Corked, so the close frame is written now even when called outside a uWS callback.
    this.socket.cork(() => this.socket.end(code, reason))
  }
}

/**
 * One document of a Hocuspocus socket, as its session sees it: sends carry the document's name;
 * `close` leaves the socket open (the multiplexer tells the provider) and unsubscribes the socket
 * from the session's topic. `owner` stands for the socket: once it is closed, so is this peer.
 */
class DocumentPeer extends UwsPeer {
  private readonly owner: UwsPeer
  private readonly hooks: DocumentPeerHooks

  constructor(owner: UwsPeer, documentName: string, hooks: DocumentPeerHooks) {
    super(owner.socket, { remote: owner.remote, codec: hocuspocusCodec, sessionId: documentName })
    this.owner = owner
    this.hooks = hooks
  }

  override send(message: Message): void {
    if (this.isClosed || this.owner.isClosed) return
    const outgoing = this.hooks.outgoing(message)
    if (outgoing !== undefined) super.send(outgoing)
  }

  override close(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    if (!this.owner.isClosed) this.socket.unsubscribe(topicName(this.codec, this.sessionId))
    this.hooks.closed(code, reason)
  }
}

/** Frames up to this size are copied into a shared slab; larger ones get a buffer of their own. */
const SLAB_FRAME_BYTES = 8 * 1024
const SLAB_BYTES = 256 * 1024
let slab = new Uint8Array(0)
let slabOffset = 0

/**
 * A copy of `message` that outlives the uWS callback.
 *
 * @remarks Why a slab: `message.slice(0)` makes an ArrayBuffer per frame, each with its own
 * off-heap backing store that V8 tracks and sweeps; at tens of thousands of updates a second that
 * showed up as scavenge time. Small frames are copied side by side into a 256 KiB buffer instead.
 * A slab lives while any frame in it is referenced: frames are held only until their update is
 * durable (the store copies what it keeps), so at most a few slabs are alive.
 */
function copyFrame(message: ArrayBuffer): Uint8Array {
  const length = message.byteLength
  if (length > SLAB_FRAME_BYTES) return new Uint8Array(message.slice(0))
  if (slabOffset + length > slab.length) {
    slab = new Uint8Array(SLAB_BYTES)
    slabOffset = 0
  }
  const frame = slab.subarray(slabOffset, slabOffset + length)
  frame.set(new Uint8Array(message))
  slabOffset += length
  return frame
}

function textOf(buffer: ArrayBuffer): string {
  return Buffer.from(buffer).toString()
}

/** An upgrade request's URL and headers, copied out of uWS (its request object dies with the callback). */
interface CopiedUpgrade {
  readonly url: string
  readonly key: string
  readonly protocol: string
  readonly extensions: string
  readonly query: string
  readonly host: string
  readonly origin: string
  /** The client's address (behind a trusted proxy, from `X-Forwarded-For`). */
  readonly remote: string
}

/** Copies what an upgrade needs out of uWS: call it first, before the callback can return. */
function readUpgrade(
  res: UwsHttpResponse,
  req: UwsHttpRequest,
  clientAddressOf: ClientAddressOf,
): CopiedUpgrade {
  const forwardedFor = req.getHeader('x-forwarded-for')
  return {
    url: req.getUrl(),
    key: req.getHeader('sec-websocket-key'),
    protocol: req.getHeader('sec-websocket-protocol'),
    extensions: req.getHeader('sec-websocket-extensions'),
    query: req.getQuery() ?? '',
    host: req.getHeader('host'),
    origin: req.getHeader('origin'),
    remote: clientAddressOf(
      textOf(res.getRemoteAddressAsText()),
      forwardedFor.length > 0 ? forwardedFor : undefined,
    ),
  }
}

/** The part of an admission request both protocols share: query, remote, and the headers sent. */
function admissionRequestOf(request: CopiedUpgrade): SocketUpgradeRequest {
  return {
    query: new URLSearchParams(request.query),
    remote: request.remote,
    ...(request.host.length > 0 ? { host: request.host } : {}),
    ...(request.origin.length > 0 ? { origin: request.origin } : {}),
  }
}

/** How {@link answerUpgrade} decides and what it stores on the accepted socket. */
interface UpgradeAnswer<T> {
  readonly logger: Logger
  /** Logged with a refusal (who asked, and for what). */
  readonly logFields: Readonly<Record<string, unknown>>
  readonly admit: () => Admission | Promise<Admission>
  readonly userData: (admitted: unknown) => T
}

/**
 * Upgrades or refuses (HTTP status of the error's code) once `admit` decides; a throw or a
 * rejection of `admit` is a refusal too.
 *
 * @remarks Admission may be async (token verification): uWS needs `onAborted` before the upgrade
 * callback returns, and the answer must be corked since it may be written outside that callback.
 */
function answerUpgrade<T>(
  res: UwsHttpResponse,
  context: Parameters<NonNullable<Parameters<UwsApp['ws']>[1]['upgrade']>>[2],
  request: CopiedUpgrade,
  answer: UpgradeAnswer<T>,
): void {
  let isAborted = false
  res.onAborted(() => {
    isAborted = true
  })
  const finish = (admission: Admission): void => {
    if (isAborted) return
    res.cork(() => {
      if ('error' in admission) {
        const { httpStatus } = admission.error.info
        answer.logger.info({ ...answer.logFields, code: admission.error.code }, 'upgrade refused')
        res.writeStatus(`${httpStatus} ${STATUS_TEXT[httpStatus] ?? 'Refused'}`).end(admission.error.message)
        return
      }
      res.upgrade<T>(
        answer.userData(admission.admitted),
        request.key,
        request.protocol,
        request.extensions,
        context,
      )
    })
  }
  try {
    const admission = answer.admit()
    if (admission instanceof Promise) {
      admission.then(finish, (error: unknown) => finish({ error: toColloquyError(error) }))
    } else {
      finish(admission)
    }
  } catch (error) {
    finish({ error: toColloquyError(error) })
  }
}

/** uWS's LIBUS_LISTEN_EXCLUSIVE_PORT (ListenOptions in its index.d.ts): no SO_REUSEPORT. */
const EXCLUSIVE_PORT = 1

/** The server could not listen: the port is taken (by any process) or the address is not local. */
export class ListenError extends Error {
  override readonly name = 'ListenError'
  constructor(host: string, port: number) {
    super(
      `cannot listen on ${host}:${port}: the port is already in use (another Colloquy server?) ` +
        'or the address is not one of this machine',
    )
  }
}

/** Starts a uWS app listening on host:port. Resolves once it listens; rejects if it cannot. */
export function createUwsTransport(options: UwsTransportOptions): Promise<UwsTransport> {
  const { uws, logger } = options
  const app: UwsApp = uws.App()
  const clientAddressOf = options.clientAddressOf ?? createClientAddressOf([])
  const codec = options.codec ?? classicCodec
  let connectionCount = 0

  // The same limits for both protocols' sockets.
  const socketSettings = {
    maxPayloadLength: options.maxMessageBytes,
    maxBackpressure: options.maxBackpressureBytes,
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    compression: uws.DISABLED,
  }

  const hocuspocus = options.hocuspocus
  if (hocuspocus !== undefined) {
    // Registered before '/*': uWS prefers the more specific route, so these paths are never a session id.
    const behavior: Parameters<UwsApp['ws']>[1] = {
      ...socketSettings,

      upgrade(res, req, context) {
        const request = readUpgrade(res, req, clientAddressOf)
        answerUpgrade<MuxSocketData>(res, context, request, {
          logger,
          logFields: { remote: request.remote, path: HOCUSPOCUS_PATH },
          admit: () => hocuspocus.admit(admissionRequestOf(request)),
          userData: (admitted) => ({ remote: request.remote, admitted }),
        })
      },

      open(socket) {
        const ws = socket as MuxUwsSocket
        const data = ws.getUserData()
        // The socket itself, as a peer of no session: it tracks the socket's state and ends it.
        const owner = new UwsPeer(ws, { remote: data.remote, codec: hocuspocusCodec, sessionId: '' })
        data.owner = owner
        connectionCount++
        const muxSocket: MuxSocket = {
          remote: data.remote,
          sendFrame(frame) {
            if (!owner.isClosed) ws.cork(() => ws.send(frame, true))
          },
          end: (code, reason) => owner.close(code, reason),
          documentPeer: (documentName, hooks) => new DocumentPeer(owner, documentName, hooks),
        }
        try {
          data.handler = hocuspocus.open(muxSocket, data.admitted)
        } catch (error) {
          logger.error({ err: error, remote: data.remote }, 'accepting a hocuspocus socket failed')
          owner.close(1011, 'internal error')
        }
      },

      message(socket, message, isBinary) {
        const data = (socket as MuxUwsSocket).getUserData()
        const owner = data.owner
        if (owner === undefined || owner.isClosed) return
        if (!isBinary) {
          const error = new ColloquyError('text-frame')
          logger.warn({ remote: owner.remote, path: HOCUSPOCUS_PATH }, 'connection closed: text frame')
          owner.close(error.info.closeCode, error.info.reason)
          return
        }
        // Copied like a classic frame: decoded messages are views that sessions keep.
        const frame = copyFrame(message)
        try {
          data.handler?.receive(frame)
        } catch (error) {
          logger.error({ err: error, remote: owner.remote }, 'handling a hocuspocus frame failed')
          owner.close(1011, 'internal error')
        }
      },

      close(socket, code, message) {
        const data = (socket as MuxUwsSocket).getUserData()
        connectionCount--
        const wasClosedByUs = data.owner?.isClosed === true
        if (data.owner !== undefined) data.owner.isClosed = true
        if (!wasClosedByUs && code === 1006) {
          const reason = textOf(message)
          if (reason.length > 0) logger.warn({ remote: data.remote, reason }, 'connection dropped')
        }
        try {
          data.handler?.closed(code)
        } catch (error) {
          logger.error({ err: error, remote: data.remote }, 'closing a hocuspocus socket failed')
        }
      },
    }
    app.ws(HOCUSPOCUS_PATH, behavior)
    app.ws(`${HOCUSPOCUS_PATH}/*`, behavior)
  }

  app.ws<SocketData>('/*', {
    ...socketSettings,

    upgrade(res, req, context) {
      const request = readUpgrade(res, req, clientAddressOf)
      const sessionId = request.url.slice(1)
      if (!isValidSessionId(sessionId)) {
        logger.warn(
          { remote: request.remote, url: request.url.slice(0, 200) },
          'upgrade refused: invalid session id',
        )
        res.writeStatus('400 Bad Request').end('invalid session id: 1-128 characters of A-Za-z0-9._:-')
        return
      }
      answerUpgrade<SocketData>(res, context, request, {
        logger,
        logFields: { remote: request.remote, session: sessionId },
        admit: () => options.admit({ sessionId, ...admissionRequestOf(request) }),
        userData: (admitted) => ({ sessionId, remote: request.remote, admitted }),
      })
    },

    open(ws) {
      const data = ws.getUserData()
      const peer = new UwsPeer(ws, { remote: data.remote, codec, sessionId: data.sessionId })
      data.peer = peer
      connectionCount++
      try {
        data.handler = options.accept(data.sessionId, peer, data.admitted)
      } catch (error) {
        const refusal = toColloquyError(error)
        if (refusal.code === 'internal') {
          logger.error({ err: error, session: data.sessionId }, 'accepting a connection failed')
        } else {
          logger.info({ session: data.sessionId, code: refusal.code }, 'connection refused')
        }
        peer.close(refusal.info.closeCode, refusal.info.reason)
      }
    },

    message(ws, message, isBinary) {
      const data = ws.getUserData()
      const peer = data.peer
      if (peer === undefined || peer.isClosed) return
      if (!isBinary) {
        const error = new ColloquyError('text-frame')
        logger.warn(
          { session: data.sessionId, peer: peer.id, remote: peer.remote },
          'connection closed: text frame',
        )
        peer.close(error.info.closeCode, error.info.reason)
        return
      }
      // Copy: uWS reuses (neuters) this buffer once the callback returns, and decoded messages are
      // views into the frame that sessions keep.
      const frame = copyFrame(message)
      try {
        if (data.handler !== undefined) receiveFrame(peer.codec, frame, data.handler)
      } catch (error) {
        logger.error({ err: error, session: data.sessionId }, 'handling a frame failed')
        peer.close(1011, 'internal error')
      }
    },

    close(ws, code, message) {
      const data = ws.getUserData()
      connectionCount--
      const wasClosedByUs = data.peer?.isClosed === true
      if (data.peer !== undefined) data.peer.isClosed = true
      if (!wasClosedByUs && code === 1006) {
        // uWS drops (no close frame, the peer sees 1006) a socket that sent a frame over
        // maxPayloadLength or passed closeOnBackpressureLimit; its reason says which.
        const reason = textOf(message)
        if (reason.length > 0) {
          logger.warn(
            { session: data.sessionId, peer: data.peer?.id, remote: data.remote, reason },
            'connection dropped',
          )
        }
      }
      try {
        data.handler?.closed(code)
      } catch (error) {
        logger.error({ err: error, session: data.sessionId }, 'closing a connection failed')
      }
    },
  })

  app.any('/*', options.http)

  return new Promise((resolve, reject) => {
    // Exclusive: without it uWS sets SO_REUSEPORT, and a second server on a taken port would
    // start and silently share its connections with the first.
    const listen = app.listen as unknown as (
      host: string,
      port: number,
      listenOptions: number,
      callback: (listenSocket: UwsListenSocket | false) => void,
    ) => UwsApp
    listen.call(app, options.host, options.port, EXCLUSIVE_PORT, (listenSocket: UwsListenSocket | false) => {
      if (listenSocket === false) {
        reject(new ListenError(options.host, options.port))
        return
      }
      /** Sends one encoded frame to a protocol's topic, leaving out `except` when it is subscribed there. */
      const publishFrame = (name: string, topicCodec: WireCodec, frame: Uint8Array, except?: Peer): void => {
        // ws.publish reaches every subscriber but the sender; app.publish reaches all.
        if (except instanceof UwsPeer && !except.isClosed && except.codec === topicCodec) {
          except.socket.publish(name, frame, true)
        } else {
          app.publish(name, frame, true)
        }
      }
      let listening: UwsListenSocket | undefined = listenSocket
      const port = uws.us_socket_local_port(listenSocket as never)
      resolve({
        port,
        topic(sessionId) {
          // One uWS topic per protocol: its subscribers all take the same bytes, encoded once.
          const protocols = new Map<WireCodec, string>()
          // The first protocol's codec and topic: a publish while it is the only one takes no loop.
          let first: { readonly codec: WireCodec; readonly name: string } | undefined
          const nameFor = (peerCodec: WireCodec): string => {
            let name = protocols.get(peerCodec)
            if (name === undefined) {
              name = topicName(peerCodec, sessionId)
              protocols.set(peerCodec, name)
              first ??= { codec: peerCodec, name }
            }
            return name
          }
          return {
            subscribe(peer) {
              if (peer instanceof UwsPeer && !peer.isClosed) peer.socket.subscribe(nameFor(peer.codec))
            },
            unsubscribe(peer) {
              // uWS drops a closed socket's subscriptions itself.
              if (peer instanceof UwsPeer && !peer.isClosed) peer.socket.unsubscribe(nameFor(peer.codec))
            },
            publish(message, except) {
              if (first === undefined) return 0
              if (protocols.size === 1) {
                // No `carries` check on this path (the classic one's speed): a message only some
                // protocols carry (stateless) comes from a peer of such a protocol, subscribed here
                // before it could send, and topics never forget a protocol: so there are two.
                const frame = first.codec.encode(message, sessionId)
                publishFrame(first.name, first.codec, frame, except)
                return frame.byteLength
              }
              let size = 0
              for (const [topicCodec, name] of protocols) {
                // Encode only for the protocols someone still listens on and that carry the message.
                if (app.numSubscribers(name) === 0 || !topicCodec.carries(message.type)) continue
                const frame = topicCodec.encode(message, sessionId)
                size = Math.max(size, frame.byteLength)
                publishFrame(name, topicCodec, frame, except)
              }
              return size
            },
          }
        },
        stopListening() {
          if (listening !== undefined) uws.us_listen_socket_close(listening)
          listening = undefined
        },
        get connectionCount() {
          return connectionCount
        },
      })
    })
  })
}
