'use strict'
// Preloaded into socket.io's own server tests (socketio/socket.io,
// packages/socket.io/test) to run them with Tidewire's internals:
//   TIDEWIRE_ENGINE=1   every Server attaches Tidewire's Engine instead of
//                       engine.io (through engine.io's `attach`, which
//                       socket.io calls), socket.io's own options left out
//   TIDEWIRE_ADAPTER=1  every Server without an adapter of its own gets
//                       Tidewire's createAdapter() (in-memory rooms in the
//                       core) instead of socket.io-adapter's
// TIDEWIRE_NODE is the bindings-node directory. Run by run-socket.io-suite.sh.
const path = require('node:path')

const here = process.cwd()
const tidewire = require(path.join(process.env.TIDEWIRE_NODE, 'socket.io.js'))
const fromSuite = (name) => require(require.resolve(name, { paths: [here] }))

// Options of socket.io's Server that it passes on to engine.io's attach,
// which engine.io ignores.
const SOCKET_IO_OPTIONS = new Set([
  'adapter',
  'serveClient',
  'connectTimeout',
  'parser',
  'connectionStateRecovery',
  'cleanupEmptyChildNamespaces',
])

// How often each part was put in, printed at exit (a run that swapped
// nothing proves nothing).
const used = { engines: 0, adapters: 0 }
process.on('exit', () => process.stderr.write(`tidewire parts used: ${JSON.stringify(used)}\n`))

if (process.env.TIDEWIRE_ENGINE === '1') {
  const eio = fromSuite('engine.io')
  eio.attach = function attach(server, opts = {}) {
    used.engines++
    const own = {}
    for (const [k, v] of Object.entries(opts)) if (!SOCKET_IO_OPTIONS.has(k) && v !== undefined) own[k] = v
    const engine = new tidewire.Engine(own)
    engine.attach(server)
    return engine
  }
}

if (process.env.TIDEWIRE_ADAPTER === '1') {
  const stock = fromSuite('socket.io-adapter')
  fromSuite('tsx/cjs')
  const { Server } = require(path.join(here, 'lib', 'index.ts'))
  const adapter = Server.prototype.adapter
  Server.prototype.adapter = function (v) {
    if (arguments.length && (v === stock.Adapter || v === stock.SessionAwareAdapter)) {
      used.adapters++
      v = tidewire.createAdapter()
    }
    return adapter.apply(this, arguments)
  }
}
