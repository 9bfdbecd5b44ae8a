'use strict'
// The `Engine` of `tidewire/socket.io`: Tidewire inside an unchanged socket.io app.
//
// `Engine` is an engine.io-compatible server, the thing socket.io's
// `io.bind(engine)` takes: the app keeps socket.io, its handlers and its
// port, and swaps the engine. Engine.IO sessions (handshake, long-polling,
// the WebSocket upgrade, heartbeats, bounded outbound queues, payload
// limits) are the core's, carried over the app's own http.Server through
// its host transport (`EngineHost` in index.js): long-polling requests go
// in as (method, url, headers, body) and come back as complete answers;
// a WebSocket upgrade on a plain (not TLS) http.Server is handed over to
// the core: the connection's file descriptor, duplicated, with the bytes
// Node read past the request and the response headers the engine computed;
// the core answers the `101` and reads and writes the frames itself, so no
// frame passes through JavaScript. Where that is impossible (TLS terminated
// in Node, no descriptor, a subprotocol asked for, `handOff: false`) the
// frames are read by npm `ws`, as engine.io does, and what the sessions send
// comes back framed, every session's batch in one crossing.
// socket.io's JavaScript `Server` speaks the Socket.IO protocol on top.
//
// Every engine.io option is either honoured or refused at construction;
// an engine.io feature the core cannot provide throws when it is used.

const { EventEmitter } = require('node:events')
const http = require('node:http')
const native = require('../index.js')
const { WebSockets, WebSocketResponse } = require('./websocket.js')

// engine.io's error codes and messages (its `Server.errors`).
const errors = Object.freeze({
  UNKNOWN_TRANSPORT: 0,
  UNKNOWN_SID: 1,
  BAD_HANDSHAKE_METHOD: 2,
  BAD_REQUEST: 3,
  FORBIDDEN: 4,
  UNSUPPORTED_PROTOCOL_VERSION: 5,
})
const errorMessages = Object.freeze({
  0: 'Transport unknown',
  1: 'Session ID unknown',
  2: 'Bad handshake method',
  3: 'Bad request',
  4: 'Forbidden',
  5: 'Unsupported protocol version',
})

// What an event taken from the native queue reports (see `EngineEvent` in src/host.rs).
const OPEN = 0
const TEXT = 1
const BINARY = 2
const CLOSE = 3
const UPGRADING = 4
const UPGRADED = 5

// A request body that broke off (the client went away).
const ABORTED = Symbol('aborted')

function invalid(message) {
  const e = new TypeError(`tidewire Engine: ${message}`)
  e.code = 'ERR_INVALID_ARG'
  return e
}

// --- options ----------------------------------------------------------------

const DEFAULTS = Object.freeze({
  pingTimeout: 20000,
  pingInterval: 25000,
  upgradeTimeout: 10000,
  maxHttpBufferSize: 1e6,
  transports: Object.freeze(['polling', 'websocket']),
  allowUpgrades: true,
  allowRequest: undefined,
  cors: false,
  cookie: false,
  path: '/engine.io',
  addTrailingSlash: true,
  limits: undefined,
  handOff: true,
})

// The connection limits an Engine applies (Tidewire's; engine.io has none):
// the fields of the core's limits spec that concern connections. Event
// limits belong to the app (socket.io runs the handlers).
const ENGINE_LIMITS = new Set(['maxConnPerIp', 'maxConnections', 'handshakesPerIp', 'handshakesTotal', 'trustedProxies'])

// Options of socket.io's `Server`, not of the engine.
const SOCKET_IO_OPTIONS = new Set([
  'serveClient',
  'adapter',
  'parser',
  'connectTimeout',
  'connectionStateRecovery',
  'cleanupEmptyChildNamespaces',
])

// engine.io options the core cannot honour, and why.
const REFUSED = {
  wsEngine: 'WebSocket frames are carried by npm ws; another engine cannot be plugged in',
  initialPacket: 'the OPEN packet is written by the core, which sends no initial message',
  maxBufferedChunks: 'polling bodies are bounded by maxHttpBufferSize',
  httpRequestBodyTimeout: 'the core cuts off a polling body that takes longer than the session may stay silent',
}

function checkTime(name, v) {
  if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
    throw invalid(`option "${name}" must be a whole number of milliseconds from 1 to 2147483647, got ${String(v)}`)
  }
  return v
}

function checkBoolean(name, v) {
  if (typeof v !== 'boolean') throw invalid(`option "${name}" must be a boolean, got ${typeof v}`)
  return v
}

function checkPath(name, v) {
  if (typeof v !== 'string' || !v.startsWith('/')) throw invalid(`option "${name}" must be a path starting with "/"`)
  return v
}

/** engine.io's options, checked: every one honoured or refused. */
function engineOptions(opts) {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalid('options must be an object')
  const o = { ...DEFAULTS }
  for (const [name, v] of Object.entries(opts)) {
    if (v === undefined) continue
    switch (name) {
      case 'pingTimeout':
      case 'pingInterval':
      case 'upgradeTimeout':
        o[name] = checkTime(name, v)
        break
      case 'maxHttpBufferSize':
        if (!Number.isInteger(v) || v < 1 || v > 2 ** 32 - 1) {
          throw invalid(`option "maxHttpBufferSize" must be a whole number of bytes from 1 to 4294967295, got ${String(v)}`)
        }
        o.maxHttpBufferSize = v
        break
      case 'transports': {
        if (!Array.isArray(v) || v.length === 0) throw invalid('option "transports" must be a non-empty array')
        for (const t of v) {
          if (t === 'webtransport') throw invalid('transport "webtransport" is not supported')
          if (t !== 'polling' && t !== 'websocket') throw invalid(`unknown transport ${JSON.stringify(t)} in "transports"`)
        }
        o.transports = Object.freeze([...new Set(v)])
        break
      }
      case 'allowUpgrades':
      case 'addTrailingSlash':
      case 'handOff':
        o[name] = checkBoolean(name, v)
        break
      case 'allowRequest':
        if (typeof v !== 'function') throw invalid('option "allowRequest" must be a function (req, callback)')
        o.allowRequest = v
        break
      case 'cors':
        // Honoured by npm `cors`, as engine.io does.
        if (v !== false && (v === null || (typeof v !== 'object' && typeof v !== 'function' && v !== true))) {
          throw invalid('option "cors" must be the options of npm cors')
        }
        o.cors = v
        break
      case 'cookie':
        if (v !== false && v !== true && (v === null || typeof v !== 'object')) {
          throw invalid('option "cookie" must be a boolean or the options of npm cookie')
        }
        o.cookie = v ? { name: 'io', path: '/', httpOnly: true, sameSite: 'lax', ...(v === true ? {} : v) } : false
        break
      case 'path':
        o.path = checkPath(name, v)
        break
      case 'limits': {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('option "limits" must be an object')
        for (const key of Object.keys(v)) {
          if (!ENGINE_LIMITS.has(key)) {
            throw invalid(`option "limits.${key}" is not an Engine limit (those are ${[...ENGINE_LIMITS].join(', ')})`)
          }
        }
        o.limits = JSON.stringify(v)
        break
      }
      case 'perMessageDeflate':
        if (v !== false) throw invalid('option "perMessageDeflate" is not supported: WebSocket compression is off')
        break
      case 'httpCompression':
        if (v !== false) throw invalid('option "httpCompression" is not supported: long-polling answers are not compressed')
        break
      case 'allowEIO3':
        if (v !== false) throw invalid('option "allowEIO3" is not supported: only Engine.IO v4 clients (socket.io-client 3 and later)')
        break
      default:
        if (SOCKET_IO_OPTIONS.has(name)) {
          throw invalid(`option "${name}" belongs to socket.io's Server: pass it to new Server(), not to the Engine`)
        }
        if (Object.hasOwn(REFUSED, name)) throw invalid(`option "${name}" is not supported: ${REFUSED[name]}`)
        throw invalid(`unknown option "${name}"`)
    }
  }
  if (o.cors) o.cors = require('cors')(o.cors)
  return Object.freeze(o)
}

function attachOptions(engine, options) {
  if (options === null || typeof options !== 'object') throw invalid('attach options must be an object')
  const o = {
    path: engine.opts.path,
    addTrailingSlash: engine.opts.addTrailingSlash,
    destroyUpgrade: true,
    destroyUpgradeTimeout: 1000,
  }
  for (const [name, v] of Object.entries(options)) {
    if (v === undefined) continue
    switch (name) {
      case 'path':
        o.path = checkPath(name, v)
        break
      case 'addTrailingSlash':
      case 'destroyUpgrade':
        o[name] = checkBoolean(name, v)
        break
      case 'destroyUpgradeTimeout':
        o.destroyUpgradeTimeout = checkTime(name, v)
        break
      default:
        throw invalid(`unknown attach option "${name}"`)
    }
  }
  return o
}

function computePath(options) {
  let path = options.path.replace(/\/$/, '')
  if (options.addTrailingSlash !== false) path += '/'
  return path
}

// --- requests ---------------------------------------------------------------

function prepare(req) {
  // As engine.io: keep a `_query` a framework set already.
  if (!req._query) {
    const url = new URL(req.url, 'https://socket.io')
    req._query = Object.fromEntries(url.searchParams.entries())
  }
}

function nativeRequest(req, token) {
  const socket = req.socket
  return {
    method: req.method,
    url: req.url,
    headers: req.rawHeaders,
    remoteAddress: (socket && socket.remoteAddress) || '',
    remotePort: (socket && socket.remotePort) || 0,
    request: token,
    secure: Boolean(socket && socket.encrypted),
  }
}

/** Names and values, alternating, to an object (repeated names: arrays). */
function headerObject(flat) {
  const headers = {}
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [name, value] = [flat[i], flat[i + 1]]
    if (name in headers) headers[name] = [].concat(headers[name], value)
    else headers[name] = value
  }
  return headers
}

/** The `{code, message}` of an error answer's JSON body, if it has one. */
function errorBody(body) {
  try {
    const parsed = JSON.parse(body.toString('utf8'))
    if (parsed && typeof parsed === 'object' && 'code' in parsed) return parsed
  } catch {
    // not JSON
  }
  return null
}

/** The sid of a polling handshake's answer (`0{"sid":...}`). */
function handshakeSid(body) {
  if (body[0] !== 0x30) return null
  try {
    return JSON.parse(body.subarray(1).toString('utf8')).sid
  } catch {
    return null
  }
}

function runMiddleware(middleware, req, res) {
  return new Promise((resolve, reject) => {
    let settled = false
    const next = (err) => {
      if (settled) return
      settled = true
      if (err) reject(err)
      else resolve()
    }
    try {
      Promise.resolve(middleware(req, res, next)).catch(next)
    } catch (e) {
      next(e)
    }
  })
}

/** Writes a complete HTTP answer on a raw socket and closes it. */
function answerOnSocket(socket, status, headers, body) {
  socket.on('error', () => {})
  if (socket.writable) {
    let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] || ''}\r\nConnection: close\r\n`
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase()
      if (lower === 'connection' || lower === 'content-length') continue
      for (const v of [].concat(value)) head += `${name}: ${v}\r\n`
    }
    head += `Content-Length: ${body.length}\r\n\r\n`
    socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]))
  } else {
    socket.destroy()
  }
}

// --- sockets ----------------------------------------------------------------

// Events of engine.io's sockets and server that the core does not report.
const SOCKET_EVENTS_UNSUPPORTED = new Map([
  ['heartbeat', 'heartbeats are answered inside the core'],
  ['packetCreate', 'outgoing packets are encoded inside the core'],
  ['flush', 'the outbound queue is written inside the core'],
  ['drain', 'the outbound queue is written inside the core'],
])
const ENGINE_EVENTS_UNSUPPORTED = new Map([
  ['flush', 'the outbound queues are written inside the core'],
  ['drain', 'the outbound queues are written inside the core'],
])

function guardEvents(proto, unsupported, what) {
  for (const method of ['on', 'addListener', 'once', 'prependListener', 'prependOnceListener']) {
    const base = EventEmitter.prototype[method]
    Object.defineProperty(proto, method, {
      configurable: true,
      writable: true,
      value: function (event, listener) {
        if (unsupported.has(event)) {
          const e = new Error(`tidewire ${what}: event "${String(event)}" is not supported: ${unsupported.get(event)}`)
          e.code = 'ERR_UNSUPPORTED'
          throw e
        }
        return base.call(this, event, listener)
      },
    })
  }
}

/**
 * One Engine.IO session, with what socket.io's `Client` and apps use of
 * engine.io's `Socket`.
 */
class Socket extends EventEmitter {
  constructor(server, handle, req, transport) {
    super()
    this.id = handle.id
    this.server = server
    this.request = req
    this.protocol = 4
    this.remoteAddress = req && req.socket ? req.socket.remoteAddress : undefined
    this.upgrading = false
    this.upgraded = false
    // Whether its WebSocket is carried by the core itself (handed over),
    // rather than by npm ws.
    this.handedOff = false
    this._handle = handle
    // Written in this turn of the event loop: not writable until the next
    // (engine.io's transport is busy while its write is in flight).
    this._busy = 0
    this.transport = this._transportOf(transport)
    this._readyState = 'open'
    // Messages written in this run, sent together at its end.
    this._out = []
    this._outCallbacks = []
    this._outVolatile = false
    this._flushQueued = false
  }

  get readyState() {
    return this._readyState
  }

  /**
   * Queues a message: a string, or binary (Buffer, ArrayBuffer, typed
   * array). `opts.volatile` drops it when the client lags. `callback`
   * runs once it is queued (the core writes it). The messages written in
   * one synchronous run (a Socket.IO packet and its attachments) cross
   * into the core together, at the end of the run, as one unit.
   */
  write(data, opts, callback) {
    if (typeof opts === 'function') {
      callback = opts
      opts = {}
    }
    if (this._readyState !== 'open') return this
    const volatile = !!(opts && opts.volatile)
    if (this._busy++ === 0) setImmediate(() => (this._busy = 0))
    if (this._out.length > 0 && this._outVolatile !== volatile) this._flush()
    this._outVolatile = volatile
    this._out.push(typeof data === 'string' ? data : toBuffer(data))
    if (typeof callback === 'function') this._outCallbacks.push(callback)
    if (!this._flushQueued) {
      this._flushQueued = true
      this.server._unflushed.add(this)
      queueMicrotask(() => this._flush())
    }
    return this
  }

  send(data, opts, callback) {
    return this.write(data, opts, callback)
  }

  /** Closes the session once what is queued is written. */
  close() {
    if (this._readyState !== 'open') return
    this._flush()
    this._readyState = 'closing'
    this._handle.close()
  }

  _flush() {
    this._flushQueued = false
    this.server._unflushed.delete(this)
    if (this._out.length === 0) return
    // The rooms as JavaScript left them before this write: a broadcast the
    // core then writes without JavaScript (another node's) never reaches a
    // socket past a packet that followed its leaving.
    if (this.server._mirrors.size > 0) this.server._flushMirrors()
    const [out, callbacks] = [this._out, this._outCallbacks]
    this._out = []
    this._outCallbacks = []
    this._handle.send(out, this._outVolatile)
    for (const callback of callbacks) process.nextTick(callback)
  }

  _onMessage(data) {
    if (this._readyState !== 'open') return
    this.emit('packet', { type: 'message', data })
    this.emit('data', data)
    this.emit('message', data)
  }

  _onUpgrading() {
    this.upgrading = true
    this.emit('upgrading', Object.freeze({ name: 'websocket', writable: true, sid: this.id }))
  }

  /**
   * The transport as socket.io's `Client` reads it: `writable` as
   * engine.io's, false while a write is in flight or (long-polling) until
   * the client's next GET, so socket.io drops volatile packets when it would.
   */
  _transportOf(name) {
    const socket = this
    return Object.freeze({
      name,
      sid: this.id,
      get writable() {
        return socket._readyState === 'open' && socket._busy === 0 && socket._handle.writable
      },
    })
  }

  _onUpgrade() {
    this.upgrading = false
    this.upgraded = true
    this.transport = this._transportOf('websocket')
    this.emit('upgrade', this.transport)
  }

  _onClose(reason) {
    if (this._readyState === 'closed') return
    this._readyState = 'closed'
    this.emit('close', reason)
  }
}
guardEvents(Socket.prototype, SOCKET_EVENTS_UNSUPPORTED, 'Engine socket')

function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v
  if (v instanceof ArrayBuffer) return Buffer.from(v)
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  throw invalid('write() takes a string or binary data')
}

// --- the engine -------------------------------------------------------------

function defaultGenerateId() {
  const e = new Error('tidewire Engine: session ids are generated by the core; generateId cannot be called or replaced')
  e.code = 'ERR_UNSUPPORTED'
  throw e
}

/**
 * An engine.io-compatible server on Tidewire's core: `new Engine(opts)`,
 * `engine.attach(httpServer, { path })`, `io.bind(engine)`.
 */
class Engine extends EventEmitter {
  // `sessionsIn`, internal (tidewire's own Server, attached to an
  // http.Server): `(wake, wakeWrites) => EngineHost` over an engine whose
  // sessions the core serves itself (Socket.IO in the core's hub): this
  // Engine only carries their requests and WebSockets, and never emits
  // `connection`.
  constructor(opts = {}, sessionsIn = null) {
    super()
    if (this.generateId !== defaultGenerateId) defaultGenerateId()
    this.opts = engineOptions(opts)
    this.clients = {}
    this.clientsCount = 0
    this.middlewares = []
    this._requests = new Map()
    // The requests whose WebSocket was handed over, until their session opens.
    this._handedOff = new Set()
    this._token = 0
    // Sockets whose writes wait for the end of the run (see `_flushWrites`).
    this._unflushed = new Set()
    // Fast-path adapters whose room changes wait for the end of the run
    // (js/fast-path.js): handed to the core before any write is.
    this._mirrors = new Set()
    this._closed = false
    const o = this.opts
    // Sessions this Engine opens for socket.io (not those of `sessionsIn`).
    this._tracksSessions = !sessionsIn
    const wake = () => this._takeEvents()
    const wakeWrites = () => this._websockets && this._websockets.takeWrites()
    try {
      this._native = sessionsIn ? sessionsIn(wake, wakeWrites) : new native.EngineHost(
        {
          pingInterval: o.pingInterval,
          pingTimeout: o.pingTimeout,
          upgradeTimeout: o.upgradeTimeout,
          maxPayload: o.maxHttpBufferSize,
          polling: o.transports.includes('polling'),
          websocket: o.transports.includes('websocket'),
          allowUpgrades: o.allowUpgrades,
          limits: o.limits,
        },
        wake,
        wakeWrites,
      )
    } catch (e) {
      // The core refused a value (a limit that does not parse).
      throw invalid(String(e.message).replace(/^tidewire Engine: /, ''))
    }
    this._taking = false
    // The WebSocket connections (null without the websocket transport).
    this._websockets = o.transports.includes('websocket') ? new WebSockets(this) : null
    if (o.cors) this.use(o.cors)
  }

  /** Adds an Express-style middleware `(req, res, next)` run on every request at the path. */
  use(fn) {
    if (typeof fn !== 'function') throw invalid('use() takes a middleware function (req, res, next)')
    this.middlewares.push(fn)
  }

  /**
   * Takes the requests and WebSocket upgrades at `options.path` (default
   * the `path` option, else `/engine.io/`) of `server`, and leaves every
   * other request and upgrade to the app.
   */
  attach(server, options = {}) {
    const o = attachOptions(this, options)
    const path = computePath(o)
    const check = (req) => path === req.url.slice(0, path.length)
    const listeners = server.listeners('request').slice(0)
    server.removeAllListeners('request')
    server.on('close', () => this.close())
    server.on('request', (req, res) => {
      if (check(req)) {
        this.handleRequest(req, res)
      } else {
        for (const listener of listeners) listener.call(server, req, res)
      }
    })
    if (this._websockets) {
      server.on('upgrade', (req, socket, head) => {
        if (check(req)) {
          this.handleUpgrade(req, socket, head)
        } else if (o.destroyUpgrade) {
          // As engine.io: an upgrade nobody answers is closed.
          socket.on('error', () => {})
          setTimeout(() => {
            if (socket.writable && socket.bytesWritten <= 0) socket.end()
          }, o.destroyUpgradeTimeout).unref()
        }
      })
    }
  }

  /** Answers one HTTP request at the engine's path (long-polling). */
  handleRequest(req, res) {
    prepare(req)
    req.res = res
    this._applyMiddlewares(req, res, (err) => {
      if (err) return this._abortRequest(req, res, errors.BAD_REQUEST, { name: 'MIDDLEWARE_FAILURE' })
      if (res.writableEnded) return
      this._allowRequest(req, false, (code, context) => {
        if (code !== undefined) return this._abortRequest(req, res, code, context)
        this._serveRequest(req, res)
      })
    })
  }

  /** Handles one WebSocket upgrade at the engine's path. */
  handleUpgrade(req, socket, upgradeHead) {
    prepare(req)
    const res = new WebSocketResponse(req, socket)
    this._applyMiddlewares(req, res, (err) => {
      if (err) return this._abortUpgrade(req, socket, errors.BAD_REQUEST, { name: 'MIDDLEWARE_FAILURE' })
      this._allowRequest(req, true, (code, context) => {
        if (code !== undefined) return this._abortUpgrade(req, socket, code, context)
        this._serveUpgrade(req, socket, res, Buffer.from(upgradeHead))
      })
    })
  }

  /** Closes every session. */
  close() {
    // Sessions opened but not delivered yet are closed too.
    this._takeEvents()
    for (const sid of Object.keys(this.clients)) this.clients[sid].close()
    if (!this._closed && this._websockets) this._websockets.close()
    this._closed = true
    return this
  }

  /** Hands the fast path's pending room changes to the core now. */
  _flushMirrors() {
    for (const adapter of this._mirrors) adapter._fanoutFlush()
  }

  /**
   * Hands the pending room changes, then every socket's pending writes, to
   * the core now: a broadcast the core writes (js/fast-path.js) then
   * follows what each socket was written before it, in call order.
   */
  _flushWrites() {
    this._flushMirrors()
    for (const socket of this._unflushed) socket._flush()
  }

  _nextToken() {
    this._token = (this._token % 0xfffffffe) + 1
    return this._token
  }

  _applyMiddlewares(req, res, callback) {
    if (this.middlewares.length === 0) return callback()
    let chain = Promise.resolve()
    for (const middleware of this.middlewares) chain = chain.then(() => runMiddleware(middleware, req, res))
    chain.then(() => callback(), callback)
  }

  /** `allowRequest` for a handshake (no `sid`), as engine.io asks it. */
  _allowRequest(req, upgrade, callback) {
    const allow = this.opts.allowRequest
    const transport = req._query.transport
    const handshake = !req._query.sid && req.method === 'GET' && this.opts.transports.includes(transport)
    if (!allow || !handshake || (transport === 'websocket' && !upgrade)) return callback()
    allow(req, (message, success) => {
      if (!success) return callback(errors.FORBIDDEN, { message })
      callback()
    })
  }

  async _serveRequest(req, res) {
    const token = this._nextToken()
    const handshake = !req._query.sid
    if (handshake && this._tracksSessions) this._requests.set(token, req)
    let done = false
    res.on('close', () => {
      if (!done) this._native.cancel(token)
    })
    let answer
    try {
      const body = await this._readBody(req)
      answer = await this._native.handle(nativeRequest(req, token), body)
    } catch (e) {
      done = true
      this._requests.delete(token)
      if (e === ABORTED) return
      if (!res.headersSent) {
        res.writeHead(500)
        res.end()
      }
      this._fail(e)
      return
    }
    done = true
    if (answer.status !== 200 || !handshake) this._requests.delete(token)
    else setTimeout(() => this._requests.delete(token), 10_000).unref()
    if (answer.status === 0 || res.destroyed) return
    const headers = headerObject(answer.headers)
    if (answer.status === 200) {
      if (handshake) {
        const sid = handshakeSid(answer.body)
        if (this.opts.cookie && sid) {
          headers['Set-Cookie'] = [require('cookie').serialize(this.opts.cookie.name, sid, this.opts.cookie)]
        }
        this.emit('initial_headers', headers, req)
      }
      this.emit('headers', headers, req)
    } else {
      this._connectionError(req, answer.status, answer.body)
    }
    if (req.complete === false) headers.Connection = 'close'
    res.writeHead(answer.status, headers)
    res.end(answer.body)
  }

  /** A request's body, cut at one byte over `maxHttpBufferSize` (the core answers 413). */
  _readBody(req) {
    if (req.method !== 'POST' && !req.headers['content-length'] && !req.headers['transfer-encoding']) {
      return Promise.resolve(null)
    }
    const limit = this.opts.maxHttpBufferSize + 1
    return new Promise((resolve, reject) => {
      const chunks = []
      let size = 0
      const onData = (chunk) => {
        chunks.push(chunk)
        size += chunk.length
        if (size >= limit) finish()
      }
      const finish = () => {
        req.off('data', onData)
        req.off('end', finish)
        req.off('error', onError)
        req.off('close', onClose)
        const body = Buffer.concat(chunks, size)
        resolve(size > limit ? body.subarray(0, limit) : body)
      }
      const onError = () => {
        req.off('data', onData)
        req.off('end', finish)
        req.off('close', onClose)
        reject(ABORTED)
      }
      // The client went away before the body was complete.
      const onClose = () => {
        if (!req.complete) onError()
      }
      req.on('data', onData)
      req.on('end', finish)
      req.on('error', onError)
      req.on('close', onClose)
    })
  }

  _serveUpgrade(req, socket, res, head) {
    const token = this._nextToken()
    const accepted = this._native.acceptWebsocket(nativeRequest(req, token))
    if (!(accepted instanceof native.HostWebSocket)) {
      this._connectionError(req, accepted.status, accepted.body)
      answerOnSocket(socket, accepted.status, headerObject(accepted.headers), accepted.body)
      return
    }
    // Some middlewares (express-session) flush their headers on writeHead().
    res.writeHead()
    if (!accepted.sid && this._tracksSessions) this._requests.set(token, req)
    this._websockets.serve(req, socket, head, accepted, token)
  }

  /** Delivers every queued session event, in order (not reentrant). */
  _takeEvents() {
    if (this._taking) return
    this._taking = true
    try {
      for (;;) {
        const events = this._native.takeEvents()
        if (events.length === 0) break
        for (const event of events) {
          try {
            this._dispatch(event)
          } catch (e) {
            // An app handler threw: as from any event emitter, it is
            // uncaught, but the events after it are still delivered.
            process.nextTick(() => {
              throw e
            })
          }
        }
      }
    } finally {
      this._taking = false
    }
  }

  _dispatch({ kind, sid, request, socket: handle, data }) {
    switch (kind) {
      case OPEN: {
        const req = this._requests.get(request)
        this._requests.delete(request)
        const socket = new Socket(this, handle, req, data)
        socket.handedOff = this._handedOff.delete(request)
        this.clients[sid] = socket
        this.clientsCount++
        socket.once('close', () => {
          delete this.clients[sid]
          this.clientsCount--
        })
        this.emit('connection', socket)
        break
      }
      case TEXT:
      case BINARY: {
        const socket = this.clients[sid]
        if (socket) socket._onMessage(data)
        break
      }
      case CLOSE: {
        // After what the session's last messages caused: socket.io's
        // Client handles each decoded packet on the next tick, and a
        // client's DISCONNECT is often read together with its close.
        const socket = this.clients[sid]
        if (socket) process.nextTick(() => socket._onClose(data))
        break
      }
      case UPGRADING: {
        const socket = this.clients[sid]
        if (socket) socket._onUpgrading()
        break
      }
      case UPGRADED: {
        const socket = this.clients[sid]
        if (socket) {
          socket.handedOff = true
          socket._onUpgrade()
        }
        break
      }
    }
  }

  /** An unexpected failure of the native layer: `error` when the app listens, a warning otherwise. */
  _fail(e) {
    if (this.listenerCount('error') > 0) this.emit('error', e)
    else process.emitWarning(e)
  }

  _connectionError(req, status, body) {
    const parsed = errorBody(body)
    const code = parsed ? parsed.code : status
    const message = parsed && typeof parsed.message === 'string' ? parsed.message : http.STATUS_CODES[status]
    this.emit('connection_error', { req, code, message, context: { status } })
  }

  _abortRequest(req, res, code, context) {
    const message = context && context.message ? context.message : errorMessages[code]
    this.emit('connection_error', { req, code, message: errorMessages[code], context })
    if (res.headersSent) {
      if (!res.writableEnded) res.end()
      return
    }
    res.writeHead(code === errors.FORBIDDEN ? 403 : 400, { 'Content-Type': 'application/json' })
    res.end(JSON.stringify({ code, message }))
  }

  _abortUpgrade(req, socket, code, context = {}) {
    this.emit('connection_error', { req, code, message: errorMessages[code], context })
    const message = Buffer.from(context.message || errorMessages[code])
    answerOnSocket(socket, 400, { 'Content-Type': 'text/html' }, message)
  }
}
Object.defineProperty(Engine.prototype, 'generateId', {
  configurable: true,
  get() {
    return defaultGenerateId
  },
  set() {
    defaultGenerateId()
  },
})
guardEvents(Engine.prototype, ENGINE_EVENTS_UNSUPPORTED, 'Engine')

Engine.errors = errors
Engine.errorMessages = errorMessages

module.exports = { Engine, Socket }
