// The behaviours @socket.io/redis-adapter's own test suite checks
// (socketio/socket.io-redis-adapter, test/index.ts), written for node:test
// and run on clusters of three socket.io servers whose adapters are given
// by `kinds` (see adapter-helpers.mjs).
import { describe, test, before, after, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { startRedis, setupCluster, sleep, times, once } from './adapter-helpers.mjs'

const T = { timeout: 20_000 }

const noCall = (what) => () => {
  throw new Error(`unexpected ${what}`)
}

/** Fails the test if `client` gets `event` within the test's remaining time (checked at the end). */
function forbid(client, event, seen) {
  client.on(event, () => seen.push(event))
}

export function adapterSuite(title, kinds, { sharded = false, adapterOpts = {}, serverOpts = {} } = {}) {
  describe(title, () => {
    let redis
    let servers
    let serverSockets
    let clientSockets
    let cleanup

    before(async () => {
      redis = await startRedis()
    })
    after(() => redis.stop())
    beforeEach(async () => {
      ;({ servers, serverSockets, clientSockets, cleanup } = await setupCluster(redis, kinds, { adapterOpts, serverOpts }))
    })
    afterEach(async () => cleanup())

    describe('broadcast', () => {
      test('reaches every client, binary arguments included', T, async () => {
        const got = clientSockets.map((c) => once(c, 'test'))
        servers[0].emit('test', 1, '2', Buffer.from([3, 4]))
        for (const [a, b, c] of await Promise.all(got)) {
          assert.equal(a, 1)
          assert.equal(b, '2')
          assert.ok(Buffer.isBuffer(c))
          assert.deepEqual([...c], [3, 4])
        }
      })

      test('reaches every client of another namespace', T, async () => {
        servers.forEach((s) => s.of('/custom'))
        const sockets = clientSockets.map((c) => c.io.socket('/custom'))
        await Promise.all(sockets.map((s) => (s.connect(), once(s, 'connect'))))
        await sleep(200)
        const got = sockets.map((s) => once(s, 'test'))
        servers[0].of('/custom').emit('test', { nested: [Buffer.from('x')] })
        for (const [arg] of await Promise.all(got)) assert.deepEqual([...arg.nested[0]], [...Buffer.from('x')])
        sockets.forEach((s) => s.disconnect())
      })

      test('reaches the clients of a room only', T, async () => {
        serverSockets[1].join('room1')
        const seen = []
        forbid(clientSockets[0], 'test', seen)
        forbid(clientSockets[2], 'test', seen)
        const got = once(clientSockets[1], 'test')
        await sleep(50)
        servers[0].to('room1').emit('test')
        await got
        await sleep(100)
        assert.deepEqual(seen, [])
      })

      test('skips the clients of an excepted room', T, async () => {
        serverSockets[1].join('room1')
        await sleep(50)
        const seen = []
        forbid(clientSockets[1], 'test', seen)
        const got = [once(clientSockets[0], 'test'), once(clientSockets[2], 'test')]
        servers[0].of('/').except('room1').emit('test')
        await Promise.all(got)
        await sleep(100)
        assert.deepEqual(seen, [])
      })

      test('reaches each client once across several rooms', T, async () => {
        serverSockets[0].join(['room1', 'room2'])
        serverSockets[1].join(['room1', 'room2', 'room3'])
        serverSockets[2].join('room1')
        await sleep(50)
        const counts = [0, 0, 0]
        clientSockets.forEach((c, i) => c.on('test', () => counts[i]++))
        servers[0].of('/').to('room1').to('room2').except('room3').emit('test')
        await sleep(300)
        assert.deepEqual(counts, [1, 0, 1])
      })

      test('local reaches this node only', T, async () => {
        const seen = []
        forbid(clientSockets[1], 'test', seen)
        forbid(clientSockets[2], 'test', seen)
        const got = once(clientSockets[0], 'test')
        servers[0].local.emit('test')
        await got
        await sleep(100)
        assert.deepEqual(seen, [])
      })

      test('reaches a single client by its id', T, async () => {
        const seen = []
        forbid(clientSockets[0], 'test', seen)
        forbid(clientSockets[2], 'test', seen)
        const got = once(clientSockets[1], 'test')
        servers[0].to(serverSockets[1].id).emit('test')
        await got
        await sleep(100)
        assert.deepEqual(seen, [])
      })

      // Not to an official node from a Tidewire one: the core's wire keeps
      // rooms as strings ("123"), which an official node does not match
      // with a room it holds as the number 123.
      if (!sharded && kinds[0] !== 'official') {
        test('reaches a numeric room', T, async () => {
          serverSockets[0].join(123)
          await sleep(50)
          const got = once(clientSockets[0], 'test')
          servers[1].to(123).emit('test')
          await got
        })
      }

      test('collects every acknowledgement', T, async () => {
        clientSockets.forEach((c, i) => c.on('test', (cb) => cb(i + 1)))
        const responses = await servers[0].timeout(2000).emitWithAck('test')
        assert.deepEqual([...responses].sort(), [1, 2, 3])
      })

      test('collects binary acknowledgements', T, async () => {
        clientSockets.forEach((c, i) => c.on('test', (cb) => cb(Buffer.from([i]))))
        const responses = await servers[0].timeout(2000).emitWithAck('test')
        assert.equal(responses.length, 3)
        for (const r of responses) assert.ok(Buffer.isBuffer(r))
        assert.deepEqual(responses.map((r) => r[0]).sort(), [0, 1, 2])
      })

      test('acknowledgements of nobody: an empty list', T, async () => {
        assert.deepEqual(await servers[0].to('abc').timeout(1000).emitWithAck('test'), [])
      })

      test('a missing acknowledgement is a timeout with the others', T, async () => {
        clientSockets[0].on('test', (cb) => cb(1))
        clientSockets[1].on('test', (cb) => cb(2))
        clientSockets[2].on('test', () => {})
        const [err, responses] = await new Promise((resolve) =>
          servers[0].timeout(500).emit('test', (err, responses) => resolve([err, responses])),
        )
        assert.ok(err instanceof Error)
        assert.deepEqual([...responses].sort(), [1, 2])
      })
    })

    describe('socketsJoin / socketsLeave / disconnectSockets', () => {
      test('every socket joins', T, async () => {
        servers[0].socketsJoin('room1')
        await sleep(200)
        for (const s of serverSockets) assert.ok(s.rooms.has('room1'))
      })

      test('the sockets of a room join another', T, async () => {
        serverSockets[0].join('room1')
        serverSockets[2].join('room1')
        servers[0].in('room1').socketsJoin('room2')
        await sleep(200)
        assert.deepEqual(serverSockets.map((s) => s.rooms.has('room2')), [true, false, true])
      })

      test('one socket joins by its id, and the room events fire', T, async () => {
        const events = []
        const adapter = servers[1].of('/').adapter
        adapter.on('create-room', (room) => events.push(['create-room', room]))
        adapter.on('join-room', (room, id) => events.push(['join-room', room, id]))
        servers[0].in(serverSockets[1].id).socketsJoin('room3')
        await sleep(200)
        assert.deepEqual(serverSockets.map((s) => s.rooms.has('room3')), [false, true, false])
        assert.deepEqual(events, [
          ['create-room', 'room3'],
          ['join-room', 'room3', serverSockets[1].id],
        ])
        assert.deepEqual([...adapter.rooms.get('room3')], [serverSockets[1].id])
        assert.ok(adapter.sids.get(serverSockets[1].id).has('room3'))
      })

      test('every socket leaves', T, async () => {
        serverSockets[0].join('room1')
        serverSockets[2].join('room1')
        const events = []
        servers[2].of('/').adapter.on('leave-room', (room) => events.push(['leave-room', room]))
        servers[2].of('/').adapter.on('delete-room', (room) => events.push(['delete-room', room]))
        servers[0].socketsLeave('room1')
        await sleep(200)
        for (const s of serverSockets) assert.ok(!s.rooms.has('room1'))
        assert.deepEqual(events, [
          ['leave-room', 'room1'],
          ['delete-room', 'room1'],
        ])
      })

      test('the sockets of a room leave another', T, async () => {
        serverSockets[0].join(['room1', 'room2'])
        serverSockets[1].join(['room1', 'room2'])
        serverSockets[2].join(['room2'])
        servers[0].in('room1').socketsLeave('room2')
        await sleep(200)
        assert.deepEqual(serverSockets.map((s) => s.rooms.has('room2')), [false, false, true])
      })

      test('one socket leaves by its id', T, async () => {
        serverSockets.forEach((s) => s.join('room3'))
        servers[0].in(serverSockets[1].id).socketsLeave('room3')
        await sleep(200)
        assert.deepEqual(serverSockets.map((s) => s.rooms.has('room3')), [true, false, true])
      })

      test('every socket is disconnected', T, async () => {
        const reasons = clientSockets.map((c) => once(c, 'disconnect'))
        servers[0].disconnectSockets()
        for (const [reason] of await Promise.all(reasons)) assert.equal(reason, 'io server disconnect')
      })
    })

    describe('fetchSockets', () => {
      test('returns every socket of the cluster', T, async () => {
        const sockets = await servers[0].fetchSockets()
        assert.deepEqual(sockets.map((s) => s.id).sort(), serverSockets.map((s) => s.id).sort())
      })

      test('returns one socket with its handshake, data and rooms; it can be emitted to', T, async () => {
        serverSockets[1].data = { user: 'test', bin: 1 }
        serverSockets[1].join('extra')
        const [remote] = await servers[0].in(serverSockets[1].id).fetchSockets()
        assert.deepEqual(remote.handshake, JSON.parse(JSON.stringify(serverSockets[1].handshake)))
        assert.deepEqual(remote.data, { user: 'test', bin: 1 })
        assert.deepEqual([...remote.rooms].sort(), [serverSockets[1].id, 'extra'].sort())
        const got = once(clientSockets[1], 'hello')
        remote.emit('hello', 'there')
        assert.deepEqual(await got, ['there'])
      })

      test('local returns this node only', T, async () => {
        const sockets = await servers[0].local.fetchSockets()
        assert.deepEqual(sockets.map((s) => s.id), [serverSockets[0].id])
      })
    })

    describe('serverSideEmit', () => {
      test('reaches the other servers, not the sender', T, async () => {
        const partial = times(2)
        servers[0].on('hello', noCall('hello on the sender'))
        servers[1].on('hello', (a, b, c) => {
          assert.deepEqual([a, b, c], ['world', 1, '2'])
          partial()
        })
        servers[2].of('/').on('hello', () => partial())
        servers[0].serverSideEmit('hello', 'world', 1, '2')
        await partial.done
      })

      test('gathers each server\'s answer', T, async () => {
        servers[0].on('hello', noCall('hello on the sender'))
        servers[1].on('hello', (cb) => cb(2))
        servers[2].on('hello', (cb) => cb('3'))
        const [err, responses] = await new Promise((resolve) => servers[0].serverSideEmit('hello', (err, r) => resolve([err, r])))
        assert.equal(err, null)
        assert.deepEqual([...responses].sort(), [2, '3'].sort())
        assert.deepEqual([...(await servers[0].serverSideEmitWithAck('hello'))].sort(), [2, '3'].sort())
      })

      test('a silent server is a timeout, with the answers received', { timeout: 20_000 }, async () => {
        servers[1].on('hello', (cb) => cb(2))
        servers[2].on('hello', () => {})
        const [err, responses] = await new Promise((resolve) => servers[0].serverSideEmit('hello', (err, r) => resolve([err, r])))
        assert.equal(err.message, 'timeout reached: only 1 responses received out of 2')
        assert.deepEqual(responses, [2])
      })
    })

    if (!sharded && kinds[0] === 'tidewire') {
      test('allRooms lists the rooms of every node', T, async () => {
        serverSockets[1].join('r1')
        serverSockets[2].join('r2')
        const rooms = await servers[0].of('/').adapter.allRooms()
        for (const room of ['r1', 'r2', ...serverSockets.map((s) => s.id)]) assert.ok(rooms.has(room), room)
      })
    }
    if (sharded && kinds[0] === 'tidewire-sharded') {
      test('allRooms is refused: the sharded protocol cannot ask it', T, async () => {
        await assert.rejects(servers[0].of('/').adapter.allRooms(), { code: 'ERR_UNSUPPORTED' })
      })
    }

    test('serverCount counts every server', T, async () => {
      for (const io of servers) assert.equal(await io.of('/').adapter.serverCount(), 3)
    })
  })
}
