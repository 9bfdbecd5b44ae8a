// `tidewire/socket.io`'s Engine under the real socket.io Server (npm), on
// an http.Server that also serves an Express app, with npm
// socket.io-client as the peer: over WebSocket, long-polling and the
// upgrade between them.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import express from 'express'
import { Server } from 'socket.io'
import { io as connectClient } from 'socket.io-client'
// Through the package's own `exports` map, as an app imports it.
import { Engine } from 'tidewire/socket.io'

const T = { timeout: 20_000 }

/**
 * A socket.io Server bound to Tidewire's Engine on an http.Server that
 * also serves Express routes; `setup(io, engine)` adds the app's handlers.
 */
async function start({ engine: engineOpts = {}, io: ioOpts = {}, setup = () => {}, tls = null } = {}) {
  const app = express()
  app.get('/health', (req, res) => res.send('ok'))
  const httpServer = tls ? https.createServer(tls, app) : http.createServer(app)
  const io = new Server(ioOpts)
  const engine = new Engine({ pingInterval: 2000, pingTimeout: 2000, ...engineOpts })
  engine.attach(httpServer, { path: '/socket.io/' })
  io.bind(engine)
  setup(io, engine)
  httpServer.listen(0, '127.0.0.1')
  await once(httpServer, 'listening')
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${httpServer.address().port}`
  const clients = []
  return {
    url,
    io,
    engine,
    httpServer,
    /** A client, connected (or rejected with the connect_error). */
    connect(opts = {}) {
      const client = connectClient(url, { reconnection: false, forceNew: true, timeout: 5000, ...opts })
      clients.push(client)
      return new Promise((resolve, reject) => {
        client.once('connect', () => resolve(client))
        client.once('connect_error', (e) => reject(e))
      })
    },
    async close() {
      for (const c of clients) c.close()
      await io.close()
      httpServer.closeAllConnections()
      await new Promise((resolve) => httpServer.close(() => resolve()))
    },
  }
}

/** The usual app: echo with ack, rooms, binary, server-side disconnect. */
function chatApp(io) {
  io.on('connection', (socket) => {
    socket.on('echo', (...args) => {
      const ack = args.pop()
      ack(...args)
    })
    socket.on('join', (room, ack) => {
      socket.join(room)
      ack(true)
    })
    socket.on('shout', (room, msg) => io.to(room).emit('shout', msg))
    socket.on('tell-others', (room, msg) => socket.to(room).emit('shout', msg))
    socket.on('transport', (ack) => ack(socket.conn.transport.name))
    socket.on('kick', () => socket.disconnect(true))
  })
}

function nextEvent(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${ms} ms`)), ms)
    emitter.once(event, (...args) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

function waitFor(predicate, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const poll = () => {
      if (predicate()) return resolve()
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(poll, 10)
    }
    poll()
  })
}

const TRANSPORTS = {
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
  upgrade: { transports: ['polling', 'websocket'] },
}

describe('Engine under socket.io', () => {
  for (const [name, opts] of Object.entries(TRANSPORTS)) {
    test(`${name}: connect, ack, binary, and the transport socket.io sees`, T, async () => {
      const s = await start({ setup: chatApp })
      try {
        const client = await s.connect(opts)
        if (name === 'upgrade') await waitFor(() => client.io.engine.transport.name === 'websocket', 'the upgrade')
        const expected = name === 'polling' ? 'polling' : 'websocket'
        assert.equal(await client.timeout(3000).emitWithAck('transport'), expected)
        assert.equal(s.engine.clientsCount, 1)
        assert.deepEqual(Object.keys(s.engine.clients), [[...s.io.of('/').sockets.values()][0].conn.id])

        const [text, obj] = await new Promise((resolve) => client.emit('echo', 'hé', { n: [1, 2] }, (...a) => resolve(a)))
        assert.equal(text, 'hé')
        assert.deepEqual(obj, { n: [1, 2] })

        const blob = Buffer.from([0, 1, 2, 250, 255])
        const reply = await client.timeout(3000).emitWithAck('echo', { blob, nested: [blob] })
        assert.ok(Buffer.isBuffer(reply.blob), 'binary comes back as a Buffer')
        assert.deepEqual([...reply.blob], [...blob])
        assert.deepEqual([...reply.nested[0]], [...blob])
      } finally {
        await s.close()
      }
    })
  }

  test('polling to websocket: the engine socket reports upgrading and upgrade', T, async () => {
    const seen = []
    const s = await start({
      setup: (io) => {
        chatApp(io)
        io.on('connection', (socket) => {
          seen.push(`connect:${socket.conn.transport.name}`)
          socket.conn.on('upgrading', (t) => seen.push(`upgrading:${t.name}`))
          socket.conn.on('upgrade', (t) => seen.push(`upgrade:${t.name}:${socket.conn.upgraded}`))
        })
      },
    })
    try {
      const client = await s.connect(TRANSPORTS.upgrade)
      await waitFor(() => seen.length === 3, 'the upgrade events')
      assert.deepEqual(seen, ['connect:polling', 'upgrading:websocket', 'upgrade:websocket:true'])
      assert.equal(await client.timeout(3000).emitWithAck('transport'), 'websocket')
    } finally {
      await s.close()
    }
  })

  test('connect middleware reads socket.handshake.auth; data reaches the handlers; refusals', T, async () => {
    const s = await start({
      setup: (io) => {
        io.use((socket, next) => {
          const { token } = socket.handshake.auth
          if (token !== 'secret') {
            const e = new Error('unauthorized')
            e.data = { reason: 'bad token' }
            return next(e)
          }
          socket.data.user = 'ann'
          next()
        })
        io.on('connection', (socket) => {
          socket.on('whoami', (ack) =>
            ack({
              user: socket.data.user,
              query: socket.handshake.query.room,
              address: socket.handshake.address,
              header: socket.handshake.headers['x-app'],
            }),
          )
        })
      },
    })
    try {
      for (const opts of Object.values(TRANSPORTS)) {
        const client = await s.connect({ ...opts, auth: { token: 'secret' }, query: { room: 'lobby' }, extraHeaders: { 'x-app': 'demo' } })
        const me = await client.timeout(3000).emitWithAck('whoami')
        assert.equal(me.user, 'ann')
        assert.equal(me.query, 'lobby')
        assert.match(me.address, /127\.0\.0\.1/)
        if (opts.transports[0] === 'polling') assert.equal(me.header, 'demo')
        client.close()

        const refused = await s.connect({ ...opts, auth: { token: 'nope' } }).then(
          () => assert.fail('connected with a bad token'),
          (e) => e,
        )
        assert.equal(refused.message, 'unauthorized')
        assert.deepEqual(refused.data, { reason: 'bad token' })
      }
    } finally {
      await s.close()
    }
  })

  test('rooms: io.to(room).emit and socket.to(room).emit', T, async () => {
    const s = await start({ setup: chatApp })
    try {
      const [a, b, c] = await Promise.all([
        s.connect(TRANSPORTS.websocket),
        s.connect(TRANSPORTS.polling),
        s.connect(TRANSPORTS.upgrade),
      ])
      await a.timeout(3000).emitWithAck('join', 'r')
      await b.timeout(3000).emitWithAck('join', 'r')
      const got = { a: [], b: [], c: [] }
      a.on('shout', (m) => got.a.push(m))
      b.on('shout', (m) => got.b.push(m))
      c.on('shout', (m) => got.c.push(m))
      c.emit('shout', 'r', 'to everyone in r')
      await waitFor(() => got.a.length === 1 && got.b.length === 1, 'the room broadcast')
      a.emit('tell-others', 'r', 'from a')
      await waitFor(() => got.b.length === 2, "b's copy")
      await new Promise((r) => setTimeout(r, 100))
      assert.deepEqual(got, { a: ['to everyone in r'], b: ['to everyone in r', 'from a'], c: [] })
      assert.deepEqual([...s.io.of('/').adapter.rooms.get('r')].length, 2)
    } finally {
      await s.close()
    }
  })

  test('disconnect reasons: server-side and client-side', T, async () => {
    const reasons = []
    const s = await start({
      setup: (io) => {
        chatApp(io)
        io.on('connection', (socket) => socket.on('disconnect', (reason) => reasons.push(reason)))
      },
    })
    try {
      for (const opts of [TRANSPORTS.websocket, TRANSPORTS.polling]) {
        reasons.length = 0
        // The server kicks the client.
        const kicked = await s.connect(opts)
        const clientSide = nextEvent(kicked, 'disconnect')
        kicked.emit('kick')
        assert.equal((await clientSide)[0], 'io server disconnect')
        await waitFor(() => reasons.length === 1, 'the server-side reason')
        assert.equal(reasons[0], 'server namespace disconnect')

        // The client leaves.
        const leaving = await s.connect(opts)
        leaving.disconnect()
        await waitFor(() => reasons.length === 2, 'the client disconnect')
        assert.equal(reasons[1], 'client namespace disconnect')

        // The client's connection goes away.
        const dropped = await s.connect(opts)
        dropped.io.engine.close()
        await waitFor(() => reasons.length === 3, 'the transport close')
        assert.equal(reasons[2], 'transport close')
        await waitFor(() => s.engine.clientsCount === 0, 'every engine socket gone')
      }
    } finally {
      await s.close()
    }
  })

  test('maxHttpBufferSize is enforced on WebSocket messages and polling bodies', T, async () => {
    const reasons = []
    const s = await start({
      engine: { maxHttpBufferSize: 1000 },
      setup: (io) => {
        chatApp(io)
        io.on('connection', (socket) => socket.on('disconnect', (reason) => reasons.push(reason)))
      },
    })
    try {
      for (const opts of [TRANSPORTS.websocket, TRANSPORTS.polling]) {
        reasons.length = 0
        const client = await s.connect(opts)
        assert.equal(await client.timeout(3000).emitWithAck('echo', 'x'.repeat(500)), 'x'.repeat(500), 'under the limit')
        const gone = nextEvent(client, 'disconnect')
        client.emit('echo', 'x'.repeat(5000), () => {})
        const [clientReason] = await gone
        assert.match(clientReason, /transport (close|error)/)
        await waitFor(() => reasons.length === 1, 'the server-side disconnect')
        assert.match(reasons[0], /transport (close|error)/)
      }
    } finally {
      await s.close()
    }
  })

  test('the app keeps its port: Express routes answer beside socket.io', T, async () => {
    const s = await start({ setup: chatApp })
    try {
      const client = await s.connect(TRANSPORTS.upgrade)
      const health = await fetch(`${s.url}/health`)
      assert.equal(health.status, 200)
      assert.equal(await health.text(), 'ok')
      assert.equal((await fetch(`${s.url}/nowhere`)).status, 404)
      assert.equal(await client.timeout(3000).emitWithAck('echo', 'still here'), 'still here')
    } finally {
      await s.close()
    }
  })

  test('engine events: headers, initial_headers, connection_error; allowRequest; cookie', T, async () => {
    const errors = []
    const s = await start({
      engine: {
        cookie: { name: 'io', path: '/' },
        allowRequest: (req, callback) => callback(req.headers['x-deny'] ? 'denied' : null, !req.headers['x-deny']),
      },
      setup: (io, engine) => {
        chatApp(io)
        engine.on('initial_headers', (headers) => {
          headers['x-initial'] = 'yes'
        })
        engine.on('headers', (headers) => {
          headers['x-every'] = 'yes'
        })
        engine.on('connection_error', (e) => errors.push([e.code, e.message, typeof e.req.url]))
      },
    })
    try {
      const open = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`)
      assert.equal(open.status, 200)
      assert.equal(open.headers.get('x-initial'), 'yes')
      assert.equal(open.headers.get('x-every'), 'yes')
      const sid = JSON.parse((await open.text()).slice(1)).sid
      assert.match(open.headers.get('set-cookie'), new RegExp(`^io=${sid}; Path=/; HttpOnly; SameSite=Lax$`))
      const post = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '40' })
      assert.equal(await post.text(), 'ok')
      assert.equal(post.headers.get('x-initial'), null)
      assert.equal(post.headers.get('x-every'), 'yes')

      const unknown = await fetch(`${s.url}/socket.io/?EIO=4&transport=carrier-pigeon`)
      assert.equal(unknown.status, 400)
      assert.deepEqual(await unknown.json(), { code: 0, message: 'Transport unknown' })
      const denied = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`, { headers: { 'x-deny': '1' } })
      assert.equal(denied.status, 403)
      assert.deepEqual(await denied.json(), { code: 4, message: 'denied' })
      const deniedWs = await s.connect({ ...TRANSPORTS.websocket, extraHeaders: { 'x-deny': '1' } }).then(
        () => assert.fail('allowRequest was not asked'),
        (e) => e,
      )
      assert.match(deniedWs.message, /websocket error/)
      assert.deepEqual(errors, [
        [0, 'Transport unknown', 'string'],
        [4, 'Forbidden', 'string'],
        [4, 'Forbidden', 'string'],
      ])
    } finally {
      await s.close()
    }
  })

  test('transports and allowUpgrades are honoured; cors answers preflights', T, async () => {
    const wsOnly = await start({ engine: { transports: ['websocket'] }, setup: chatApp })
    try {
      await assert.rejects(wsOnly.connect(TRANSPORTS.polling), /xhr poll error/)
      const client = await wsOnly.connect(TRANSPORTS.websocket)
      assert.equal(await client.timeout(3000).emitWithAck('transport'), 'websocket')
    } finally {
      await wsOnly.close()
    }
    const noUpgrade = await start({
      engine: { allowUpgrades: false, cors: { origin: 'https://app.example', credentials: true } },
      setup: chatApp,
    })
    try {
      const client = await noUpgrade.connect(TRANSPORTS.upgrade)
      await new Promise((r) => setTimeout(r, 300))
      assert.equal(client.io.engine.transport.name, 'polling', 'no upgrade offered')
      assert.equal(await client.timeout(3000).emitWithAck('transport'), 'polling')
      const preflight = await fetch(`${noUpgrade.url}/socket.io/?EIO=4&transport=polling`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      })
      assert.equal(preflight.status, 204)
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example')
      assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true')
      const open = await fetch(`${noUpgrade.url}/socket.io/?EIO=4&transport=polling`, {
        headers: { origin: 'https://app.example' },
      })
      assert.equal(open.headers.get('access-control-allow-origin'), 'https://app.example')
      assert.deepEqual(JSON.parse((await open.text()).slice(1)).upgrades, [])
    } finally {
      await noUpgrade.close()
    }
  })

  test('over https.Server: TLS ends in Node, the frames pass through ws', T, async () => {
    // A throwaway self-signed certificate for localhost (Debian's openssl).
    const dir = mkdtempSync(join(tmpdir(), 'tidewire-tls-'))
    let tls
    try {
      const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
        '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })
      tls = { key: readFileSync(key), cert: readFileSync(cert) }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    const s = await start({ setup: chatApp, tls })
    try {
      for (const opts of Object.values(TRANSPORTS)) {
        const client = await s.connect({ ...opts, rejectUnauthorized: false })
        const blob = Buffer.from('binary over tls')
        assert.deepEqual([...(await client.timeout(3000).emitWithAck('echo', blob))], [...blob])
        const secure = [...s.io.of('/').sockets.values()].at(-1).handshake.secure
        assert.equal(secure, true, 'socket.io sees the TLS connection')
        client.close()
      }
    } finally {
      await s.close()
    }
  })

  test('io.close() closes every session; nothing is left open', T, async () => {
    const s = await start({ setup: chatApp })
    const clients = await Promise.all(Object.values(TRANSPORTS).map((opts) => s.connect(opts)))
    const gone = clients.map((c) => nextEvent(c, 'disconnect'))
    try {
      await s.io.close()
      for (const [reason] of await Promise.all(gone)) assert.match(reason, /io server disconnect|transport close/)
      assert.equal(s.engine.clientsCount, 0)
    } finally {
      await s.close()
    }
  })
})

describe('Engine options', () => {
  const code = { code: 'ERR_INVALID_ARG' }
  test('an option it cannot honour throws at construction, naming it', () => {
    assert.throws(() => new Engine({ wsEngine: class {} }), { ...code, message: /"wsEngine" is not supported/ })
    assert.throws(() => new Engine({ perMessageDeflate: true }), { ...code, message: /"perMessageDeflate"/ })
    assert.throws(() => new Engine({ httpCompression: { threshold: 10 } }), { ...code, message: /"httpCompression"/ })
    assert.throws(() => new Engine({ allowEIO3: true }), { ...code, message: /"allowEIO3"/ })
    assert.throws(() => new Engine({ initialPacket: 'hi' }), { ...code, message: /"initialPacket"/ })
    assert.throws(() => new Engine({ transports: ['webtransport'] }), { ...code, message: /webtransport/ })
    assert.throws(() => new Engine({ connectTimeout: 1000 }), { ...code, message: /"connectTimeout" belongs to socket.io's Server/ })
    assert.throws(() => new Engine({ pingIntervall: 1000 }), { ...code, message: /unknown option "pingIntervall"/ })
  })

  test('limits: the connection caps are the app\'s to set; event limits are refused', T, async () => {
    assert.throws(() => new Engine({ limits: { rateSocket: '10/s' } }), { ...code, message: /"limits.rateSocket" is not an Engine limit/ })
    assert.throws(() => new Engine({ limits: { handshakesPerIp: 'often' } }), { ...code, message: /handshakesPerIp/ })
    const s = await start({ setup: chatApp, engine: { limits: { maxConnPerIp: 1, handshakesPerIp: 'off' } } })
    try {
      const first = await s.connect(TRANSPORTS.websocket)
      await assert.rejects(s.connect(TRANSPORTS.websocket), 'a second connection from the address is refused')
      first.close()
      await new Promise((r) => setTimeout(r, 100))
      const again = await s.connect(TRANSPORTS.websocket)
      again.close()
    } finally {
      await s.close()
    }
  })

  test('a value it cannot honour throws, naming the option', () => {
    assert.throws(() => new Engine({ pingInterval: -1 }), { ...code, message: /"pingInterval"/ })
    assert.throws(() => new Engine({ pingTimeout: 1.5 }), { ...code, message: /"pingTimeout"/ })
    assert.throws(() => new Engine({ maxHttpBufferSize: 2 ** 40 }), { ...code, message: /"maxHttpBufferSize"/ })
    assert.throws(() => new Engine({ transports: [] }), { ...code, message: /"transports"/ })
    assert.throws(() => new Engine({ allowUpgrades: 'no' }), { ...code, message: /"allowUpgrades"/ })
    assert.throws(() => new Engine({ allowRequest: true }), { ...code, message: /"allowRequest"/ })
    assert.throws(() => new Engine({ path: 'socket.io' }), { ...code, message: /"path"/ })
    assert.throws(() => new Engine().attach(http.createServer(), { destroyUpgrade: 'yes' }), { ...code, message: /"destroyUpgrade"/ })
    assert.throws(() => new Engine().attach(http.createServer(), { pth: '/x' }), { ...code, message: /unknown attach option "pth"/ })
  })

  test('what the core does itself cannot be replaced or observed', () => {
    const engine = new Engine()
    assert.throws(() => {
      engine.generateId = () => 'mine'
    }, { code: 'ERR_UNSUPPORTED', message: /generateId/ })
    class Custom extends Engine {
      generateId() {
        return 'mine'
      }
    }
    assert.throws(() => new Custom(), { code: 'ERR_UNSUPPORTED' })
    assert.throws(() => engine.on('flush', () => {}), { code: 'ERR_UNSUPPORTED', message: /"flush"/ })
    assert.doesNotThrow(() => engine.on('connection_error', () => {}))
  })
})

// socket.io drops a volatile packet when engine.io's transport is not
// writable: a write still in flight, or (long-polling) no GET waiting. The
// same cases as socket.io's own tests (test/socket.ts), with a regular
// `end` sent later as the mark of what arrived.
describe('volatile packets, as engine.io makes socket.io drop them', () => {
  for (const transport of ['websocket', 'polling']) {
    const cases = [
      ['only one of two consecutive volatile events', (s) => {
        s.volatile.emit('ev', 1)
        s.volatile.emit('ev', 2)
      }, [1]],
      ['no volatile event right after a regular one', (s) => {
        s.emit('ev', 1)
        s.volatile.emit('ev', 2)
      }, [1]],
      ['regular events still come after a dropped volatile one', (s) => {
        s.volatile.emit('ev', 1)
        s.volatile.emit('ev', 2)
        s.emit('ev', 3)
      }, [1, 3]],
    ]
    for (const [name, emit, expected] of cases) {
      test(`${transport}: ${name}`, T, async () => {
        const server = await start({
          engine: { transports: [transport] },
          setup: (io) =>
            io.on('connection', (s) => {
              // Once the CONNECT reply is written (and, over polling, the
              // client's next GET waits).
              setTimeout(() => {
                emit(s)
                setTimeout(() => s.emit('end'), 100)
              }, 100)
            }),
        })
        try {
          const got = []
          const client = await server.connect({ transports: [transport] })
          client.on('ev', (n) => got.push(n))
          await once(client, 'end')
          assert.deepEqual(got, expected)
        } finally {
          await server.close()
        }
      })
    }
  }
})
