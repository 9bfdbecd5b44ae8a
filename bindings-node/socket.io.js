'use strict'
// `tidewire/socket.io`: Tidewire's internals for an unchanged socket.io
// app. `Engine` (js/engine.js) is an engine.io-compatible server for
// `io.bind(engine)`, carried over the app's own http.Server;
// `createAdapter` / `createShardedAdapter` (js/adapter.js) are socket.io
// adapters with `@socket.io/redis-adapter`'s API over the core's cluster.

const { Engine, Socket } = require('./js/engine.js')
const { createAdapter, createShardedAdapter } = require('./js/adapter.js')

module.exports = { Engine, EngineSocket: Socket, createAdapter, createShardedAdapter }
