'use strict'
// The WebSocket connections of `tidewire/socket.io`'s Engine (js/engine.js),
// once the engine accepted an upgrade request (middlewares, allowRequest,
// the core's admission). Two paths:
//
// - Handed over to the core (plain TCP, the default): the connection's
//   descriptor, duplicated in Rust, with the bytes Node read past the
//   request and the `101`'s extra headers; the core answers the upgrade and
//   reads and writes the frames itself. Node's socket is destroyed in the
//   same run, which closes only Node's descriptor.
// - npm ws (TLS terminated in Node, no descriptor, a subprotocol asked
//   for, `handOff: false`): ws completes the handshake and reads the
//   frames, which go into the core one by one; what the sessions send
//   comes back framed, every session's batch in one crossing
//   (`takeWrites`), written with one write per session and batch.

const { EventEmitter } = require('node:events')
const { WebSocketServer } = require('ws')

// What `HostWebSocket.receive` reports of an upgrade.
const UPGRADE_STARTED = 1
const UPGRADE_DONE = 2
// What ws may hold unsent for one connection before its writer waits.
const WS_HIGH_WATER = 1 << 20
// The headers middlewares set on an upgrade request's response.
const kResponseHeaders = Symbol('responseHeaders')
// The `101`'s extra headers, computed (and their events emitted) once.
const kUpgradeHeaders = Symbol('upgradeHeaders')

// The subset of http.ServerResponse that middlewares use on an upgrade
// request (as engine.io's `WebSocketResponse`): headers they set go on the
// `101`, `end()` refuses the upgrade.
class WebSocketResponse extends EventEmitter {
  constructor(req, socket) {
    super()
    this.req = req
    this.socket = socket
    req[kResponseHeaders] = {}
    socket.once('close', () => this.emit('close'))
  }
  setHeader(name, value) {
    this.req[kResponseHeaders][name] = value
  }
  getHeader(name) {
    return this.req[kResponseHeaders][name]
  }
  removeHeader(name) {
    delete this.req[kResponseHeaders][name]
  }
  write() {}
  writeHead() {}
  end() {
    this.emit('finish')
    this.socket.destroy()
  }
}

/** An engine's WebSocket connections, on either path. */
class WebSockets {
  constructor(engine) {
    this.engine = engine
    // Connections on npm ws, by the `request` number their `start` was given.
    this.open = new Map()
    this.ws = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: engine.opts.maxHttpBufferSize,
    })
    this.ws.on('headers', (lines, req) => {
      const headers = this.upgradeHeaders(req)
      for (let i = 0; i + 1 < headers.length; i += 2) lines.push(`${headers[i]}: ${headers[i + 1]}`)
    })
  }

  /** Serves an accepted upgrade (`accepted`, a HostWebSocket) on `socket`. */
  serve(req, socket, head, accepted, token) {
    if (this.handOver(req, socket, head, accepted, token)) return
    const engine = this.engine
    const onEarlyClose = () => {
      accepted.abandon()
      engine._requests.delete(token)
    }
    socket.once('close', onEarlyClose)
    this.ws.handleUpgrade(req, socket, head, (ws) => {
      socket.removeListener('close', onEarlyClose)
      this.onWebSocket(ws, accepted, token)
    })
  }

  /**
   * Hands the connection over to the core when it can take it: a plain
   * TCP socket (not TLS: `socket.encrypted`), with a descriptor, asking for
   * no subprotocol. The core duplicates the descriptor, answers the `101`
   * and owns the connection; Node's socket is then destroyed in this same
   * run (before Node reads from it again), which closes only its own
   * descriptor: the connection stays open. `end()` would send a FIN, so it
   * is never called. False when it stays with npm ws.
   */
  handOver(req, socket, head, accepted, token) {
    const handle = socket._handle
    if (!this.engine.opts.handOff || socket.encrypted || !handle || !Number.isInteger(handle.fd) || handle.fd < 0) {
      return false
    }
    if (req.headers['sec-websocket-protocol'] !== undefined) return false
    const headers = this.upgradeHeaders(req)
    // Bytes Node read after the request (a client that did not wait for the 101).
    const buffered = socket.readableLength > 0 ? socket.read() : null
    let adopted = false
    try {
      adopted = accepted.adopt(handle.fd, buffered ? Buffer.concat([head, buffered]) : head, headers, token)
    } catch {
      // A response header that is not valid HTTP: npm ws writes it as before.
    }
    if (!adopted) {
      if (buffered) socket.unshift(buffered)
      return false
    }
    if (!accepted.sid && this.engine._tracksSessions) this.engine._handedOff.add(token)
    socket.on('error', () => {})
    socket.destroy()
    return true
  }

  /**
   * The `101`'s extra headers (names and values, alternating): what the
   * middlewares set, after `initial_headers` and `headers` (emitted once).
   */
  upgradeHeaders(req) {
    if (req[kUpgradeHeaders]) return req[kUpgradeHeaders]
    const headers = req[kResponseHeaders] || {}
    delete req[kResponseHeaders]
    if (!req._query.sid) this.engine.emit('initial_headers', headers, req)
    this.engine.emit('headers', headers, req)
    const flat = []
    for (const [name, value] of Object.entries(headers)) {
      for (const v of [].concat(value)) flat.push(name, String(v))
    }
    req[kUpgradeHeaders] = flat
    return flat
  }

  /** A connection npm ws completed: its frames go into the core. */
  onWebSocket(ws, handle, token) {
    const engine = this.engine
    this.open.set(token, { ws, handle, paused: false })
    handle.start(token)
    const upgradeOf = handle.sid
    ws.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
      const step = handle.receive(bytes, isBinary)
      if (step !== 0 && upgradeOf) {
        const client = engine.clients[upgradeOf]
        if (client && step === UPGRADE_STARTED) client._onUpgrading()
        else if (client && step === UPGRADE_DONE) client._onUpgrade()
      }
      // What the message caused is delivered now, on this thread, rather
      // than after another trip through the event loop.
      engine._takeEvents()
    })
    ws.on('error', () => handle.receiveClose(true))
    ws.on('close', () => handle.receiveClose(false))
  }

  /**
   * Writes what every session on npm ws sends, as the core framed it: one
   * write per session and batch, for all sessions at once (a broadcast to
   * many sessions crosses from the core once).
   */
  takeWrites() {
    for (;;) {
      const writes = this.engine._native.takeWrites()
      if (writes.length === 0) return
      for (const { socket, data, close, code, reason } of writes) {
        const open = this.open.get(socket)
        if (!open) continue
        const { ws, handle } = open
        if (data && ws.readyState === ws.OPEN) {
          // As engine.io writes socket.io-adapter's precomputed frames.
          ws._sender.sendFrame([data])
          // Past a high-water mark, the core stops framing for this
          // session until the socket drains: a client that does not read
          // then fills the session's bounded queue instead, which closes it
          // as a slow consumer.
          if (!open.paused && ws.bufferedAmount > WS_HIGH_WATER) {
            open.paused = true
            handle.pause()
            ws._socket.once('drain', () => {
              open.paused = false
              handle.resume()
            })
          }
        }
        if (close) {
          this.open.delete(socket)
          if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
            if (code != null) ws.close(code, reason || '')
            else ws.close()
          }
        }
      }
    }
  }

  close() {
    this.ws.close()
  }
}

module.exports = { WebSockets, WebSocketResponse }
