// The WebSocket hand-off: on a plain http.Server, `tidewire/socket.io`'s
// Engine hands each WebSocket connection (its file descriptor, duplicated)
// over to the core, which answers the upgrade and reads and writes the
// frames itself. Real socket.io 4.8 and socket.io-client; Express on the
// same port; over https.Server the frames stay with npm ws.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { execFileSync, spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import { Server } from 'socket.io'
import { tidewire, until, once, socketIoClients } from './adapter-helpers.mjs'

const { createAdapter, Engine } = tidewire
const T = { timeout: 30_000 }

/** socket.io with Tidewire's Engine (and adapter) on an http.Server serving Express too. */
async function start({ engine: engineOpts = {}, io: ioOpts = {}, tls = null, setup = () => {} } = {}) {
  const app = express()
  app.get('/health', (req, res) => res.send('ok'))
  const server = tls ? https.createServer(tls, app) : http.createServer(app)
  const io = new Server({ adapter: createAdapter(), ...ioOpts })
  const engine = new Engine({ pingInterval: 5000, pingTimeout: 5000, ...engineOpts })
  engine.attach(server, { path: '/socket.io/' })
  io.bind(engine)
  io.on('connection', (socket) => {
    socket.on('echo', (...args) => args.pop()(...args))
    socket.on('path', (ack) => ack({ transport: socket.conn.transport.name, handedOff: socket.conn.handedOff }))
    socket.on('burst-then-kick', (n) => {
      for (let i = 0; i < n; i++) socket.emit('burst', i)
      socket.disconnect(true)
    })
  })
  setup(io, engine)
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`
  return { url, io, engine, server, ...socketIoClients(io, server, url) }
}

/** The TCP connections Node's http.Server still holds. */
function nodeConnections(server) {
  return new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))))
}

function selfSigned() {
  const dir = mkdtempSync(join(tmpdir(), 'tidewire-tls-'))
  try {
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })
    return { key: readFileSync(key), cert: readFileSync(cert) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('WebSocket hand-off to the core', () => {
  test('taken on http.Server: binary, acks, broadcasts; Node keeps no connection; Express still answers', T, async () => {
    const s = await start()
    try {
      const [a, b] = [await s.connect(), await s.connect()]
      assert.deepEqual(await a.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: true })
      assert.equal(s.engine._native.handedOver, 2)
      assert.equal(s.socketOf(a).handshake.address, '127.0.0.1')
      // Node released its sockets: the http.Server holds no connection.
      assert.equal(await nodeConnections(s.server), 0)

      const blob = Buffer.from([0, 1, 2, 250, 255])
      const [text, bin] = await new Promise((resolve) => a.emit('echo', 'hé', blob, (...args) => resolve(args)))
      assert.equal(text, 'hé')
      assert.deepEqual([...bin], [...blob])
      const got = once(b, 'news')
      s.io.emit('news', { n: 1 }, Buffer.from('x'))
      const [obj, buf] = await got
      assert.deepEqual(obj, { n: 1 })
      assert.equal(Buffer.from(buf).toString(), 'x')

      // Express routes on the same port.
      const res = await fetch(`${s.url}/health`)
      assert.equal(await res.text(), 'ok')
    } finally {
      await s.close()
    }
  })

  test('handOff: false keeps the WebSocket on npm ws; a non-boolean is refused', T, async () => {
    assert.throws(() => new Engine({ handOff: 'yes' }), { code: 'ERR_INVALID_ARG', message: /handOff/ })
    const s = await start({ engine: { handOff: false } })
    try {
      const client = await s.connect()
      assert.deepEqual(await client.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: false })
      assert.equal(s.engine._native.handedOver, 0)
      assert.equal(await nodeConnections(s.server), 1)
    } finally {
      await s.close()
    }
  })

  test('over https.Server the frames stay with npm ws (TLS ends in Node)', T, async () => {
    const s = await start({ tls: selfSigned() })
    try {
      const client = await s.connect({ rejectUnauthorized: false })
      assert.deepEqual(await client.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: false })
      const blob = Buffer.from('binary over tls')
      assert.deepEqual([...(await client.timeout(3000).emitWithAck('echo', blob))], [...blob])
      assert.equal(s.engine._native.handedOver, 0)
    } finally {
      await s.close()
    }
  })

  test('a client asking for a subprotocol stays with npm ws, which answers it', T, async () => {
    const s = await start()
    try {
      const client = await s.connect({ protocols: ['chat'] })
      assert.equal(client.io.engine.transport.ws.protocol, 'chat')
      assert.deepEqual(await client.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: false })
      assert.equal(s.engine._native.handedOver, 0)
    } finally {
      await s.close()
    }
  })

  test("the engine's connection caps count handed-over connections until their session ends", T, async () => {
    const refused = []
    const s = await start({
      engine: { limits: { maxConnPerIp: 1 } },
      setup: (io, engine) => engine.on('connection_error', (e) => refused.push(e.code)),
    })
    try {
      const first = await s.connect()
      await assert.rejects(s.connect())
      assert.deepEqual(refused, ['too_many_connections'])
      assert.equal(s.engine._native.handedOver, 1)
      first.close()
      await until('the first session ended', () => s.engine._native.sessionCount === 0, 5000)
      const again = await s.connect()
      assert.deepEqual(await again.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: true })
    } finally {
      await s.close()
    }
  })

  test('upgrade from polling: upgrading and upgrade events, then the core carries the session', T, async () => {
    const seen = []
    const s = await start({
      setup: (io) =>
        io.on('connection', (socket) => {
          seen.push(`connect:${socket.conn.transport.name}:${socket.conn.handedOff}`)
          socket.conn.on('upgrading', (t) => seen.push(`upgrading:${t.name}`))
          socket.conn.on('upgrade', (t) => seen.push(`upgrade:${t.name}:${socket.conn.upgraded}:${socket.conn.handedOff}`))
        }),
    })
    try {
      const client = await s.connect({ transports: ['polling', 'websocket'] })
      await until('the upgrade events', () => seen.length === 3, 5000)
      assert.deepEqual(seen, ['connect:polling:false', 'upgrading:websocket', 'upgrade:websocket:true:true'])
      await until('the client upgraded', () => client.io.engine.transport.name === 'websocket', 5000)
      assert.deepEqual(await client.timeout(3000).emitWithAck('path'), { transport: 'websocket', handedOff: true })
      assert.deepEqual(await client.timeout(3000).emitWithAck('echo', Buffer.from('after')), Buffer.from('after'))
      assert.equal(s.engine._native.handedOver, 1)
    } finally {
      await s.close()
    }
  })

  test('a server-side disconnect delivers everything queued, then closes', T, async () => {
    const s = await start()
    try {
      const client = await s.connect()
      assert.equal(s.engine._native.handedOver, 1)
      const got = []
      client.on('burst', (i) => got.push(i))
      const gone = once(client, 'disconnect')
      client.emit('burst-then-kick', 500)
      const [reason] = await gone
      assert.equal(reason, 'io server disconnect')
      assert.deepEqual(got, Array.from({ length: 500 }, (_, i) => i))
      await until('the engine forgot the session', () => s.engine.clientsCount === 0, 5000)
    } finally {
      await s.close()
    }
  })

  test('a client close reaches socket.io; the session and its connection end', T, async () => {
    const s = await start()
    try {
      const client = await s.connect()
      assert.equal(s.engine._native.handedOver, 1)
      const socket = s.socketOf(client)
      const gone = once(socket, 'disconnect')
      client.close()
      const [reason] = await gone
      assert.equal(reason, 'client namespace disconnect')
      await until('the engine forgot the session', () => s.engine.clientsCount === 0 && s.engine._native.sessionCount === 0, 5000)
    } finally {
      await s.close()
    }
  })

  test('the core closes the connection when the session ends, even with a child process running', T, async () => {
    const s = await start()
    // A child spawned while the connection is open must not inherit it
    // (close-on-exec): its copy would keep the TCP connection open.
    let child
    try {
      const client = await s.connect()
      assert.equal(s.engine._native.handedOver, 1)
      child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' })
      await once(child, 'spawn')
      const raw = client.io.engine.transport.ws
      const tcpClosed = new Promise((resolve) => raw.addEventListener('close', resolve))
      s.socketOf(client).disconnect(true)
      // ws's client waits for the server's FIN after the closing handshake
      // (its own timeout is 30 s): this close proves the descriptor is gone.
      await Promise.race([
        tcpClosed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('the connection stayed open')), 5000)),
      ])
    } finally {
      if (child) child.kill()
      await s.close()
    }
  })

  test('io.close() closes handed-over connections and the http.Server closes without waiting', T, async () => {
    const s = await start()
    const clients = [await s.connect(), await s.connect(), await s.connect({ transports: ['polling', 'websocket'] })]
    await until('the upgrade', () => clients[2].io.engine.transport.name === 'websocket', 5000)
    assert.equal(s.engine._native.handedOver, 3)
    const gone = clients.map((c) => once(c, 'disconnect'))
    // Node holds none of them: the http.Server closes at once, without closeAllConnections().
    assert.equal(await nodeConnections(s.server), 0)
    const serverClosed = new Promise((resolve) => s.server.close(resolve))
    await s.io.close()
    for (const [reason] of await Promise.all(gone)) assert.match(reason, /io server disconnect|transport close/)
    await serverClosed
    assert.equal(s.engine.clientsCount, 0)
    await until('the core closed every session', () => s.engine._native.sessionCount === 0, 5000)
  })
})
