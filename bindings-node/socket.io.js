'use strict'
// `tidewire/socket.io`: Tidewire's internals for an unchanged socket.io
// app. `Engine` (js/engine.js) is an engine.io-compatible server for
// `io.bind(engine)`, carried over the app's own http.Server.

const { Engine, Socket } = require('./js/engine.js')

module.exports = { Engine, EngineSocket: Socket }
