// A TCP forwarder on 127.0.0.1 port 0 for tests that restart a server: clients keep one address
// while the server behind it changes port. A restarted server listens on port 0 again because a
// listener that uWS opened on port 0 gets no SO_REUSEADDR, so its old port stays taken by the
// previous connections' TIME_WAIT (about 60 s on Linux).

import type { AddressInfo } from 'node:net'
import { connect, createServer, type Server, type Socket } from 'node:net'

/** Forwards every accepted connection to the current target port; refuses while there is none. */
export interface TcpForwarder {
  readonly port: number
  /** Where new connections go; `undefined` drops them at once (as a refused connection would). */
  setTarget(port: number | undefined): void
  close(): Promise<void>
}

/** Starts a forwarder on 127.0.0.1 port 0 towards `target` on 127.0.0.1. */
export async function startTcpForwarder(target: number | undefined): Promise<TcpForwarder> {
  let current = target
  const sockets = new Set<Socket>()
  const track = (socket: Socket): void => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }
  const server: Server = createServer((client) => {
    track(client)
    if (current === undefined) {
      client.destroy()
      return
    }
    const upstream = connect(current, '127.0.0.1')
    track(upstream)
    // Either side ending or failing ends the other: the client sees the server go away.
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    setTarget(port) {
      current = port
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
