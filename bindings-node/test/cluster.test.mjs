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

  test('bad options are refused with a code; a second join too', T, async () => {
    const c = new Server()
    await assert.rejects(c.joinCluster({}), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(c.joinCluster({ redisUrl: 'not a url' }), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(a.joinCluster({ redisUrl: redis.url }), { code: 'ERR_INVALID_ARG' })
    await c.close()
  })
})
