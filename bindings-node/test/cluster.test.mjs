// Two `tidewire` servers in one process joined over a redis-server of the
// test's own (free loopback port): a broadcast on one reaches a
// socket.io-client connected to the other.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { io } from 'socket.io-client'
import { startRedis, until } from './adapter-helpers.mjs'

const require = createRequire(import.meta.url)
const { Server } = require('../tidewire.js')

const T = { timeout: 20_000 }

describe('tidewire servers in a cluster over Redis', () => {
  let redis
  let a
  let b
  let client

  before(async () => {
    redis = await startRedis()
    a = new Server()
    b = new Server()
    b.on('connection', (socket) => socket.join('room'))
    for (const s of [a, b]) {
      await s.joinCluster({ redisUrl: redis.url, requestTimeout: 1000 })
      await s.listen()
    }
    const { url } = await b.listen()
    client = io(url, { reconnection: false, transports: ['websocket'] })
    await new Promise((resolve, reject) => {
      client.once('connect', resolve)
      client.once('connect_error', reject)
    })
  })

  after(async () => {
    client?.close()
    await a?.close()
    await b?.close()
    redis?.stop()
  })

  test('both servers count two nodes', T, async () => {
    await until('two nodes', async () => (await a.serverCount()) === 2 && (await b.of('/').serverCount()) === 2)
  })

  test('a broadcast on one server reaches a room member on the other, binary included', T, async () => {
    const got = []
    client.on('probe', () => got.push('probe'))
    client.on('news', (...args) => got.push(args))
    // The other node subscribes to the room's channel as its member arrives.
    await until('the room reachable from a', () => {
      a.to('room').emit('probe')
      return got.includes('probe')
    })
    assert.equal(a.to('room').emit('news', 'headline', Buffer.from([1, 2, 3])), 0, 'no member on a itself')
    await until('news on b', () => got.some((g) => Array.isArray(g)))
    const news = got.filter((g) => Array.isArray(g))
    assert.equal(news.length, 1)
    assert.equal(news[0][0], 'headline')
    assert.ok(Buffer.isBuffer(news[0][1]))
    assert.deepEqual([...news[0][1]], [1, 2, 3])
  })

  test("fetchSockets, socketsJoin, socketsLeave and disconnectSockets reach the other server's sockets", T, async () => {
    const [remote] = await a.in('room').fetchSockets()
    assert.equal(remote.id, client.id)
    assert.ok(remote.rooms.has('room'))
    assert.equal(typeof remote.handshake.headers, 'object')
    assert.equal((await a.local.fetchSockets()).length, 0, 'local: none on a')
    const [own] = await b.fetchSockets()
    assert.equal(own, [...(await b.local.fetchSockets())][0], "this server's own: its Socket object")
    const direct = new Promise((r) => client.once('direct', r))
    remote.emit('direct', 'hi')
    assert.equal(await direct, 'hi')
    a.in('room').socketsJoin('joined')
    await until('joined on b', async () => (await b.in('joined').fetchSockets()).length === 1)
    a.socketsLeave('joined')
    await until('left on b', async () => (await b.in('joined').fetchSockets()).length === 0)
  })

  test("serverSideEmit reaches the other server's listeners, not its own; acks gather every node's answer", T, async () => {
    const heard = { a: [], b: [], chat: [] }
    a.onServerSideEmit('hello', (...args) => heard.a.push(args))
    b.onServerSideEmit('hello', (...args) => heard.b.push(args))
    b.of('/chat').onServerSideEmit('hello', (...args) => heard.chat.push(args))
    assert.equal(a.serverSideEmit('hello', 'world', Buffer.from([7])), true)
    await until('b heard', () => heard.b.length === 1)
    // The classic protocol's requests are JSON: binary arrives as Node's
    // JSON of a Buffer, as between official socket.io nodes.
    assert.deepEqual(heard.b, [['world', { type: 'Buffer', data: [7] }]])
    a.of('/chat').serverSideEmit('hello', 'chat')
    await until('b /chat heard', () => heard.chat.length === 1)
    assert.deepEqual(heard.chat, [['chat']])
    assert.equal(heard.b.length, 1, "another namespace's event is not the main one's")
    assert.equal(heard.a.length, 0, 'never to the sender itself')

    b.onServerSideEmit('load?', (n, answer) => answer({ node: 'b', n }))
    assert.deepEqual(await a.serverSideEmitWithAck('load?', 2), [{ node: 'b', n: 2 }])
    const viaCallback = await new Promise((resolve) => a.serverSideEmit('load?', 3, (err, responses) => resolve([err, responses])))
    assert.deepEqual(viaCallback, [null, [{ node: 'b', n: 3 }]])
    // Several listeners: the first answer counts.
    b.onServerSideEmit('load?', (n, answer) => answer('second'))
    assert.deepEqual(await a.serverSideEmitWithAck('load?', 4), [{ node: 'b', n: 4 }])
    // A node that does not answer within requestTimeout: socket.io's error, with what came.
    b.onServerSideEmit('silent', () => {})
    await assert.rejects(a.serverSideEmitWithAck('silent'), (e) => {
      assert.equal(e.code, 'ERR_ACK_TIMEOUT')
      assert.match(e.message, /timeout reached: only 0 responses received out of 1/)
      return true
    })
    // A listener that cannot answer binary says so, and b keeps serving.
    const refused = []
    b.onServerSideEmit('binary?', (answer) => {
      try {
        answer(Buffer.from([1]))
      } catch (e) {
        refused.push(e.code)
        answer('instead')
      }
    })
    assert.deepEqual(await a.serverSideEmitWithAck('binary?'), ['instead'])
    assert.deepEqual(refused, ['ERR_INVALID_ARG'])
  })

  test('bad options are refused with a code; a second join too', T, async () => {
    const c = new Server()
    await assert.rejects(c.joinCluster({}), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(c.joinCluster({ redisUrl: 'not a url' }), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(a.joinCluster({ redisUrl: redis.url }), { code: 'ERR_INVALID_ARG' })
    await c.close()
  })
})

describe("tidewire's Server and an official socket.io node (@socket.io/redis-adapter) over one Redis", () => {
  test('serverSideEmit both ways, with acknowledgements', T, async () => {
    const { Server: SocketIoServer } = require('socket.io')
    const { createAdapter } = require('@socket.io/redis-adapter')
    const { createClient } = require('redis')
    const redis = await startRedis()
    const pub = createClient({ url: redis.url })
    const sub = pub.duplicate()
    await Promise.all([pub.connect(), sub.connect()])
    const official = new SocketIoServer({ adapter: createAdapter(pub, sub, { requestsTimeout: 1000 }) })
    const native = new Server()
    try {
      await native.joinCluster({ redisUrl: redis.url, requestTimeout: 1000 })
      await until('two nodes, seen from both', async () => (await native.serverCount()) === 2 && (await official.of('/').adapter.serverCount()) === 2)
      // Tidewire to the official node.
      const heard = []
      official.on('hello', (...args) => heard.push(args))
      official.on('load?', (n, answer) => answer({ node: 'official', n }))
      native.serverSideEmit('hello', 'from tidewire', { n: 1 })
      await until('the official node heard', () => heard.length === 1)
      assert.deepEqual(heard, [['from tidewire', { n: 1 }]])
      assert.deepEqual(await native.serverSideEmitWithAck('load?', 5), [{ node: 'official', n: 5 }])
      // The official node to Tidewire.
      const got = []
      native.onServerSideEmit('hello', (...args) => got.push(args))
      native.onServerSideEmit('ping?', (x, answer) => answer(x + 1))
      official.serverSideEmit('hello', 'from socket.io')
      await until('tidewire heard', () => got.length === 1)
      assert.deepEqual(got, [['from socket.io']])
      assert.deepEqual(await official.serverSideEmitWithAck('ping?', 41), [42])
    } finally {
      // An official Server never attached has no engine to close: its
      // adapter goes with its Redis clients.
      await native.close()
      await Promise.allSettled([pub.quit(), sub.quit()])
      redis.stop()
    }
  })
})
