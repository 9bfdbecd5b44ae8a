'use strict'
// The broadcast fast path of `tidewire/socket.io`: when a socket.io Server
// uses Tidewire's adapter and is bound to Tidewire's Engine, a broadcast
// crosses into the core once (its packet encoded once, its rooms and
// except) and the core queues it on every reached socket's Engine.IO
// session; JavaScript does the same work for 1 recipient or 10,000.
//
// The adapter's maps stay what socket.io and apps read; the core keeps a
// mirror of them (src/fanout.rs), fed with the room changes in batches,
// before the next broadcast or at the end of the run. Everything else of
// socket.io's broadcast is unchanged: the session-aware adapter still adds
// its offset and logs the packet (connection state recovery), the cluster
// adapter still publishes it, broadcasts with acks stay on socket.io's
// path (each socket keeps the ack), and so does every broadcast when the
// engine is not Tidewire's (stock engine.io).
//
// Sockets the core cannot write for (an `onAnyOutgoing` listener, which
// socket.io calls per socket and packet, or a connection of another
// engine) are written by socket.io's path, each broadcast skipping the
// ones the core wrote to.

const { SessionAwareAdapter } = require('socket.io-adapter')
const native = require('../index.js')
const { Engine, Socket: EngineSocket } = require('./engine.js')

// On a socket.io socket: the core writes its broadcasts.
const kFast = Symbol('tidewire.fastPath')

/** A room as the core's mirror names it: strings as they are, numbers tagged (`join(1)` is not `join("1")`). */
function roomKey(room) {
  if (typeof room === 'string') return room
  if (typeof room === 'number') return `\u0000${room}`
  return null
}

/** The keys of a Set of rooms, or null when one cannot be mirrored. */
function roomKeys(rooms) {
  const keys = []
  if (!rooms) return keys
  for (const room of rooms) {
    const key = roomKey(room)
    if (key === null) return null
    keys.push(key)
  }
  return keys
}

// socket.io calls `onAnyOutgoing` listeners for every packet a socket is
// sent: a socket with one is handed back to socket.io's path.
function onAnyOutgoing(listener) {
  this.adapter._fanoutDetach(this)
  return Object.getPrototypeOf(this).onAnyOutgoing.call(this, listener)
}

function prependAnyOutgoing(listener) {
  this.adapter._fanoutDetach(this)
  return Object.getPrototypeOf(this).prependAnyOutgoing.call(this, listener)
}

/** socket.io-adapter's `Base` (Adapter or SessionAwareAdapter) with the fast path. */
function withFastPath(Base) {
  return class TidewireFastAdapter extends Base {
    constructor(nsp) {
      super(nsp)
      // undefined: not known yet (the engine is bound after the main
      // namespace exists); null: socket.io's path; else the core's mirror.
      this._fanout = undefined
      this._fanoutChanges = []
      // Sockets socket.io's path writes to while the fast path is on.
      this._fanoutOthers = new Set()
      // Set by `broadcast` for socket.io-adapter's `_encode` and `apply` it calls.
      this._fanoutArmed = false
      this._fanoutPacket = null
      // A room held as a number is in the mirror (tagged): other nodes name it as a string.
      this._fanoutNumeric = false
      /** Broadcasts the core fanned out (for tests and metrics). */
      this.fastBroadcasts = 0
    }

    _fanoutOn() {
      if (this._fanout === undefined) {
        const engine = this.nsp.server.engine
        this._fanout = engine instanceof Engine ? new native.Fanout() : null
        if (this._fanout) this._fanoutDirect()
      }
      return this._fanout !== null
    }

    /** Back to socket.io's path for good (a room the mirror cannot name). */
    _fanoutOff() {
      this._fanout = null
      this._fanoutChanges = []
      const engine = this.nsp.server.engine
      if (engine && engine._mirrors) engine._mirrors.delete(this)
      this._fanoutDirect()
    }

    /**
     * What the fast path's state allows changed (sockets socket.io's path
     * writes to, rooms held as numbers, the fast path itself): the
     * clustered adapter decides whether the core may deliver other nodes'
     * broadcasts without JavaScript.
     */
    _fanoutDirect() {}

    _fanoutChange(kind, id, room) {
      const changes = this._fanoutChanges
      changes.push(kind, id, room)
      if (changes.length === 3) {
        this.nsp.server.engine._mirrors.add(this)
        queueMicrotask(() => this._fanoutFlush())
      }
    }

    _fanoutFlush() {
      if (this._fanoutChanges.length === 0 || !this._fanout) return
      const changes = this._fanoutChanges
      this._fanoutChanges = []
      this.nsp.server.engine._mirrors.delete(this)
      this._fanout.update(changes)
    }

    /** A connected socket: the core writes its broadcasts if its connection is the Engine's. */
    _fanoutAttach(socket) {
      if (socket[kFast] !== undefined) return
      const conn = socket.conn
      const outgoing = socket._anyOutgoingListeners && socket._anyOutgoingListeners.length > 0
      if (conn instanceof EngineSocket && !outgoing) {
        this._fanoutFlush()
        this._fanout.attach(socket.id, conn._handle)
        socket[kFast] = true
        socket.onAnyOutgoing = onAnyOutgoing
        socket.prependAnyOutgoing = prependAnyOutgoing
      } else {
        socket[kFast] = false
        this._fanoutOthers.add(socket.id)
        this._fanoutDirect()
      }
    }

    _fanoutDetach(socket) {
      if (socket[kFast] !== true) return
      socket[kFast] = false
      this._fanoutOthers.add(socket.id)
      if (this._fanout) this._fanoutChange('d', socket.id, '')
      this._fanoutDirect()
    }

    // --- room bookkeeping: socket.io-adapter's maps, mirrored -----------

    addAll(id, rooms) {
      super.addAll(id, rooms)
      if (!this._fanoutOn()) return
      for (const room of rooms) {
        const key = roomKey(room)
        if (key === null) return this._fanoutOff()
        if (typeof room === 'number' && !this._fanoutNumeric) {
          this._fanoutNumeric = true
          this._fanoutDirect()
        }
        this._fanoutChange('j', id, key)
      }
      // socket.io reaches connected sockets only: a socket is attached at
      // its first join once connected (its own room, in `_onconnect`).
      const socket = this.nsp.sockets.get(id)
      if (socket) this._fanoutAttach(socket)
    }

    del(id, room) {
      const r = super.del(id, room)
      if (this._fanout) {
        const key = roomKey(room)
        if (key !== null) this._fanoutChange('l', id, key)
      }
      return r
    }

    delAll(id) {
      const r = super.delAll(id)
      if (this._fanout) this._fanoutChange('r', id, '')
      if (this._fanoutOthers.delete(id) && this._fanoutOthers.size === 0) this._fanoutDirect()
      return r
    }

    // --- broadcasts -------------------------------------------------------

    // socket.io-adapter's `broadcast` (under the session-aware one's, which
    // adds the offset) encodes the packet with `_encode`, then writes it to
    // each socket `apply` visits: with the fast path armed, `_encode` keeps
    // the encoded packet and `apply` hands it to the core instead.
    broadcast(packet, opts) {
      if (!this._fanout) return super.broadcast(packet, opts)
      // To rooms nobody here is in: nothing to encode or hand over (the
      // session-aware adapter still logs it, for sessions kept here).
      if (opts.rooms && opts.rooms.size > 0 && !(this instanceof SessionAwareAdapter) && !this._reachesAny(opts.rooms)) return
      this._fanoutArmed = true
      try {
        return super.broadcast(packet, opts)
      } finally {
        this._fanoutArmed = false
        this._fanoutPacket = null
      }
    }

    _reachesAny(rooms) {
      for (const room of rooms) if (this.rooms.has(room)) return true
      return false
    }

    _encode(packet, packetOpts) {
      if (!this._fanoutArmed) return super._encode(packet, packetOpts)
      this._fanoutArmed = false
      // No precomputed ws frame: the core writes the frames.
      const encoded = this.encoder.encode(packet)
      this._fanoutPacket = { encoded, volatile: !!packetOpts.volatile }
      return encoded
    }

    apply(opts, callback) {
      const packet = this._fanoutPacket
      if (!packet) return super.apply(opts, callback)
      this._fanoutPacket = null
      const rooms = roomKeys(opts.rooms)
      const except = roomKeys(opts.except)
      // A room no socket can have joined (the mirror names every joined one).
      if (rooms === null || except === null) return super.apply(opts, callback)
      // The rooms as they are now, and what sockets wrote before this
      // broadcast, reach the core before it.
      this.nsp.server.engine._flushWrites()
      this._fanout.broadcast(rooms, except, packet.encoded, packet.volatile)
      this.fastBroadcasts++
      if (this._fanoutOthers.size > 0) {
        super.apply(opts, (socket) => {
          if (socket[kFast] !== true) callback(socket)
        })
      }
    }
  }
}

const classes = new Map()
/** The fast-path class over `Base`, made once per base. */
function fastAdapterClass(Base) {
  if (!classes.has(Base)) classes.set(Base, withFastPath(Base))
  return classes.get(Base)
}

module.exports = { fastAdapterClass }
