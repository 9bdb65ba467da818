// The classic y-websocket 1.5.4 server, persisting through its own y-leveldb (YPERSISTENCE), on
// 127.0.0.1 port 0. Same code path as its bin/server.js, but it prints the port it got and, on a
// "flush" line on stdin, waits until y-leveldb wrote every update, prints "flushed" and exits.

const http = require('node:http')
const readline = require('node:readline')
const { WebSocketServer } = require('ws')
const { setupWSConnection, getPersistence } = require('y-websocket-classic/bin/utils')

const wss = new WebSocketServer({ noServer: true })
wss.on('connection', (conn, req) => setupWSConnection(conn, req, { gc: true }))
const server = http.createServer((_req, res) => {
  res.writeHead(200)
  res.end('ok')
})
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`)
})

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (line.trim() !== 'flush') return
  const persistence = getPersistence()
  // y-leveldb runs every operation through one promise chain: a read queued now resolves only
  // after every update stored before it.
  await persistence.provider.getAllDocNames()
  await persistence.provider.destroy()
  process.stdout.write('flushed\n')
  process.exit(0)
})
