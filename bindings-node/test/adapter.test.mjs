// Tidewire's createAdapter beyond the redis-adapter suite: this node only
// (no Redis), the arguments and options of @socket.io/redis-adapter (each
// unsupported one refused), connection settings read from node-redis and
// ioredis clients, Tidewire's Engine and socket.io's own engine in one
// cluster, and connection state recovery.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import { createRequire } from 'node:module'
import { Server } from 'socket.io'
import { io as ioc } from 'socket.io-client'
import { createClient } from 'redis'
import Redis from 'ioredis'
import { tidewire, startRedis, until, once, sleep } from './adapter-helpers.mjs'

const require = createRequire(import.meta.url)
const notepack = require('notepack.io')
const { createAdapter, createShardedAdapter, Engine } = tidewire
const T = { timeout: 20_000 }

async function serve(io, { engine } = {}) {
  const http = createHttpServer()
  if (engine) {
    const e = new Engine({ pingInterval: 2000, pingTimeout: 2000 })
    e.attach(http, { path: '/socket.io/' })
    io.bind(e)
  } else {
    io.attach(http)
  }
  await new Promise((r) => http.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${http.address().port}`
}

async function connect(url, opts = {}) {
  const client = ioc(url, { transports: ['websocket'], ...opts })
  await once(client, 'connect')
  return client
}

describe('createAdapter() without Redis: this node only', () => {
  test('rooms and sids as socket.io keeps them, room events, broadcasts, fetchSockets, serverCount', T, async () => {
    const io = new Server({ adapter: createAdapter() })
    const url = await serve(io)
    const events = []
    const adapter = io.of('/').adapter
    for (const e of ['create-room', 'join-room', 'leave-room', 'delete-room']) adapter.on(e, (...a) => events.push([e, ...a]))
    const [a, b] = [await connect(url), await connect(url)]
    const [sa, sb] = [...io.of('/').sockets.values()]
    sa.join('r')
    assert.deepEqual([...io.of('/').adapter.rooms.get('r')], [sa.id])
    assert.ok(adapter.sids.get(sa.id).has('r'))
    const got = once(a, 'only-r')
    let other = 0
    b.on('only-r', () => other++)
    io.to('r').emit('only-r', Buffer.from([1]))
    assert.deepEqual([...(await got)[0]], [1])
    assert.deepEqual((await io.in('r').fetchSockets()).map((s) => s.id), [sa.id])
    assert.equal(await adapter.serverCount(), 1)
    sa.leave('r')
    assert.ok(events.some((e) => e[0] === 'join-room' && e[1] === 'r' && e[2] === sa.id))
    assert.deepEqual(events.slice(-2), [
      ['leave-room', 'r', sa.id],
      ['delete-room', 'r'],
    ])
    assert.equal(other, 0)
    assert.ok(sb)
    a.disconnect()
    b.disconnect()
    io.close()
  })

  test('recovers a session on this node (connectionStateRecovery)', T, async () => {
    const io = new Server({ adapter: createAdapter(), connectionStateRecovery: {} })
    const url = await serve(io)
    const client = await connect(url)
    const [server] = [...io.of('/').sockets.values()]
    server.join('kept')
    io.emit('first')
    await once(client, 'first')
    const gone = once(client, 'disconnect')
    client.io.engine.close()
    await gone
    io.to('kept').emit('missed', 1)
    const missed = once(client, 'missed')
    await once(client, 'connect')
    assert.equal(client.recovered, true)
    // The log's offset travels as the last argument (socket.io's way).
    const [arg, offset] = await missed
    assert.equal(arg, 1)
    assert.equal(typeof offset, 'string')
    client.disconnect()
    io.close()
  })
})

describe('createAdapter arguments and options', () => {
  let redis
  before(async () => {
    redis = await startRedis()
  })
  after(() => redis.stop())

  const fakeNodeRedis = (options) => ({ options, sendCommand() {}, duplicate() {} })
  const unsupported = { code: 'ERR_UNSUPPORTED' }
  const invalid = { code: 'ERR_INVALID_ARG' }

  test('each unsupported option or argument is refused with a clear error', () => {
    const c = fakeNodeRedis({ url: redis.url })
    assert.throws(() => createAdapter(c, c, { nope: 1 }), { ...unsupported, message: /unknown option "nope"/ })
    assert.throws(() => createAdapter(c, c, { parser: { encode: JSON.stringify, decode: JSON.parse } }), { ...unsupported, message: /"parser"/ })
    assert.throws(() => createAdapter(c, c, { requestsTimeout: -1 }), { ...invalid, message: /requestsTimeout/ })
    assert.throws(() => createAdapter(c, c, { key: '' }), { ...invalid, message: /"key"/ })
    assert.throws(() => createAdapter(c, 'sub'), { ...invalid, message: /subClient must be a Redis client/ })
    assert.throws(() => createAdapter(42), { ...invalid, message: /takes \(pubClient, subClient, opts\?\)/ })
    assert.throws(() => createAdapter(fakeNodeRedis({ socket: { path: '/tmp/redis.sock' } }), c), { ...unsupported, message: /Unix socket/ })
    assert.throws(() => createAdapter(fakeNodeRedis({ socket: { host: 'h', tls: { ca: 'pem' } } }), c), { ...unsupported, message: /custom certificates/ })
    assert.throws(() => createAdapter({ url: 'http://127.0.0.1:1' }), { ...unsupported, message: /scheme http:/ })
    assert.throws(() => createAdapter({ url: redis.url, nope: true }), { ...unsupported, message: /"nope"/ })
    assert.throws(() => createShardedAdapter(c, c, { heartbeatInterval: 1000 }), { ...unsupported, message: /heartbeatInterval/ })
    assert.throws(() => createShardedAdapter(c, c, { subscriptionMode: 'all' }), { ...invalid, message: /subscriptionMode/ })
    assert.throws(() => createShardedAdapter(c, c, { key: 'x' }), { ...unsupported, message: /"key"/ })
    // notepack.io, the official default, is what the core writes: accepted.
    assert.equal(typeof createAdapter(c, c, { parser: notepack, key: 'k', requestsTimeout: 100, publishOnSpecificResponseChannel: true }), 'function')
  })

  test('connection settings come from node-redis and ioredis clients, with credentials', T, async () => {
    const secured = await startRedis(['--requirepass', 's3cret'])
    const port = secured.port
    try {
      const nodeRedis = createClient({ socket: { host: '127.0.0.1', port }, password: 's3cret', database: 2 })
      const ioredis = new Redis({ host: '127.0.0.1', port, password: 's3cret', db: 3, lazyConnect: true })
      await nodeRedis.connect()
      const a = new Server({ adapter: createAdapter(nodeRedis, nodeRedis.duplicate()) })
      const b = new Server({ adapter: createAdapter(ioredis, ioredis.duplicate()) })
      const c = new Server({ adapter: createAdapter({ url: `redis://:s3cret@127.0.0.1:${port}/1` }) })
      await Promise.all([serve(a), serve(b), serve(c)])
      await until('three nodes', async () => (await a.of('/').adapter.serverCount()) === 3)
      assert.equal(await b.of('/').adapter.serverCount(), 3)
      // A wrong password is no cluster at all (the bus keeps retrying).
      const d = new Server({ adapter: createAdapter({ url: `redis://:wrong@127.0.0.1:${port}` }) })
      await serve(d)
      await assert.rejects(d.of('/').adapter.serverCount())
      for (const io of [a, b, c, d]) io.close()
      await nodeRedis.quit()
      ioredis.disconnect()
    } finally {
      secured.stop()
    }
  })

  test("Tidewire's Engine and socket.io's own engine in one cluster", T, async () => {
    const ours = new Server({ adapter: createAdapter({ url: redis.url }) })
    const stock = new Server({ adapter: createAdapter({ url: redis.url }) })
    const [u1, u2] = [await serve(ours, { engine: true }), await serve(stock)]
    const [c1, c2] = [await connect(u1, { transports: ['polling', 'websocket'] }), await connect(u2)]
    await sleep(100)
    const got = [once(c1, 'hi'), once(c2, 'hi')]
    stock.emit('hi', Buffer.from('x'))
    for (const [arg] of await Promise.all(got)) assert.equal(Buffer.from(arg).toString(), 'x')
    const ids = (await ours.fetchSockets()).map((s) => s.id).sort()
    assert.deepEqual(ids, [...ours.of('/').sockets.keys(), ...stock.of('/').sockets.keys()].sort())
    c1.disconnect()
    c2.disconnect()
    ours.close()
    stock.close()
  })

  test('a session recovers on its node with what other nodes broadcast meanwhile', T, async () => {
    const a = new Server({ adapter: createAdapter({ url: redis.url }), connectionStateRecovery: {} })
    const b = new Server({ adapter: createAdapter({ url: redis.url }), connectionStateRecovery: {} })
    const [ua] = [await serve(a), await serve(b)]
    const client = await connect(ua)
    const [server] = [...a.of('/').sockets.values()]
    server.data = { kept: true }
    server.join('room')
    await sleep(100)
    a.emit('first')
    await once(client, 'first')
    const gone = once(client, 'disconnect')
    client.io.engine.close()
    await gone
    b.to('room').emit('missed', 'from b')
    await sleep(100)
    const missed = once(client, 'missed')
    await once(client, 'connect')
    assert.equal(client.recovered, true)
    assert.equal((await missed)[0], 'from b')
    const [restored] = [...a.of('/').sockets.values()]
    assert.deepEqual(restored.data, { kept: true })
    assert.ok(restored.rooms.has('room'))
    client.disconnect()
    a.close()
    b.close()
  })

  test('a session recovers on another node, with what it missed there; once only', T, async () => {
    const opts = { connectionStateRecovery: {} }
    const a = new Server({ adapter: createAdapter({ url: redis.url }), ...opts })
    const b = new Server({ adapter: createAdapter({ url: redis.url }), ...opts })
    const [ua, ub] = [await serve(a), await serve(b)]
    const client = await connect(ua)
    const [held] = [...a.of('/').sockets.values()]
    held.data = { user: 'u1' }
    held.join('room')
    await sleep(100)
    a.emit('first')
    await once(client, 'first')
    const gone = once(client, 'disconnect')
    // The client comes back to node B.
    client.io.uri = ub
    client.io.engine.close()
    await gone
    b.to('room').emit('missed', Buffer.from([7]))
    await sleep(100)
    const missed = once(client, 'missed')
    await once(client, 'connect')
    assert.equal(client.recovered, true)
    const [restored] = [...b.of('/').sockets.values()]
    assert.equal(restored.id, held.id)
    assert.ok(restored.recovered)
    assert.deepEqual(restored.data, { user: 'u1' })
    assert.ok(restored.rooms.has('room'))
    assert.deepEqual([...(await missed)[0]], [7])
    // Taken out of A's store: a second attempt with the same pid fails.
    assert.equal(a.of('/').adapter.sessions.has(client._pid), false)
    // From now on B's broadcasts to the room reach it, A's too.
    const later = once(client, 'later')
    a.to('room').emit('later', 'x')
    assert.equal((await later)[0], 'x')
    client.disconnect()
    a.close()
    b.close()
  })

  test('an unknown session is a new one, at once', T, async () => {
    const opts = { connectionStateRecovery: {} }
    const a = new Server({ adapter: createAdapter({ url: redis.url }), ...opts })
    const b = new Server({ adapter: createAdapter({ url: redis.url }), ...opts })
    const [ua] = [await serve(a), await serve(b)]
    const started = Date.now()
    const client = await connect(ua, { auth: { pid: 'nope', offset: 'x' } })
    assert.equal(client.recovered, false)
    assert.ok(Date.now() - started < 2000)
    client.disconnect()
    a.close()
    b.close()
  })

  test('a Redis restart under traffic: what was broadcast meanwhile arrives once it is back', { timeout: 40_000 }, async () => {
    const own = await startRedis()
    const a = new Server({ adapter: createAdapter({ url: own.url }) })
    const b = new Server({ adapter: createAdapter({ url: own.url }) })
    const [, ub] = [await serve(a), await serve(b)]
    const client = await connect(ub)
    ;[...b.of('/').sockets.values()][0].join('room')
    await sleep(200)
    const got = []
    client.on('n', (n) => got.push(n))
    a.to('room').emit('n', 0)
    await until('the first broadcast', () => got.length === 1)
    own.stop()
    await sleep(300)
    for (let n = 1; n <= 3; n++) a.to('room').emit('n', n)
    const back = await startRedis([], own.port)
    try {
      await until('the broadcasts of the outage', () => got.length === 4, 30_000)
      assert.deepEqual(got, [0, 1, 2, 3])
    } finally {
      client.disconnect()
      a.close()
      b.close()
      back.stop()
    }
  })

  test('a malformed message of another node does not stop this one', T, async () => {
    const io = new Server({ adapter: createAdapter({ url: redis.url }) })
    const url = await serve(io)
    const client = await connect(url)
    const pub = createClient({ url: redis.url })
    await pub.connect()
    await pub.publish('socket.io#/#', Buffer.from([0xc1, 0xff]))
    await pub.publish('socket.io-request#/#', '{"type": 5, "uid": "x"')
    await pub.publish('socket.io-request#/#', '{"type": 42, "uid": "x", "requestId": "r"}')
    const other = new Server({ adapter: createAdapter({ url: redis.url }) })
    await serve(other)
    await sleep(100)
    const got = once(client, 'still')
    other.emit('still', 'here')
    assert.deepEqual(await got, ['here'])
    await pub.quit()
    client.disconnect()
    io.close()
    other.close()
  })
})
