'use strict'
// `createAdapter` / `createShardedAdapter` of `tidewire/socket.io`: socket.io
// adapters with `@socket.io/redis-adapter`'s signatures and options, whose
// Redis traffic goes through the core (its RedisBus and cluster codecs,
// src/adapter.rs): wire-compatible with official nodes, classic or sharded.
//
// socket.io's sockets and their rooms stay in JavaScript, in socket.io-
// adapter's maps (`adapter.rooms`, `adapter.sids`, the room events), where
// socket.io and apps read them; a join costs a Map update, not a crossing
// (on Tidewire's Engine, the fast path mirrors them in the core in
// batches: js/fast-path.js). What other nodes send is queued natively and
// taken in batches; requests are answered from these maps.

const { Adapter, SessionAwareAdapter } = require('socket.io-adapter')
const native = require('../index.js')
const { encode, decode } = require('../tidewire.js')
const settings = require('./redis-settings.js')
const { fastAdapterClass } = require('./fast-path.js')
const { withCode, callNative: call } = require('./native-errors.js')

const { unsupported, invalid } = settings

// Request types of the classic protocol (what the core's link speaks).
const SOCKETS = 0
const ALL_ROOMS = 1
const REMOTE_JOIN = 2
const REMOTE_LEAVE = 3
const REMOTE_DISCONNECT = 4
const REMOTE_FETCH = 5
const SERVER_SIDE_EMIT = 6
const BROADCAST = 7
const BROADCAST_CLIENT_COUNT = 8
const BROADCAST_ACK = 9


// On a packet of the session-aware adapter's log that another node sent: that node's uid.
const ORIGIN = Symbol('tidewire.origin')

/** Whether a logged packet reaches a session in `rooms` (socket.io-adapter's rule for missed packets). */
function reaches(rooms, opts) {
  const has = (set, r) => set.has(r) || set.has(String(r))
  return (opts.rooms.size === 0 || rooms.some((r) => has(opts.rooms, r))) && rooms.every((r) => !has(opts.except, r))
}

/** Reports an error of the cluster on the adapter (`error` event), or as a warning when nobody listens. */
function report(adapter, e) {
  if (adapter.listenerCount('error') > 0) adapter.emit('error', e)
  else process.emitWarning(e)
}

/** The base class: socket.io's in-memory adapter, or its session-aware one under connection state recovery. */
function baseFor(nsp) {
  return nsp.server && nsp.server.opts && nsp.server.opts.connectionStateRecovery ? SessionAwareAdapter : Adapter
}

/** `opts` of a request: `{rooms, except}` as arrays. */
function roomOpts(opts) {
  return { rooms: [...(opts.rooms || [])], except: [...new Set(opts.except || [])] }
}

const isNumeric = (s) => typeof s === 'string' && s !== '' && !Number.isNaN(Number(s)) && !Number.isNaN(parseFloat(s))

/**
 * `opts` from another node: Sets, as socket.io-adapter takes them. Rooms
 * cross the wire as strings; a room this node holds as a number
 * (`join(123)`) is matched as the official adapter matches it.
 */
function localOpts(adapter, opts, flags) {
  const room = (r) => (!adapter.rooms.has(r) && isNumeric(r) && adapter.rooms.has(parseFloat(r)) ? parseFloat(r) : r)
  return { rooms: new Set((opts.rooms || []).map(room)), except: new Set((opts.except || []).map(room)), flags: flags || {} }
}

/**
 * One node's link to the cluster, shared by the namespaces of one socket.io
 * server: one uid, one pair of Redis connections.
 */
class Link {
  constructor(options) {
    this.adapters = new Map()
    // Taken and not yet applied (see `drain`).
    this.backlog = []
    this.deferred = null
    this.native = call(() => new native.AdapterLink(options, () => this.drain()))
    this.uid = this.native.uid
  }

  /** Applies what other nodes sent, in order. */
  drain() {
    const taken = this.native.takeEvents()
    if (this.backlog.length === 0) this.backlog = taken
    else for (const m of taken) this.backlog.push(m)
    if (this.deferred) return
    let i = 0
    while (i < this.backlog.length) {
      if (this.apply(this.backlog[i++]) === true) {
        // A session handed over by another node is complete: the socket
        // joins its rooms in the promise callbacks that run next, and what
        // came after the holder's tail waits for them.
        this.deferred = setImmediate(() => {
          this.deferred = null
          this.drain()
        })
        break
      }
    }
    this.backlog = i < this.backlog.length ? this.backlog.slice(i) : []
    if (this.backlog.length === 0 && !this.deferred) {
      // All applied: once what it changed is in the core, broadcasts
      // routed to the core (`_fanoutDirect`) may go past JavaScript again.
      this.flush()
      this.native.settled()
    }
  }

  /**
   * Hands the core what JavaScript changed and has not handed over yet
   * (fast-path room changes, sockets' writes), so that a broadcast the
   * core delivers without JavaScript comes after it: when everything taken
   * is applied, and before this node publishes (another node may answer
   * with a broadcast).
   */
  flush() {
    for (const adapter of this.adapters.values()) if (adapter._fanout) adapter.nsp.server.engine._flushWrites()
  }

  apply(m) {
    const adapter = this.adapters.get(m.nsp)
    if (!adapter) return false
    // A message another node sent that this node cannot apply is that
    // node's problem, never this one's crash.
    const failed = (e) => report(adapter, e)
    try {
      const message = decode(m.json, m.attachments)
      switch (m.kind) {
        case 'broadcast':
          return adapter.onBroadcast(message)
        case 'session':
          return void adapter.onSessionWanted(message).catch(failed)
        case 'released':
          return adapter.onSessionReleased(message)
        case 'echo':
          return adapter.onSessionEcho(message)
        case 'tail':
          return adapter.onSessionTail(message)
        default:
          return void adapter.onRequest(message)
      }
    } catch (e) {
      failed(e)
      return false
    }
  }

  register(adapter) {
    this.adapters.set(adapter.nsp.name, adapter)
  }

  unregister(adapter) {
    if (this.adapters.get(adapter.nsp.name) === adapter) this.adapters.delete(adapter.nsp.name)
    if (this.adapters.size === 0 && !this.closed) {
      this.closed = true
      // Resolves once the node's departure reached Redis (at most 1 s).
      this.closing = this.native.close(1000).catch(() => {})
    }
    return this.closing
  }
}

/** The clustered adapter over `Base` (Adapter or SessionAwareAdapter), with the broadcast fast path. */
function clusterAdapter(Base) {
  return class TidewireAdapter extends fastAdapterClass(Base) {
    constructor(nsp, link, options) {
      super(nsp)
      this.link = link
      this.uid = link.uid
      this.requestsTimeout = options.requestsTimeout
      this.sharded = options.sharded
      this.pubClient = options.pubClient
      this.subClient = options.subClient
      this.ready = call(() => link.native.addNamespace(nsp.name)).catch((e) => report(this, withCode(e)))
      link.register(this)
      // What this node listens to follows its rooms (interest subscriptions).
      this.on('create-room', (room) => link.native.roomsChanged(nsp.name, [String(room)], []))
      this.on('delete-room', (room) => {
        if (!this.retained.has(String(room))) link.native.roomsChanged(nsp.name, [], [String(room)])
      })
      // Rooms of sessions kept for recovery, still listened to: room -> sessions.
      this.retained = new Map()
      this.kept = new Map()
      // Hand-offs of sessions between nodes, by request id: given by this
      // node (still logged for), and taken by it (waiting for the tail).
      this.handed = new Map()
      this.taking = new Map()
      // A socket's own room is subscribed before its CONNECT goes out, so
      // that `to(socket.id)` from another node reaches it from the start.
      nsp.use((socket, next) => {
        link.native.listen(nsp.name, [socket.id]).then(
          () => next(),
          () => next(),
        )
      })
    }

    // --- other nodes' broadcasts, written by the core ---------------------

    // With the fast path on for every socket here, nothing in JavaScript
    // needs to see another node's broadcast: the core writes it to the
    // mirror's sockets itself, unless events taken before it are still
    // being applied (AdapterLink.settled). Not with connection state
    // recovery (the session-aware adapter logs every packet), nor with a
    // room held as a number (other nodes name it as a string; socket.io-
    // adapter's maps match it, see `localOpts`).
    _fanoutDirect() {
      if (!this.link) return
      const on =
        !!this._fanout && this._fanoutOthers.size === 0 && !this._fanoutNumeric && !(this instanceof SessionAwareAdapter) && !this._linkClosed
      if (on === !!this._direct) return
      this._direct = on
      // What socket.io's path now writes for is in the mirror first (a
      // detached socket); once this returns, the core writes no more.
      this._fanoutFlush()
      this.link.native.deliverDirectly(this.nsp.name, on ? this._fanout : null)
    }

    // --- room bookkeeping ------------------------------------------------

    delAll(id) {
      // A socket refused after the subscription of its room: nobody joins
      // it, so nobody would unsubscribe it.
      if (!this.sids.has(id)) this.link.native.roomsChanged(this.nsp.name, [], [String(id)])
      return super.delAll(id)
    }

    // --- connection state recovery ----------------------------------------

    // A session kept for recovery keeps listening to its rooms, so that what
    // other nodes broadcast there meanwhile is in this node's packet log.
    persistSession(session) {
      super.persistSession(session)
      if (!(this instanceof SessionAwareAdapter)) return
      this.releaseSession(session.pid)
      const rooms = [...session.rooms].map(String)
      for (const room of rooms) this.retained.set(room, (this.retained.get(room) || 0) + 1)
      const timer = setTimeout(() => this.releaseSession(session.pid), this.maxDisconnectionDuration)
      timer.unref()
      this.kept.set(session.pid, { rooms, timer })
    }

    restoreSession(pid, offset) {
      const restored = super.restoreSession(pid, offset)
      // After the restored socket joined its rooms again (same tick).
      if (this.kept.has(pid)) setTimeout(() => this.releaseSession(pid), 0)
      if (restored || !(this instanceof SessionAwareAdapter)) return restored
      // Not held here: perhaps by the node the client left.
      return this.link.native.takeSession(this.nsp.name, String(pid), typeof offset === 'string' ? offset : null).then(
        async (found) => {
          if (!found) return null
          const session = decode(found.json, found.attachments)
          // Its rooms are listened to before its CONNECT goes out.
          await this.link.native.listen(this.nsp.name, session.rooms.map(String))
          if (!found.holder) return session
          // What was broadcast during the hand-off: all of it, once, or
          // no recovery at all (never a gap).
          const rest = await this.completeHandOff(found, String(pid), session.rooms)
          if (rest === null) return null
          for (const data of rest) session.missedPackets.push(data)
          return session
        },
        (e) => {
          report(this, withCode(e))
          return null
        },
      )
    }

    async onSessionWanted({ requestId, from, pid, offset }) {
      let session = null
      if (this instanceof SessionAwareAdapter && this.sessions.has(pid)) {
        // Where the log stands when the missed packets are selected.
        const mark = this.packets[this.packets.length - 1]
        const restored = await super.restoreSession(pid, offset)
        if (restored) {
          // One use only: the session moves to the node the client came back to.
          this.sessions.delete(pid)
          // Its rooms stay listened to, and logged for, until that node's marker.
          const timer = setTimeout(() => {
            this.handed.delete(requestId)
            this.releaseSession(pid)
          }, 2 * this.requestsTimeout)
          timer.unref()
          this.handed.set(requestId, { to: from, pid, rooms: [...restored.rooms], mark, timer })
          session = { ...restored, rooms: [...restored.rooms].map(String) }
          delete session.disconnectedAt
        }
      }
      const out = encode(session)
      call(() => this.link.native.giveSession(from, requestId, out.json, out.attachments, session !== null))
    }

    /** The taker's marker: what this node logged for the session since its answer, then it stops listening. */
    onSessionReleased({ requestId, from, pid }) {
      const handed = this.handed.get(requestId)
      let tail = null
      if (handed && handed.to === from && handed.pid === pid) {
        this.handed.delete(requestId)
        clearTimeout(handed.timer)
        tail = this.logSince(handed.mark, (entry) => reaches(handed.rooms, entry.opts))
        this.releaseSession(pid)
      }
      const out = encode(tail)
      call(() => this.link.native.giveTail(from, requestId, this.nsp.name, out.json, out.attachments))
      return false
    }

    /**
     * The data of the log's packets after `mark` (an entry, or undefined
     * for the whole log) that `keep` keeps; null when `mark` was pruned.
     */
    logSince(mark, keep) {
      const log = this.packets
      const start = mark === undefined ? 0 : log.lastIndexOf(mark) + 1
      if (start === 0 && mark !== undefined) return null
      const out = []
      for (let i = start; i < log.length; i++) if (keep(log[i], i)) out.push(log[i].data)
      return out
    }

    /**
     * Completes a session handed over by `found.holder` once this node
     * listens to its rooms: resolves to what the client must also get
     * (the holder's tail, then this node's part), or null.
     */
    completeHandOff(found, pid, rooms) {
      return new Promise((resolve) => {
        const done = (rest) => {
          clearTimeout(taking.timer)
          this.taking.delete(found.requestId)
          resolve(rest)
        }
        const taking = {
          holder: found.holder,
          rooms,
          // What this node sends from now on is published after the marker.
          sent: this.packets[this.packets.length - 1],
          echoed: false,
          echo: undefined,
          done,
          timer: setTimeout(() => done(null), this.requestsTimeout),
        }
        this.taking.set(found.requestId, taking)
        try {
          this.link.native.releaseSession(this.nsp.name, found.holder, found.requestId, pid)
        } catch (e) {
          report(this, withCode(e))
          done(null)
        }
      })
    }

    /** This node's marker came back: what other nodes sent from now on is not in the holder's tail. */
    onSessionEcho({ requestId }) {
      const taking = this.taking.get(requestId)
      if (taking) {
        taking.echoed = true
        taking.echo = this.packets[this.packets.length - 1]
      }
      return false
    }

    /** The holder's tail: the hand-off is complete (true: a socket is about to join its rooms). */
    onSessionTail({ requestId, tail }) {
      const taking = this.taking.get(requestId)
      if (!taking) return false
      if (!taking.echoed || !Array.isArray(tail)) {
        taking.done(null)
        return false
      }
      const log = this.packets
      const echoAt = taking.echo === undefined ? -1 : log.lastIndexOf(taking.echo)
      const own = this.logSince(taking.sent, (entry, i) => {
        const origin = entry[ORIGIN]
        // Sent here after the marker; the holder's are all in its tail;
        // the others' after the marker came back.
        const after = origin === undefined || (origin !== taking.holder && i > echoAt)
        return after && reaches(taking.rooms, entry.opts)
      })
      if (own === null || (taking.echo !== undefined && echoAt === -1)) {
        taking.done(null)
        return false
      }
      taking.done([...tail, ...own])
      return true
    }

    releaseSession(pid) {
      const kept = this.kept.get(pid)
      if (!kept) return
      this.kept.delete(pid)
      clearTimeout(kept.timer)
      const gone = []
      for (const room of kept.rooms) {
        const n = this.retained.get(room) - 1
        if (n > 0) this.retained.set(room, n)
        else {
          this.retained.delete(room)
          if (!this.rooms.has(room)) gone.push(room)
        }
      }
      if (gone.length) this.link.native.roomsChanged(this.nsp.name, [], gone)
    }

    // --- what this node sends --------------------------------------------

    broadcast(packet, opts) {
      packet.nsp = this.nsp.name
      const local = opts.flags && opts.flags.local
      if (!local) this.link.flush()
      // Encoded before the local delivery (the session-aware adapter adds
      // its offset to `data`, which is this node's only).
      const out = local ? null : encode({ packet: { data: packet.data, id: packet.id }, opts: { ...roomOpts(opts), flags: opts.flags || {} } })
      super.broadcast(packet, opts)
      if (out) call(() => this.link.native.broadcast(this.nsp.name, out.json, out.attachments))
    }

    broadcastWithAck(packet, opts, clientCountCallback, ack) {
      packet.nsp = this.nsp.name
      if (!(opts.flags && opts.flags.local)) {
        this.link.flush()
        const out = encode({ packet: { data: packet.data }, opts: { ...roomOpts(opts), flags: opts.flags || {} } })
        const report = (json, attachments) => {
          const r = decode(json, attachments)
          if (r.clientCount !== undefined) clientCountCallback(r.clientCount)
          else ack(r.packet)
        }
        call(() => this.link.native.broadcastWithAck(this.nsp.name, out.json, out.attachments, report)).catch((e) =>
          report(this, withCode(e)),
        )
      }
      super.broadcastWithAck(packet, opts, clientCountCallback, ack)
    }

    async request(message, timeout) {
      this.link.flush()
      const out = encode(message)
      try {
        return await this.link.native.request(this.nsp.name, out.json, out.attachments, timeout)
      } catch (e) {
        throw withCode(e)
      }
    }

    async fetchSockets(opts) {
      const local = await super.fetchSockets(opts)
      if (opts.flags && opts.flags.local) return local
      const timeout = (opts.flags && opts.flags.timeout) || this.requestsTimeout
      const res = await this.request({ type: REMOTE_FETCH, opts: roomOpts(opts) }, timeout)
      if (res.error) throw new Error(`tidewire adapter: the cluster could not be asked: ${res.error}`)
      if (res.received < res.expected) throw new Error('timeout reached while waiting for fetchSockets response')
      return local.concat(decode(res.json, res.attachments))
    }

    async allRooms() {
      if (this.sharded) throw unsupported('allRooms(): the sharded protocol has no request for every room of the cluster')
      const local = new Set(this.rooms.keys())
      const res = await this.request({ type: ALL_ROOMS }, this.requestsTimeout)
      if (res.error) throw new Error(`tidewire adapter: the cluster could not be asked: ${res.error}`)
      if (res.received < res.expected) throw new Error('timeout reached while waiting for allRooms response')
      for (const room of decode(res.json, res.attachments)) local.add(room)
      return local
    }

    notify(message) {
      this.link.flush()
      const out = encode(message)
      call(() => this.link.native.notify(this.nsp.name, out.json, out.attachments))
    }

    addSockets(opts, rooms) {
      if (!(opts.flags && opts.flags.local)) this.notify({ type: REMOTE_JOIN, opts: roomOpts(opts), rooms: [...rooms] })
      return super.addSockets(opts, rooms)
    }

    delSockets(opts, rooms) {
      if (!(opts.flags && opts.flags.local)) this.notify({ type: REMOTE_LEAVE, opts: roomOpts(opts), rooms: [...rooms] })
      return super.delSockets(opts, rooms)
    }

    disconnectSockets(opts, close) {
      if (!(opts.flags && opts.flags.local)) this.notify({ type: REMOTE_DISCONNECT, opts: roomOpts(opts), close: !!close })
      return super.disconnectSockets(opts, close)
    }

    serverSideEmit(packet) {
      if (typeof packet[packet.length - 1] !== 'function') {
        this.notify({ type: SERVER_SIDE_EMIT, data: packet })
        return
      }
      const ack = packet.pop()
      this.request({ type: SERVER_SIDE_EMIT, data: packet }, this.requestsTimeout).then(
        (res) => {
          const responses = decode(res.json, res.attachments)
          if (res.error) ack(new Error(`tidewire adapter: the cluster could not be asked: ${res.error}`), responses)
          else if (res.received < res.expected) ack(new Error(`timeout reached: only ${res.received} responses received out of ${res.expected}`), responses)
          else ack(null, responses)
        },
        (e) => ack(e, []),
      )
    }

    async serverCount() {
      try {
        return await this.link.native.serverCount(this.nsp.name)
      } catch (e) {
        throw withCode(e)
      }
    }

    close() {
      this._linkClosed = true
      this._fanoutDirect()
      for (const taking of [...this.taking.values()]) taking.done(null)
      for (const handed of this.handed.values()) clearTimeout(handed.timer)
      this.handed.clear()
      for (const pid of [...this.kept.keys()]) this.releaseSession(pid)
      this.link.native.removeNamespace(this.nsp.name)
      // socket.io's `await io.close()` waits for it, as for the official
      // adapters' unsubscriptions.
      return this.link.unregister(this)
    }

    // --- what other nodes send -------------------------------------------

    onBroadcast({ packet, opts, uid }) {
      packet.nsp = this.nsp.name
      const log = this.packets
      const logged = log ? log.length : 0
      super.broadcast(packet, localOpts(this, opts, opts.flags))
      // Logged for recovery: with the node it came from (hand-offs tell them apart).
      if (log && log.length > logged) log[log.length - 1][ORIGIN] = uid || ''
      return false
    }

    respond(request, answer) {
      const out = encode({ requestId: request.requestId, ...answer })
      call(() => this.link.native.respond(this.nsp.name, request.uid, out.json, out.attachments))
    }

    onRequest(request) {
      switch (request.type) {
        case SOCKETS:
          return super.sockets(new Set(request.rooms)).then((ids) => this.respond(request, { type: SOCKETS, sockets: [...ids] }))
        case ALL_ROOMS:
          return this.respond(request, { type: ALL_ROOMS, rooms: [...this.rooms.keys()] })
        case REMOTE_JOIN:
        case REMOTE_LEAVE:
        case REMOTE_DISCONNECT:
          return this.onRoomRequest(request)
        case REMOTE_FETCH:
          return super.fetchSockets(localOpts(this, request.opts)).then((sockets) =>
            this.respond(request, {
              type: REMOTE_FETCH,
              sockets: sockets.map((s) => ({ id: s.id, handshake: s.handshake, rooms: [...s.rooms], data: s.data })),
            }),
          )
        case SERVER_SIDE_EMIT: {
          const args = request.data
          if (request.requestId === undefined) return this.nsp._onServerSideEmit(args)
          let called = false
          args.push((arg) => {
            if (called) return
            called = true
            this.respond(request, { type: SERVER_SIDE_EMIT, data: arg })
          })
          return this.nsp._onServerSideEmit(args)
        }
        case BROADCAST:
          return super.broadcastWithAck(
            request.packet,
            localOpts(this, request.opts, request.opts.flags),
            (clientCount) => this.respond(request, { type: BROADCAST_CLIENT_COUNT, clientCount }),
            (arg) => this.respond(request, { type: BROADCAST_ACK, packet: arg }),
          )
      }
    }

    onRoomRequest(request) {
      if (request.sid === undefined) {
        const opts = localOpts(this, request.opts)
        if (request.type === REMOTE_JOIN) return super.addSockets(opts, request.rooms)
        if (request.type === REMOTE_LEAVE) return super.delSockets(opts, request.rooms)
        return super.disconnectSockets(opts, request.close)
      }
      // The single-socket form of older nodes, answered by the holder.
      const socket = this.nsp.sockets.get(request.sid)
      if (!socket) return
      if (request.type === REMOTE_JOIN) socket.join(request.room)
      else if (request.type === REMOTE_LEAVE) socket.leave(request.room)
      else socket.disconnect(request.close)
      this.respond(request, { type: request.type })
    }
  }
}

const classes = new Map()
function adapterClass(Base) {
  if (!classes.has(Base)) classes.set(Base, clusterAdapter(Base))
  return classes.get(Base)
}

// --- options -----------------------------------------------------------

/** notepack.io's encoding of `{a: [1, 'x', <01>]}`: the default parser's. */
const NOTEPACK_PROBE = '81a1619301a178c40101'

function checkParser(parser) {
  if (parser === undefined) return
  let bytes
  try {
    bytes = Buffer.from(parser.encode({ a: [1, 'x', Buffer.from([1])] })).toString('hex')
  } catch {
    bytes = null
  }
  if (bytes !== NOTEPACK_PROBE) {
    throw unsupported('option "parser": only notepack.io (the default) is supported; Tidewire encodes the cluster messages itself, as notepack.io does')
  }
}

function positive(name, v) {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 2 ** 31) throw invalid(`option "${name}" must be a positive number of milliseconds`)
  return Math.round(v)
}

/** `@socket.io/redis-adapter`'s createAdapter options. */
function classicOptions(opts) {
  const known = ['key', 'requestsTimeout', 'publishOnSpecificResponseChannel', 'parser']
  for (const k of Object.keys(opts)) {
    if (!known.includes(k) && opts[k] !== undefined) throw unsupported(`unknown option "${k}" (supported: ${known.join(', ')})`)
  }
  if (opts.key !== undefined && (typeof opts.key !== 'string' || !opts.key)) throw invalid('option "key" must be a non-empty string')
  checkParser(opts.parser)
  return {
    key: opts.key || 'socket.io',
    requestsTimeout: positive('requestsTimeout', opts.requestsTimeout) || 5000,
    specificResponseChannel: !!opts.publishOnSpecificResponseChannel,
  }
}

/** `@socket.io/redis-adapter`'s createShardedAdapter options. */
function shardedOptions(opts) {
  const known = ['channelPrefix', 'subscriptionMode']
  for (const k of Object.keys(opts)) {
    if (k === 'heartbeatInterval' || k === 'heartbeatTimeout') {
      throw unsupported(`option "${k}": Tidewire's sharded adapter counts nodes by Redis (PUBSUB SHARDNUMSUB), not by heartbeats`)
    }
    if (!known.includes(k) && opts[k] !== undefined) throw unsupported(`unknown option "${k}" (supported: ${known.join(', ')})`)
  }
  if (opts.channelPrefix !== undefined && (typeof opts.channelPrefix !== 'string' || !opts.channelPrefix)) {
    throw invalid('option "channelPrefix" must be a non-empty string')
  }
  const mode = opts.subscriptionMode === undefined ? 'dynamic' : opts.subscriptionMode
  if (!['static', 'dynamic', 'dynamic-private'].includes(mode)) {
    throw invalid('option "subscriptionMode" must be "static", "dynamic" or "dynamic-private"')
  }
  return { key: opts.channelPrefix || 'socket.io', requestsTimeout: 5000, specificResponseChannel: false, subscriptionMode: mode }
}

/** The connection and the adapter options from `(pubClient, subClient, opts)` or `({ url, ... })`. */
function parseArgs(name, pubClient, subClient, opts, check) {
  if (settings.isRedisClient(pubClient)) {
    if (!settings.isRedisClient(subClient)) throw invalid(`${name}(pubClient, subClient, opts): subClient must be a Redis client too`)
    if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw invalid(`${name}: opts must be an object`)
    return { connection: settings.clientSettings(pubClient, 'pubClient'), options: check(opts || {}), pubClient, subClient }
  }
  if (pubClient !== null && typeof pubClient === 'object' && subClient === undefined && opts === undefined) {
    const rest = {}
    const connection = {}
    for (const [k, v] of Object.entries(pubClient)) (settings.CONNECTION_KEYS.includes(k) ? connection : rest)[k] = v
    return { connection: settings.objectSettings(connection), options: check(rest) }
  }
  throw invalid(`${name} takes (pubClient, subClient, opts?) with node-redis or ioredis clients, ({ url, ...opts }), or nothing (this node only)`)
}

/** The adapter factory socket.io takes (`new Server(http, { adapter })`). */
function factory({ connection, options, pubClient, subClient }) {
  const links = new WeakMap()
  const linkOptions = {
    url: connection.url,
    redisCluster: connection.redisCluster,
    key: options.key,
    requestsTimeout: options.requestsTimeout,
    specificResponseChannel: options.specificResponseChannel,
    subscriptionMode: options.subscriptionMode,
  }
  // Checked now, so that a bad URL fails at createAdapter, not at the first namespace.
  call(() => new URL(connection.url.split(',')[0]))
  // socket.io calls it with `new`: a plain function, not an arrow.
  return function tidewireAdapter(nsp) {
    let link = links.get(nsp.server)
    if (!link || link.closed) {
      link = new Link(linkOptions)
      links.set(nsp.server, link)
    }
    const Cls = adapterClass(baseFor(nsp))
    return new Cls(nsp, link, { requestsTimeout: options.requestsTimeout, sharded: !!options.subscriptionMode, pubClient, subClient })
  }
}

/**
 * `createAdapter()`: this node only, rooms in socket.io-adapter's maps.
 * `createAdapter(pubClient, subClient, opts)` / `createAdapter({ url, ...opts })`:
 * a Redis cluster, wire-compatible with `@socket.io/redis-adapter`'s `createAdapter`.
 */
function createAdapter(pubClient, subClient, opts) {
  if (pubClient === undefined && subClient === undefined && opts === undefined) {
    return function tidewireLocalAdapter(nsp) {
      return new (fastAdapterClass(baseFor(nsp)))(nsp)
    }
  }
  return factory(parseArgs('createAdapter', pubClient, subClient, opts, classicOptions))
}

/** `@socket.io/redis-adapter`'s `createShardedAdapter` (Redis 7 sharded pub/sub), same arguments. */
function createShardedAdapter(pubClient, subClient, opts) {
  return factory(parseArgs('createShardedAdapter', pubClient, subClient, opts, shardedOptions))
}

module.exports = { createAdapter, createShardedAdapter }
