// The `tidewire` package driven from JavaScript, with npm socket.io-client
// as the peer.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import https from 'node:https'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { io } from 'socket.io-client'

const require = createRequire(import.meta.url)
const { Server } = require('../tidewire.js')

const T = { timeout: 15_000 }

function connect(url, opts = {}) {
  const socket = io(url, { reconnection: false, transports: ['websocket'], ...opts })
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', (e) => reject(e))
  })
}

function connectError(url, opts = {}) {
  const socket = io(url, { reconnection: false, transports: ['websocket'], ...opts })
  return new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error('connected, expected a refusal')))
    socket.once('connect_error', (e) => {
      socket.close()
      resolve(e)
    })
  })
}

// Every argument of the ack (emitWithAck resolves to the first only).
function ackAll(c, event, ...args) {
  return new Promise((resolve) => c.emit(event, ...args, (...reply) => resolve(reply)))
}

function waitFor(predicate, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const poll = () => {
      if (predicate()) return resolve()
      if (Date.now() - started > 5_000) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(poll, 10)
    }
    poll()
  })
}

describe('tidewire server from JavaScript', () => {
  let server
  let url
  const errors = []
  const disconnects = []
  const clients = []

  before(async () => {
    server = new Server({ onError: (e) => errors.push(e), pingInterval: 1000, pingTimeout: 1000 })
    server.use(async (handshake) => {
      const { token } = handshake.auth
      if (token === 'bad') {
        const e = new Error('unauthorized')
        e.data = { reason: 'bad token' }
        throw e
      }
      return token ? { user: token, data: { via: 'token' } } : undefined
    })
    server.on('connection', (socket) => {
      socket.data.connectedAt = Date.now()
    })
    server.on('disconnect', (socket, reason) => disconnects.push([socket.id, reason]))
    server.on('echo', (socket, ...args) => {
      const ack = typeof args.at(-1) === 'function' ? args.pop() : null
      if (ack) ack(...args)
      else socket.emit('echo', ...args)
    })
    server.on('whoami', (socket, ack) =>
      ack({ id: socket.id, user: socket.user, rooms: [...socket.rooms].sort(), data: socket.data.connectedAt > 0 }),
    )
    server.on('join', (socket, room, ack) => {
      socket.join(room)
      ack(true)
    })
    server.on('shout', (socket, room, msg) => socket.to(room).emit('shout', msg))
    server.on('ask', async (socket, ack) => {
      // As in socket.io: the first argument of the client's answer.
      const answer = await socket.timeout(2000).emitWithAck('question', 'ping?')
      ack(answer)
    })
    // The ack callback of socket.emit, with and without a timeout.
    server.on('ask-callback', (socket, ack) => {
      socket.emit('question', 'cb?', (...answer) => {
        socket.timeout(100).emit('silent', (err, ...late) => ack([answer, err && err.code, late]))
      })
    })
    server.on('ask-timeout', async (socket, ack) => {
      try {
        await socket.timeout(100).emitWithAck('silent')
        ack('answered?')
      } catch (e) {
        ack(e.code)
      }
    })
    server.on('throw', () => {
      throw new Error('handler failed')
    })
    server.on('reject', async () => {
      throw new Error('async handler failed')
    })
    server.on('bad-args', (socket, ack) => {
      const out = []
      for (const f of [
        () => socket.join(''),
        () => socket.join(42),
        () => socket.emit(''),
        () => {
          const a = {}
          a.self = a
          socket.emit('x', a)
        },
        () => socket.timeout(-1),
        // Functions JSON would drop without a word; callbacks of broadcasts.
        () => socket.emit('x', { f() {} }),
        () => socket.emit('x', () => {}, 1),
        () => socket.broadcast.timeout(-1),
        // socket.io's reserved names.
        () => socket.emit('disconnecting'),
        () => socket.emitWithAck('connect_error').catch(() => {}),
      ]) {
        try {
          f()
          out.push('no error')
        } catch (e) {
          out.push(e.code)
        }
      }
      ack(out)
    })
    // Two handlers of one event: both run, in order (the first answers).
    server.on('twice', (socket, ack) => {
      socket.data.twice = ['first']
      ack('first')
    })
    server.on('twice', (socket) => {
      socket.data.twice.push('second')
      socket.emit('twice', socket.data.twice)
    })
    server.on('fill-rooms', (socket, ack) => {
      try {
        for (let i = 0; i < 1001; i++) socket.join(`many:${i}`)
        ack('no error')
      } catch (e) {
        ack([e.code, e.message])
      }
    })
    ;({ url } = await server.listen())
  })

  after(async () => {
    for (const c of clients) c.close()
    await server.close()
  })

  async function client(opts) {
    const c = await connect(url, opts)
    clients.push(c)
    return c
  }

  test('acks return the arguments, binary included, and events come back', T, async () => {
    const c = await client()
    const args = ['a', 1, -2.5, true, null, { b: [1, { c: 'ü😀' }] }, [], {}]
    assert.deepEqual(await ackAll(c, 'echo', ...args), args)
    const bin = [Buffer.from([0, 1, 255]), { nested: [Buffer.alloc(100_000, 7)] }, 'text']
    const got = await ackAll(c, 'echo', ...bin)
    assert.deepEqual(got.map((x) => (Buffer.isBuffer(x) ? [...x] : x))[0], [0, 1, 255])
    assert.equal(Buffer.from(got[1].nested[0]).length, 100_000)
    assert.equal(got[2], 'text')
    const back = once(c, 'echo')
    c.emit('echo', { x: 1 }, Buffer.from('hi'))
    const [obj, buf] = await back
    assert.deepEqual(obj, { x: 1 })
    assert.equal(Buffer.from(buf).toString(), 'hi')
  })

  test('a middleware admits users (user room, data) and refuses with message and data', T, async () => {
    const c = await client({ auth: { token: 'alice' } })
    const me = await c.emitWithAck('whoami')
    assert.equal(me.id, c.id)
    assert.equal(me.user, 'alice')
    assert.deepEqual(me.rooms, [c.id, 'user:alice'].sort())
    assert.equal(me.data, true)
    const refused = await connectError(url, { auth: { token: 'bad' } })
    assert.equal(refused.message, 'unauthorized')
    assert.deepEqual(refused.data, { reason: 'bad token' })
  })

  test('rooms: server and socket broadcasts reach members, without the sender', T, async () => {
    const [a, b, c] = await Promise.all([client(), client(), client()])
    await Promise.all([a.emitWithAck('join', 'r1'), b.emitWithAck('join', 'r1')])
    const gotA = once(a, 'news')
    const gotB = once(b, 'news')
    assert.equal(server.to('r1').emit('news', 1), 2)
    assert.deepEqual([await gotA, await gotB], [[1], [1]])
    const cHeard = []
    c.on('news', (x) => cHeard.push(x))
    const bShout = once(b, 'shout')
    const aHeard = []
    a.on('shout', (x) => aHeard.push(x))
    a.emit('shout', 'r1', 'hey')
    assert.deepEqual(await bShout, ['hey'])
    assert.equal(server.to('r1').except(`user:nobody`).emit('news', 2), 2)
    assert.equal(server.to('r1').except('r1').emit('news', 3), 0)
    await new Promise((r) => setTimeout(r, 100))
    assert.deepEqual(aHeard, [], 'the sender is excluded')
    assert.deepEqual(cHeard, [], 'non-members hear nothing')
  })

  test('the server asks a client with an ack; a silent client times out with ERR_ACK_TIMEOUT', T, async () => {
    const c = await client()
    c.on('question', (q, cb) => cb(`pong to ${q}`))
    assert.equal(await c.emitWithAck('ask'), 'pong to ping?')
    c.on('silent', () => {})
    assert.equal(await c.emitWithAck('ask-timeout'), 'ERR_ACK_TIMEOUT')
    // socket.emit(..., callback): the answer's arguments; with a timeout,
    // the error first.
    assert.deepEqual(await c.emitWithAck('ask-callback'), [['pong to cb?'], 'ERR_ACK_TIMEOUT', []])
  })

  test('several handlers of one event all run, in the order they were added', T, async () => {
    const c = await client()
    const second = once(c, 'twice')
    assert.equal(await c.emitWithAck('twice'), 'first')
    assert.deepEqual(await second, [['first', 'second']])
  })

  test('a socket in too many rooms gets ERR_TOO_MANY_ROOMS', T, async () => {
    const c = await client()
    const [code, message] = await c.emitWithAck('fill-rooms')
    assert.equal(code, 'ERR_TOO_MANY_ROOMS')
    assert.match(message, /at most \d+ rooms/)
  })

  test('handler errors go to onError and the server keeps serving', T, async () => {
    const c = await client()
    const before = errors.length
    c.emit('throw')
    c.emit('reject')
    await waitFor(() => errors.length >= before + 2, 'two handler errors')
    assert.deepEqual(errors.slice(before).map((e) => e.message).sort(), ['async handler failed', 'handler failed'])
    assert.deepEqual(await ackAll(c, 'echo', 'still'), ['still'])
  })

  test('bad arguments from JavaScript throw errors with codes, never crash', T, async () => {
    const c = await client()
    assert.deepEqual(await c.emitWithAck('bad-args'), [
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
      'ERR_INVALID_ARG',
    ])
    // Never a handler that cannot fire.
    assert.throws(() => server.on('newListener', () => {}), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server({ port: 70000 }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server({ pingInterval: -1 }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => server.of('no-slash'), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => server.to(''), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => server.on('x', 'not a function'), { code: 'ERR_INVALID_ARG' })
    // socket.io's options it does not honour are refused by name, never ignored.
    assert.throws(() => new Server({ path: 'no-slash' }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server().attach({}), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server().attach(createServer(), { pingInterval: 1 }), { code: 'ERR_UNSUPPORTED' })
    assert.throws(() => server.serverSideEmit(''), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => server.serverSideEmit('new_namespace'), { code: 'ERR_INVALID_ARG', message: /reserved/ })
    assert.throws(() => server.onServerSideEmit('connection', () => {}), { code: 'ERR_INVALID_ARG', message: /reserved/ })
    assert.throws(() => new Server({ cleanupEmptyChildNamespaces: 'yes' }), { code: 'ERR_INVALID_ARG' })
    // Its own listener serves /socket.io/ only; an attached one, any path.
    await assert.rejects(new Server({ path: '/elsewhere/' }).listen(), { code: 'ERR_UNSUPPORTED', message: /option "path"/ })
    assert.throws(() => new Server({ adapter: () => {} }), { code: 'ERR_UNSUPPORTED', message: /option "adapter"/ })
    assert.throws(() => new Server({ cors: { origin: ['x'], credentials: true } }), { code: 'ERR_UNSUPPORTED' })
    assert.throws(() => new Server({ connectionStateRecovery: { skipMiddlewares: true } }), { code: 'ERR_UNSUPPORTED' })
    assert.throws(() => new Server({ maxHttpBufferSize: 10, maxPayload: 10 }), { code: 'ERR_INVALID_ARG' })
  })

  test("socket.io's option names it honours: path /socket.io/, maxHttpBufferSize, transports", T, async () => {
    const small = new Server({ path: '/socket.io/', maxHttpBufferSize: 1000, transports: ['polling'] })
    small.on('echo', (socket, msg, ack) => ack(msg))
    const { url } = await small.listen()
    const c = io(url, { reconnection: false, transports: ['polling'] })
    await once(c, 'connect')
    assert.equal(await c.timeout(3000).emitWithAck('echo', 'x'.repeat(100)), 'x'.repeat(100))
    // Over maxHttpBufferSize: the connection is closed, as by socket.io
    // (a 413 to the POST, or the close seen first).
    const closed = once(c, 'disconnect')
    c.emit('echo', 'x'.repeat(5000))
    assert.match((await closed)[0], /^transport (close|error)$/)
    // WebSocket is not offered.
    const ws = io(url, { reconnection: false, transports: ['websocket'] })
    await once(ws, 'connect_error')
    ws.close()
    c.close()
    await small.close()
  })

  test('a disconnect reports its reason', T, async () => {
    const c = await client()
    const id = c.id
    c.close()
    await waitFor(() => disconnects.some(([sid]) => sid === id), 'the disconnect')
    assert.deepEqual(disconnects.find(([sid]) => sid === id), [id, 'client namespace disconnect'])
  })
})

test('a closed server refuses new work and lets Node exit', T, async () => {
  const script = `
    const { Server } = require(${JSON.stringify(require.resolve('../tidewire.js'))})
    const { io } = require(${JSON.stringify(require.resolve('socket.io-client'))})
    ;(async () => {
      const server = new Server()
      server.on('echo', (s, x, ack) => ack(x))
      const { url } = await server.listen()
      const c = io(url, { transports: ['websocket'], reconnection: false })
      const x = await c.emitWithAck('echo', 7)
      c.close()
      await server.close()
      try { server.of('/late') } catch (e) { console.log(x, e.code) }
      // Nothing else: Node must exit by itself.
    })()
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  const [code, signal] = await once(child, 'exit')
  clearTimeout(timer)
  assert.equal(signal, null, 'Node did not exit by itself after close()')
  assert.equal(code, 0)
  assert.equal(out.trim(), '7 ERR_SERVER_CLOSED')
})

describe('production safety from JavaScript', () => {
  test('limits, schema validation, presence and drain', T, async () => {
    const server = new Server({
      limits: { events: { shout: '2/m:2' }, maxConnPerUser: 1 },
      connectionStateRecovery: { maxDisconnectionDuration: 60_000 },
    })
    server.use((handshake) => ({ user: handshake.auth.user, presence: { name: String(handshake.auth.user).toUpperCase() } }))
    server.of('/').limitEvent('say', { maxBytes: 200, schema: { type: 'string', maxLength: 10 } })
    server.of('/').enablePresence({ prefix: 'room:' })
    server.on('say', (_socket, text, ack) => ack({ status: 'ok', text }))
    server.on('shout', (_socket, ack) => ack({ status: 'ok' }))
    server.on('enter', (socket, room, ack) => {
      socket.join(`room:${room}`)
      ack(server.of('/').presence(`room:${room}`))
    })
    const { url } = await server.listen()
    const ann = await connect(url, { auth: { user: 'ann' } })
    const bob = await connect(url, { auth: { user: 'bob' } })
    try {
      assert.deepEqual(await ann.emitWithAck('say', 'hi'), { status: 'ok', text: 'hi' })
      const invalid = await ann.emitWithAck('say', 'far too long for the schema')
      assert.equal(invalid.code, 'invalid_payload')
      assert.equal((await ann.emitWithAck('say', 'x'.repeat(300))).code, 'payload_too_large')
      assert.equal((await ann.emitWithAck('shout')).status, 'ok')
      assert.equal((await ann.emitWithAck('shout')).status, 'ok')
      const limited = await ann.emitWithAck('shout')
      assert.equal(limited.code, 'rate_limited')
      assert.ok(limited.retryAfterMs > 0)

      const refused = await connectError(url, { auth: { user: 'ann' } })
      assert.equal(refused.message, 'too many connections for this user')

      const joins = []
      bob.on('presence:join', (p) => joins.push(p))
      await bob.emitWithAck('enter', 'r1')
      const listed = await ann.emitWithAck('enter', 'r1')
      assert.deepEqual(listed.map((u) => [u.userId, u.connections.length, u.connections[0].meta]), [
        ['bob', 1, { name: 'BOB' }],
        ['ann', 1, { name: 'ANN' }],
      ])
      await waitFor(() => joins.length === 2, 'presence joins')
      assert.deepEqual(joins[1], { roomId: 'r1', userId: 'ann', name: 'ANN' })
      assert.equal(ann.recovered, false)

      const notices = []
      ann.on('tidewire:drain', (n) => notices.push(n))
      const report = await server.drain({ batchSize: 1, batchInterval: 10, ackDeadline: 1000 })
      assert.deepEqual(report, { connections: 2, batches: 2, acksAbandoned: 0 })
      await waitFor(() => notices.length === 1 && !ann.connected, 'the drain notice and close')
      assert.equal(notices[0].reason, 'server shutting down')
    } finally {
      ann.close()
      bob.close()
      await server.close()
    }
  })

  test('bad limits are refused with ERR_INVALID_ARG', () => {
    assert.throws(() => new Server({ limits: { rateSocket: 'lots' } }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server({ limits: { unknown: 1 } }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Server({ connectionStateRecovery: { maxDisconnectionDuration: -1 } }), { code: 'ERR_INVALID_ARG' })
    const s = new Server()
    assert.throws(() => s.of('/').limitEvent('e', { schema: { type: 12 } }), { code: 'ERR_INVALID_ARG' })
  })
})

describe("socket.io's per-socket handlers on tidewire's Server", () => {
  test('socket.on inside connection: events, acks, once, off, onAny, disconnect', T, async () => {
    const server = new Server({ onError: (e) => console.error(e) })
    const seen = []
    const gone = []
    // A namespace-level handler of one event runs first, then the socket's own.
    server.on('both', (socket) => seen.push(['ns', 'both']))
    server.on('connection', (socket) => {
      socket.onAny((event, ...args) => seen.push(['any', event, args.filter((a) => typeof a !== 'function')]))
      socket.on('chat', (msg, ack) => ack(`got ${msg}`))
      socket.once('first', (n) => seen.push(['once', n]))
      const dropped = () => seen.push(['dropped'])
      socket.on('dropped', dropped)
      socket.off('dropped', dropped)
      socket.on('both', () => seen.push(['socket', 'both']))
      // Only the first answer goes, as in socket.io.
      socket.on('twice', (ack) => {
        ack(1)
        ack(2)
      })
      socket.on('disconnect', (reason) => gone.push(reason))
      assert.throws(() => socket.on('connect_error', () => {}), { code: 'ERR_INVALID_ARG' })
      // socket.io's socket.nsp is the namespace; its engine-level objects are refused by name.
      seen.push(['nsp', socket.nsp.name, socket.nsp === server.of('/')])
      for (const engineLevel of ['request', 'conn', 'client']) {
        assert.throws(() => socket[engineLevel], { code: 'ERR_UNSUPPORTED', message: new RegExp(`socket.${engineLevel}`) })
      }
    })
    const { url } = await server.listen()
    const c = await connect(url)
    assert.equal(await c.emitWithAck('chat', 'hi'), 'got hi')
    c.emit('first', 1)
    c.emit('first', 2)
    c.emit('dropped')
    c.emit('both')
    assert.equal(await c.emitWithAck('twice'), 1)
    assert.deepEqual(seen, [
      ['nsp', '/', true],
      ['any', 'chat', ['hi']],
      ['any', 'first', [1]],
      ['once', 1],
      ['any', 'first', [2]],
      ['any', 'dropped', []],
      ['ns', 'both'],
      ['any', 'both', []],
      ['socket', 'both'],
      ['any', 'twice', []],
    ])
    c.close()
    await waitFor(() => gone.length === 1, 'the disconnect')
    assert.deepEqual(gone, ['client namespace disconnect'])
    await server.close()
  })
})

describe("socket.io's server API on tidewire's Server", () => {
  test('socket.data from the middleware; across a recovery, what the middleware gives now wins', T, async () => {
    const server = new Server({ connectionStateRecovery: { maxDisconnectionDuration: 10_000 } })
    // Data only when the token carries a role.
    server.use(({ auth }) => (auth.role ? { user: auth.user, data: { role: auth.role } } : { user: auth.user }))
    const seen = []
    server.on('connection', (socket) => {
      seen.push([socket.recovered, { ...socket.data }])
      socket.data.visits = (socket.data.visits || 0) + 1
    })
    const { url } = await server.listen()
    const c = io(url, { transports: ['websocket'], auth: { user: 'ann', role: 'staff' }, reconnectionDelay: 50 })
    await once(c, 'connect')
    // Back without a role: the middleware gives no data, the session's comes back.
    c.auth = { user: 'ann' }
    c.io.engine.close()
    await once(c, 'connect')
    assert.equal(c.recovered, true)
    // Back with another role: the middleware's decision wins (a right
    // withdrawn since is never given back), the rest of the session's is not kept.
    c.auth = { user: 'ann', role: 'guest' }
    c.io.engine.close()
    await once(c, 'connect')
    assert.equal(c.recovered, true)
    await waitFor(() => seen.length === 3, 'three connections')
    assert.deepEqual(seen, [
      [false, { role: 'staff' }],
      [true, { role: 'staff', visits: 1 }],
      [true, { role: 'guest' }],
    ])
    const [socket] = await server.fetchSockets()
    assert.deepEqual(socket.data, { role: 'guest', visits: 1 })
    c.close()
    await server.close()
  })

  test('in, except, volatile, local, compress, socketsJoin, socketsLeave, disconnectSockets', T, async () => {
    const server = new Server()
    const { url } = await server.listen()
    const [a, b] = [await connect(url), await connect(url)]
    await waitFor(() => server.of('/').socketCount === 2, 'two sockets')
    server.in(a.id).socketsJoin(['r', 'q'])
    const heard = []
    for (const [name, c] of [['a', a], ['b', b]]) c.on('m', (x) => heard.push([name, x]))
    assert.equal(server.in('r').emit('m', 1), 1)
    assert.equal(server.volatile.to('r').emit('m', 2), 1)
    assert.equal(server.local.compress(false).except('r').emit('m', 3), 1)
    server.socketsLeave('q')
    assert.equal(server.in('q').emit('m', 4), 0)
    await waitFor(() => heard.length === 3, 'three messages')
    // In order per client.
    assert.deepEqual(heard.filter(([n]) => n === 'a'), [['a', 1], ['a', 2]])
    assert.deepEqual(heard.filter(([n]) => n === 'b'), [['b', 3]])
    const gone = once(b, 'disconnect')
    server.except('r').disconnectSockets()
    assert.equal((await gone)[0], 'io server disconnect')
    assert.equal(a.connected, true)
    a.close()
    await server.close()
  })

  test("io.sockets, nsp.sockets and nsp.adapter's rooms and sids, as apps read them; io.engine and the adapter's methods refused", T, async () => {
    const server = new Server()
    const { url } = await server.listen()
    const [a, b] = [await connect(url), await connect(url)]
    await waitFor(() => server.sockets.sockets.size === 2, 'two sockets in io.sockets.sockets')
    assert.equal(server.sockets, server.of('/'))
    assert.equal(server.of('/').sockets.get(a.id).id, a.id)
    server.in(a.id).socketsJoin('room')
    const { rooms, sids } = server.of('/').adapter
    assert.deepEqual([...rooms.get('room')], [a.id])
    assert.equal(rooms.get('room').size, 1, "socket.io's room size idiom")
    assert.deepEqual([...rooms.get(b.id)], [b.id], 'each socket in its own room')
    assert.deepEqual([...sids.get(a.id)].sort(), [a.id, 'room'].sort())
    assert.equal(server.of('/chat').adapter.rooms.size, 0)
    assert.throws(() => server.engine, { code: 'ERR_UNSUPPORTED', message: /io.engine/ })
    assert.throws(() => server.of('/').adapter.on('join-room', () => {}), { code: 'ERR_UNSUPPORTED', message: /adapter.on/ })
    b.close()
    await waitFor(() => server.sockets.sockets.size === 1, 'b gone from io.sockets.sockets')
    a.close()
    await server.close()
  })
})

describe("socket.io's disconnecting and broadcast acknowledgements on tidewire's Server", () => {
  test("'disconnecting' runs before 'disconnect', with the rooms the socket is leaving", T, async () => {
    const server = new Server({ onError: (e) => console.error(e) })
    const seen = []
    server.on('disconnecting', (socket, reason) => seen.push([socket.id, 'ns disconnecting', reason, [...socket.rooms].sort()]))
    server.on('disconnect', (socket, reason) => seen.push([socket.id, 'ns disconnect', reason, [...socket.rooms]]))
    server.on('connection', (socket) => {
      socket.join('room-a')
      // Not a client's event: onAny never hears it.
      socket.onAny((event) => seen.push([socket.id, 'any', event]))
      socket.on('disconnecting', (reason) => seen.push([socket.id, 'disconnecting', reason, [...socket.rooms].sort()]))
      socket.on('disconnect', (reason) => seen.push([socket.id, 'disconnect', reason, [...socket.rooms]]))
      socket.on('bye', () => socket.disconnect())
      socket.on('ready', (ack) => ack())
    })
    const { url } = await server.listen()
    const [leaver, cut] = await Promise.all([connect(url), connect(url)])
    // Answered once its connection handler has run (the room is joined).
    await Promise.all([leaver.emitWithAck('ready'), cut.emitWithAck('ready')])
    seen.splice(0)
    const expected = (id, reason) => [
      [id, 'disconnecting', reason, [id, 'room-a'].sort()],
      [id, 'ns disconnecting', reason, [id, 'room-a'].sort()],
      [id, 'disconnect', reason, []],
      [id, 'ns disconnect', reason, []],
    ]
    const leaverId = leaver.id
    leaver.close()
    await waitFor(() => seen.length === 4, "the leaver's disconnection")
    assert.deepEqual(seen.splice(0), expected(leaverId, 'client namespace disconnect'))
    const cutId = cut.id
    cut.emit('bye')
    await waitFor(() => seen.length === 5, "the cut socket's disconnection")
    assert.deepEqual(seen, [[cutId, 'any', 'bye'], ...expected(cutId, 'server namespace disconnect')])
    await server.close()
  })

  test('broadcast acknowledgements: every answer, the timeout with the answers that came, binary answers', T, async () => {
    const server = new Server({ onError: (e) => console.error(e) })
    server.on('connection', (socket) => socket.join(socket.handshake.auth.room))
    server.on('ready', (socket, ack) => ack())
    // A socket asks its room's other members.
    server.on('ask-room', async (socket, room, ack) => ack(await socket.to(room).timeout(2000).emitWithAck('vote?', 'from a socket')))
    const { url } = await server.listen()
    const join = (room) => connect(url, { auth: { room } })
    const [a, b, quiet, bin] = await Promise.all([join('voters'), join('voters'), join('quiet'), join('binary')])
    // Answered once each connection handler has run (the rooms are joined).
    await Promise.all([a, b, quiet, bin].map((c) => c.emitWithAck('ready')))
    a.on('vote?', (q, cb) => cb(`a:${q}`, 'second arguments are not kept'))
    b.on('vote?', (q, cb) => cb(`b:${q}`))
    quiet.on('vote?', () => {})
    bin.on('vote?', (q, cb) => cb(Buffer.from([1, 2, 3])))

    assert.deepEqual((await server.timeout(2000).to('voters').emitWithAck('vote?', 'q1')).sort(), ['a:q1', 'b:q1'])
    const [err, responses] = await new Promise((resolve) =>
      server.timeout(2000).to('voters').emit('vote?', 'q2', (...reply) => resolve(reply)),
    )
    assert.equal(err, null)
    assert.deepEqual(responses.sort(), ['a:q2', 'b:q2'])
    assert.deepEqual(await server.of('/').to('binary').timeout(2000).emitWithAck('vote?', 'q3'), [Buffer.from([1, 2, 3])])
    assert.deepEqual(await a.emitWithAck('ask-room', 'voters'), ['b:from a socket'])

    // One recipient stays silent: socket.io's timeout error, after the
    // timeout, with the answers that came.
    const started = Date.now()
    await assert.rejects(server.timeout(300).except('binary').emitWithAck('vote?', 'q4'), (e) => {
      assert.equal(e.message, 'operation has timed out')
      assert.deepEqual(e.responses.sort(), ['a:q4', 'b:q4'])
      return true
    })
    assert.ok(Date.now() - started >= 250, 'it waited for the silent one')
    // Without timeout(ms), as in socket.io: the timeout error at once (its
    // timer is 1 ms), not after the server's 30 s ack timeout.
    const quick = Date.now()
    const [late] = await new Promise((resolve) => server.emit('vote?', 'q5', (...reply) => resolve(reply)))
    assert.equal(late.message, 'operation has timed out')
    assert.ok(Date.now() - quick < 1000)
    // Nobody to ask: no error, no answers.
    assert.deepEqual(await server.timeout(100).to('nobody').emitWithAck('vote?', 'q6'), [])
    assert.throws(() => server.timeout(1.5), { code: 'ERR_INVALID_ARG' })
    for (const c of [a, b, quiet, bin]) c.close()
    await server.close()
  })
})

describe("tidewire's Server on the app's own http.Server, as socket.io's new Server(httpServer)", () => {
  function handlers(server) {
    server.on('connection', (socket) => {
      socket.join('all')
      socket.on('echo', (msg, ack) => ack(msg))
      socket.on('shout', (msg) => socket.to('all').emit('shout', msg))
      socket.on('secure', (ack) => ack(socket.handshake.secure))
    })
  }

  test('the app keeps its routes on its port; WebSocket, polling and the upgrade meet at a path of its own', T, async () => {
    const httpServer = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`app:${req.url}`)
    })
    const server = new Server(httpServer, { path: '/rt', onError: (e) => console.error(e) })
    handlers(server)
    await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${httpServer.address().port}`
    assert.equal(await (await fetch(`${url}/health`)).text(), 'app:/health')
    // Another path than the server's is the app's.
    assert.equal(await (await fetch(`${url}/socket.io/?EIO=4&transport=polling`)).text(), 'app:/socket.io/?EIO=4&transport=polling')
    const clients = []
    for (const transports of [['websocket'], ['polling'], ['polling', 'websocket']]) {
      const c = await connect(url, { path: '/rt', transports })
      clients.push(c)
      assert.equal(await c.timeout(3000).emitWithAck('echo', `hi over ${transports}`), `hi over ${transports}`)
    }
    await waitFor(() => clients[2].io.engine.transport.name === 'websocket', 'the upgrade')
    // One hub: the three meet in one room.
    const heard = Promise.all(clients.slice(1).map((c) => once(c, 'shout')))
    clients[0].emit('shout', 'to all')
    assert.deepEqual((await heard).map(([m]) => m), ['to all', 'to all'])
    assert.deepEqual([...(await clients[1].timeout(3000).emitWithAck('echo', Buffer.from([1, 2, 3])))], [1, 2, 3])
    assert.equal(await clients[0].timeout(3000).emitWithAck('secure'), false)
    // On a plain http.Server each WebSocket went to the core (no frame through JavaScript).
    assert.equal(server._engine._native.handedOver, 2)
    for (const c of clients) c.close()
    await server.close()
    assert.equal(httpServer.listening, false, 'closing the server closes its http.Server, as in socket.io')
  })

  test('over https.Server (TLS ends in Node), and new Server(port)', T, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidewire-tls-'))
    let tls
    try {
      const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], {
        stdio: 'ignore',
      })
      tls = { key: readFileSync(key), cert: readFileSync(cert) }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    const httpsServer = https.createServer(tls)
    const secure = new Server(httpsServer)
    handlers(secure)
    await new Promise((resolve) => httpsServer.listen(0, '127.0.0.1', resolve))
    const url = `https://localhost:${httpsServer.address().port}`
    for (const transports of [['websocket'], ['polling', 'websocket']]) {
      const c = await connect(url, { transports, rejectUnauthorized: false })
      assert.equal(await c.timeout(3000).emitWithAck('secure'), true)
      assert.equal(await c.timeout(3000).emitWithAck('echo', 'over tls'), 'over tls')
      c.close()
    }
    await secure.close()

    const own = new Server(0)
    handlers(own)
    await waitFor(() => own.httpServer.listening, 'the http.Server it made')
    const c = await connect(`http://127.0.0.1:${own.httpServer.address().port}`)
    assert.equal(await c.timeout(3000).emitWithAck('echo', 'on a port'), 'on a port')
    c.close()
    await own.close()
  })
})

describe("acknowledgements on tidewire's Server", () => {
  test('an ack its handler never answers is released once JavaScript collects the answer function', T, async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc')
    const server = new Server({ onError: (e) => console.error(e) })
    server.on('ignored', () => {})
    server.on('echo', (socket, msg, ack) => ack(msg))
    const { url } = await server.listen()
    const c = await connect(url)
    for (let i = 0; i < 50; i++) c.emit('ignored', i, () => assert.fail('never answered'))
    // Events are handled in order: once this one is answered, the 50 were handled.
    assert.equal(await c.emitWithAck('echo', 'after'), 'after')
    const started = Date.now()
    while (server._native.acksPending > 0 && Date.now() - started < 5000) {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(server._native.acksPending, 0, 'every unanswered ack was released')
    // Binary parts deep inside the arguments come back as Buffers.
    let deep = { bin: Buffer.from([7, 8]) }
    for (let i = 0; i < 60; i++) deep = [deep]
    let back = await c.emitWithAck('echo', deep)
    for (let i = 0; i < 60; i++) back = back[0]
    assert.deepEqual([...back.bin], [7, 8])
    // An answered one is released at once.
    assert.equal(await c.emitWithAck('echo', 'again'), 'again')
    assert.equal(server._native.acksPending, 0)
    c.close()
    await server.close()
  })
})

describe("dynamic namespaces on tidewire's Server, as socket.io's io.of(regex) and io.of(fn)", () => {
  test("a RegExp makes children with the parent's middlewares and handlers as they were; a child's own stay its own", T, async () => {
    const server = new Server({ onError: (e) => console.error(e) })
    const { url } = await server.listen()
    const clients = []
    const open = async (nsp, opts) => {
      const c = await connect(`${url}${nsp}`, opts)
      clients.push(c)
      return c
    }
    try {
      const parent = server.of(/^\/team-\d+$/)
      assert.equal(parent.name, '/_0', "named as socket.io's parents")
      parent.use((handshake) => ({ data: { team: handshake.auth.team ?? null } }))
      const connected = []
      parent.on('connection', (socket) => {
        connected.push(socket.nsp.name)
        socket.on('where', (ack) => ack(socket.nsp.name, socket.data))
        socket.on('enter', (room, ack) => ack(socket.join(room) && room))
      })
      parent.on('shout', (socket, text, ack) => ack(`${socket.nsp.name}: ${text}`))

      const c7 = await open('/team-7', { auth: { team: 7 } })
      assert.deepEqual(await ackAll(c7, 'where'), ['/team-7', { team: 7 }])
      assert.equal(await c7.emitWithAck('shout', 'hi'), '/team-7: hi')
      assert.equal((await connectError(`${url}/team-x`)).message, 'Invalid namespace')
      assert.equal((await connectError(`${url}/_0`)).message, 'Invalid namespace', 'the parent is not a namespace to join')

      // A handler of the child is the child's; one the parent gets later
      // reaches only the children made after it (socket.io copies them).
      const team7 = server.of('/team-7')
      assert.ok(parent.children.has(team7))
      team7.on('only7', (socket, ack) => ack('seven'))
      const c8 = await open('/team-8')
      parent.on('late', (socket, ack) => ack('late'))
      const c9 = await open('/team-9')
      assert.equal(await c7.emitWithAck('only7'), 'seven')
      await assert.rejects(c8.timeout(300).emitWithAck('only7'), 'no handler of only7 on /team-8')
      await assert.rejects(c8.timeout(300).emitWithAck('late'), '/team-8 was made before late')
      assert.equal(await c9.emitWithAck('late'), 'late')
      assert.deepEqual(connected.sort(), ['/team-7', '/team-8', '/team-9'])
      assert.deepEqual([...parent.children].map((n) => n.name).sort(), ['/team-7', '/team-8', '/team-9'])
      assert.equal(parent.socketCount, 3)

      // The parent's broadcasts reach every child, with its rooms and exceptions.
      const got = { c7: [], c8: [], c9: [] }
      for (const [name, c] of Object.entries({ c7, c8, c9 })) c.onAny((event, ...args) => got[name].push([event, ...args]))
      assert.equal(await c8.emitWithAck('enter', 'r'), 'r')
      assert.equal(parent.emit('all', 1), 3)
      assert.equal(parent.to('r').emit('r-only', Buffer.from([5])), 1)
      assert.equal(parent.except('r').emit('not-r'), 2)
      assert.equal(await c9.emitWithAck('where').then(() => 'after'), 'after')
      await waitFor(() => got.c7.length === 2 && got.c8.length === 2 && got.c9.length === 2, 'the broadcasts')
      assert.deepEqual(got.c7, [['all', 1], ['not-r']])
      assert.deepEqual(got.c9, [['all', 1], ['not-r']])
      assert.equal(got.c8[0][0], 'all')
      assert.deepEqual([got.c8[1][0], [...got.c8[1][1]]], ['r-only', [5]])
      for (const c of [c7, c8, c9]) c.on('ask', (n, ack) => ack(n * 2))
      assert.deepEqual((await parent.timeout(2000).emitWithAck('ask', 21)).sort(), [42, 42, 42])
      const sockets = await parent.fetchSockets()
      assert.deepEqual(sockets.map((s) => s.id).sort(), [c7.id, c8.id, c9.id].sort())
      assert.ok(sockets.every((s) => s.nsp.name.startsWith('/team-')))
      parent.in('r').socketsJoin('joined')
      assert.deepEqual((await parent.in('joined').fetchSockets()).map((s) => s.id), [c8.id])
      parent.except('r').disconnectSockets()
      await waitFor(() => !c7.connected && !c9.connected, 'c7 and c9 disconnected')
      assert.ok(c8.connected)
      // A child namespace's broadcast stays in that child.
      assert.equal(server.of('/team-8').emit('eight-only'), 1)
      assert.throws(() => parent.enablePresence(), { code: 'ERR_UNSUPPORTED' })
      assert.throws(() => parent.serverSideEmit('x'), { code: 'ERR_UNSUPPORTED' })
      // Empty children stay, as socket.io's default.
      assert.equal(parent.children.size, 3)
    } finally {
      for (const c of clients) c.close()
      await server.close()
    }
  })

  test('a function decides from the name and the auth payload, asynchronously; parents are asked in order; a throw refuses', T, async () => {
    const errors = []
    const server = new Server({ onError: (e) => errors.push(e.message) })
    const { url } = await server.listen()
    const clients = []
    try {
      const asked = []
      const byAuth = server.of((name, auth, next) => {
        asked.push(name)
        setTimeout(() => next(null, name.startsWith('/room-') && auth.token === 'ok'), 20)
      })
      const failing = server.of((name, auth, next) => {
        if (name === '/boom') throw new Error('matcher failed')
        next(null, false)
      })
      const fallback = server.of(/^\/room-/, (socket) => socket.emit('from', socket.nsp.name, 'fallback'))
      byAuth.on('connection', (socket) => {
        socket.on('ping', (ack) => ack('pong'))
        socket.emit('from', socket.nsp.name, 'byAuth')
      })
      assert.deepEqual([byAuth.name, failing.name, fallback.name], ['/_0', '/_1', '/_2'])

      const from = (c) => new Promise((resolve) => c.once('from', (...args) => resolve(args)))
      const ok = io(`${url}/room-1`, { reconnection: false, transports: ['websocket'], auth: { token: 'ok' } })
      clients.push(ok)
      assert.deepEqual(await from(ok), ['/room-1', 'byAuth'])
      // byAuth says no to this token: the next parent that accepts makes it.
      const other = io(`${url}/room-2`, { reconnection: false, transports: ['websocket'], auth: { token: 'no' } })
      clients.push(other)
      assert.deepEqual(await from(other), ['/room-2', 'fallback'])
      // An existing child is joined whatever its parent would say now.
      const again = io(`${url}/room-1`, { reconnection: false, transports: ['websocket'], auth: { token: 'no' } })
      clients.push(again)
      await new Promise((resolve) => again.once('connect', resolve))
      // A matcher that throws refuses (to onError), and the server goes on.
      assert.equal((await connectError(`${url}/boom`)).message, 'Invalid namespace')
      assert.deepEqual(errors, ['matcher failed'])
      assert.ok(asked.includes('/boom') && asked.includes('/room-2'))
      assert.equal(asked.filter((n) => n === '/room-1').length, 1, 'an existing child is not asked about again')
      assert.equal(await ok.emitWithAck('ping'), 'pong', 'the server goes on')
    } finally {
      for (const c of clients) c.close()
      await server.close()
    }
  })

  test('cleanupEmptyChildNamespaces: an empty child goes, and comes back with the parent handlers', T, async () => {
    const server = new Server({ cleanupEmptyChildNamespaces: true })
    const { url } = await server.listen()
    try {
      const parent = server.of(/^\/tmp-\d+$/)
      parent.on('echo', (socket, v, ack) => ack(v))
      const c = await connect(`${url}/tmp-1`)
      assert.equal(await c.emitWithAck('echo', 1), 1)
      assert.equal(parent.children.size, 1)
      c.close()
      await waitFor(() => parent.children.size === 0, 'the empty child removed')
      const d = await connect(`${url}/tmp-1`)
      assert.equal(await d.emitWithAck('echo', 2), 2)
      d.close()
    } finally {
      await server.close()
    }
  })
})

