// The broadcast fast path: a socket.io Server with Tidewire's adapter bound
// to Tidewire's Engine hands each broadcast to the core once, which writes
// it to every recipient's session. Real socket.io 4.8 and socket.io-client,
// over WebSocket and long-polling; socket.io's own path (stock engine.io)
// as the fallback.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import { Server } from 'socket.io'
import { tidewire, startRedis, until, once, sleep, socketIoClients } from './adapter-helpers.mjs'

const { createAdapter, Engine } = tidewire
const T = { timeout: 30_000 }

/** A socket.io Server with Tidewire's adapter, on Tidewire's Engine (or socket.io's own with `stock`). */
async function start({ stock = false, io: ioOpts = {}, adapter = createAdapter(), engine: engineOpts = {} } = {}) {
  const http = createHttpServer()
  const io = new Server({ adapter, ...ioOpts })
  if (stock) {
    io.attach(http)
  } else {
    const engine = new Engine({ pingInterval: 5000, pingTimeout: 5000, ...engineOpts })
    engine.attach(http, { path: '/socket.io/' })
    io.bind(engine)
  }
  await new Promise((r) => http.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${http.address().port}`
  return {
    url,
    io,
    http,
    adapter: () => io.of('/').adapter,
    ...socketIoClients(io, http, url),
  }
}

/** Collects `event`'s first arguments on `client` until `end` arrives. */
function collect(client, event = 'x', end = 'end') {
  const got = []
  client.on(event, (v) => got.push(v))
  return once(client, end, 10_000).then(() => got)
}

/** Counts the engine-level writes (socket.io's own path) to each server socket's connection. */
function countWrites(sockets) {
  const counts = { writes: 0 }
  for (const s of sockets) {
    const conn = s.conn
    const write = conn.write
    conn.write = function (...args) {
      counts.writes++
      return write.apply(this, args)
    }
  }
  return counts
}

describe('fast path: Tidewire adapter + Tidewire Engine', () => {
  test('a broadcast reaches many clients over WebSocket and long-polling, written by the core', T, async () => {
    const srv = await start()
    try {
      const clients = []
      for (let i = 0; i < 30; i++) clients.push(await srv.connect())
      for (let i = 0; i < 10; i++) clients.push(await srv.connect({ transports: ['polling'] }))
      // Polling, then upgraded to WebSocket.
      for (let i = 0; i < 5; i++) {
        const c = await srv.connect({ transports: ['polling', 'websocket'] })
        await until('upgrade', () => c.io.engine.transport.name === 'websocket')
        clients.push(c)
      }
      for (const c of clients) srv.socketOf(c).join('room')
      const outsider = await srv.connect()
      const writes = countWrites(clients.map((c) => srv.socketOf(c)))
      const before = srv.adapter().fastBroadcasts
      const all = clients.map((c) => collect(c, 'x'))
      let outsiderGot = 0
      outsider.on('x', () => outsiderGot++)
      for (let i = 0; i < 20; i++) srv.io.to('room').emit('x', i)
      srv.io.to('room').emit('end')
      for (const got of await Promise.all(all)) assert.deepEqual(got, [...Array(20).keys()])
      assert.equal(outsiderGot, 0)
      assert.equal(srv.adapter().fastBroadcasts - before, 21, 'every broadcast went through the core')
      assert.equal(writes.writes, 0, "socket.io's per-socket write was never called")
    } finally {
      await srv.close()
    }
  })

  test("a socket's own emits and broadcasts arrive in call order", T, async () => {
    for (const ioOpts of [{}, { connectionStateRecovery: {} }]) {
      const srv = await start({ io: ioOpts })
      try {
        const [ws, polling] = [await srv.connect(), await srv.connect({ transports: ['polling'] })]
        for (const client of [ws, polling]) {
          const socket = srv.socketOf(client)
          socket.join('r')
          const got = collect(client, 'seq')
          // In one run, as an app does: the socket's own packets wait for
          // the end of the run in JavaScript, the broadcasts go straight to
          // the core; each must still land in call order.
          for (let i = 0; i < 60; i++) {
            if (i % 3 === 0) socket.emit('seq', i)
            else if (i % 3 === 1) srv.io.to('r').emit('seq', i)
            else srv.io.to(socket.id).emit('seq', i)
          }
          socket.emit('end')
          assert.deepEqual(await got, [...Array(60).keys()], JSON.stringify(ioOpts))
          socket.leave('r')
        }
        assert.ok(srv.adapter().fastBroadcasts >= 80)
      } finally {
        await srv.close()
      }
    }
  })

  test('rooms, except, a socket excluded by broadcast, numeric rooms, local', T, async () => {
    const srv = await start()
    try {
      const [a, b, c, d] = [await srv.connect(), await srv.connect(), await srv.connect({ transports: ['polling'] }), await srv.connect()]
      const [sa, sb, sc, sd] = [a, b, c, d].map((x) => srv.socketOf(x))
      sa.join('r1')
      sb.join(['r1', 'r2'])
      sc.join('r2')
      sd.join(7)
      const got = [a, b, c, d].map((x) => collect(x, 'x'))
      srv.io.to(['r1', 'r2']).emit('x', 'union')
      srv.io.to('r1').except('r2').emit('x', 'r1-not-r2')
      srv.io.except('r1').emit('x', 'all-but-r1')
      sa.broadcast.emit('x', 'from-a')
      sb.to('r2').emit('x', 'b-to-r2')
      srv.io.to(7).emit('x', 'number')
      srv.io.to('7').emit('x', 'string')
      srv.io.local.to('r2').emit('x', 'local')
      srv.io.except(sd.id).emit('x', 'except-d')
      srv.io.emit('end')
      const [ga, gb, gc, gd] = await Promise.all(got)
      assert.deepEqual(ga, ['union', 'r1-not-r2', 'except-d'])
      assert.deepEqual(gb, ['union', 'from-a', 'local', 'except-d'])
      assert.deepEqual(gc, ['union', 'all-but-r1', 'from-a', 'b-to-r2', 'local', 'except-d'])
      assert.deepEqual(gd, ['all-but-r1', 'from-a', 'number'])
      // socket.io's maps are still what apps read.
      assert.deepEqual([...srv.io.of('/').adapter.rooms.get('r2')].sort(), [sb.id, sc.id].sort())
      // A socket that left is no longer reached; one that disconnected neither.
      sb.leave('r1')
      a.disconnect()
      await until('a gone', () => !srv.io.of('/').sockets.has(sa.id))
      const more = [b, c].map((x) => collect(x, 'x', 'end2'))
      srv.io.to('r1').emit('x', 'r1 again')
      srv.io.to(sa.id).emit('x', 'to a')
      srv.io.emit('x', 'all')
      srv.io.emit('end2')
      assert.deepEqual(await more[0], ['all'])
      assert.deepEqual(await more[1], ['all'])
    } finally {
      await srv.close()
    }
  })

  test('binary attachments, over WebSocket and long-polling', T, async () => {
    const srv = await start()
    try {
      const clients = [await srv.connect(), await srv.connect({ transports: ['polling'] })]
      for (const c of clients) srv.socketOf(c).join('bin')
      const before = srv.adapter().fastBroadcasts
      const got = clients.map((c) => once(c, 'bin'))
      srv.io.to('bin').emit('bin', Buffer.from([1, 2, 3]), { nested: [Buffer.from('hé'), 'text'], n: 1 }, new Uint8Array([9]))
      for (const [buf, obj, arr] of await Promise.all(got)) {
        assert.deepEqual([...new Uint8Array(buf)], [1, 2, 3])
        assert.equal(Buffer.from(obj.nested[0]).toString(), 'hé')
        assert.deepEqual([obj.nested[1], obj.n], ['text', 1])
        assert.deepEqual([...new Uint8Array(arr)], [9])
      }
      assert.equal(srv.adapter().fastBroadcasts - before, 1)
    } finally {
      await srv.close()
    }
  })

  test('volatile: dropped when the transport is not writable (as engine.io), and for a session that lags', T, async () => {
    const srv = await start({ engine: { pingInterval: 20_000, pingTimeout: 20_000 } })
    try {
      const fast = await srv.connect()
      const got = collect(fast, 'v')
      srv.io.volatile.emit('v', 1)
      srv.io.emit('end')
      assert.deepEqual(await got, [1])

      // A long-polling client that stops polling: what the server sends
      // piles up in its session until it polls again.
      const base = `${srv.url}/socket.io/?EIO=4&transport=polling`
      const open = await (await fetch(base)).text()
      const sid = JSON.parse(open.slice(1)).sid
      const poll = `${base}&sid=${sid}`
      await fetch(poll, { method: 'POST', body: '40' })
      assert.match(await (await fetch(poll)).text(), /^40\{"sid":/)
      const big = 'y'.repeat(800_000)
      for (let i = 0; i < 3; i++) srv.io.emit('big', i, big) // 2.4 MB queued: past half the queue's 4 MiB
      srv.io.volatile.emit('v', 'dropped')
      srv.io.emit('after', 'kept')
      const bodies = []
      while (!bodies.some((b) => b.includes('"after"'))) bodies.push(await (await fetch(poll)).text())
      const events = bodies
        .join('\x1e')
        .split('\x1e')
        .filter((p) => p.startsWith('42'))
        .map((p) => JSON.parse(p.slice(2))[0])
      assert.deepEqual(events, ['big', 'big', 'big', 'after'])
      // Caught up, with no GET waiting: still not writable, as engine.io's
      // polling transport, so socket.io's rule drops it.
      srv.io.volatile.emit('v', 'not writable')
      // A GET waiting with nothing queued: writable, so it gets through.
      const waiting = fetch(poll).then((r) => r.text())
      await until('the GET waits', () => srv.io.engine.clients[sid]?.transport.writable)
      srv.io.volatile.emit('v', 'now')
      const body = await waiting
      assert.match(body, /42\["v","now"\]/)
      assert.doesNotMatch(body, /not writable/)
    } finally {
      await srv.close()
    }
  })

  test('connection state recovery replays the broadcasts a client missed', T, async () => {
    const srv = await start({ io: { connectionStateRecovery: { maxDisconnectionDuration: 10_000 } } })
    try {
      const client = await srv.connect({ reconnection: true, reconnectionDelay: 800, reconnectionDelayMax: 800, randomizationFactor: 0 })
      srv.socketOf(client).join('kept')
      const before = srv.adapter().fastBroadcasts
      const first = once(client, 'm')
      srv.io.to('kept').emit('m', 'before')
      // The session-aware adapter's offset is the last argument.
      const [value, offset] = await first
      assert.equal(value, 'before')
      assert.equal(typeof offset, 'string')
      assert.ok(srv.adapter().fastBroadcasts > before)
      const sid = client.id
      const gone = once(client, 'disconnect')
      client.io.engine.close()
      await gone
      await until('server saw the disconnect', () => !srv.io.of('/').sockets.has(sid))
      srv.io.to('kept').emit('m', 'missed 1')
      srv.io.emit('m', 'missed 2')
      srv.io.to('elsewhere').emit('m', 'not for it')
      const got = []
      client.on('m', (v) => got.push(v))
      await once(client, 'connect')
      assert.equal(client.recovered, true)
      assert.equal(client.id, sid)
      await until('missed packets', () => got.length >= 2)
      // Recovered: in its rooms again, reached by the core.
      srv.io.to('kept').emit('m', 'after')
      await until('after', () => got.length >= 3)
      assert.deepEqual(got, ['missed 1', 'missed 2', 'after'])
      client.io.opts.reconnection = false
    } finally {
      await srv.close()
    }
  })

  test('an onAnyOutgoing listener sees every broadcast its socket gets (socket.io writes to that socket)', T, async () => {
    const srv = await start()
    try {
      const [a, b] = [await srv.connect(), await srv.connect()]
      const seen = []
      srv.socketOf(a).onAnyOutgoing((event, ...args) => seen.push([event, ...args]))
      const got = [a, b].map((c) => collect(c, 'x'))
      const before = srv.adapter().fastBroadcasts
      srv.io.emit('x', 1)
      srv.io.emit('end')
      assert.deepEqual(await Promise.all(got), [[1], [1]])
      assert.deepEqual(seen, [['x', 1], ['end']])
      assert.equal(srv.adapter().fastBroadcasts - before, 2, 'b was still written by the core')
    } finally {
      await srv.close()
    }
  })

  // On both WebSocket paths: the core's own writes (handed over), and npm
  // ws's, which stops the core's framing past its high-water mark.
  for (const handOff of [true, false]) {
    test(`a WebSocket client that stops reading is closed as a slow consumer; the others keep up (handOff: ${handOff})`, T, async () => {
      const srv = await start({ engine: { handOff } })
      try {
        const [stalled, reader] = [await srv.connect(), await srv.connect()]
        const stalledSocket = srv.socketOf(stalled)
        assert.equal(stalledSocket.conn.handedOff, handOff)
        const gone = once(stalledSocket, 'disconnect', 20_000)
        let read = 0
        reader.on('flood', () => read++)
        // The client's TCP socket stops reading: the kernel's buffers, then
        // ws's (up to its high-water mark), then the session's bounded queue fill.
        stalled.io.engine.transport.ws._socket.pause()
        const chunk = 'z'.repeat(64 * 1024)
        let sent = 0
        let closed = false
        gone.then(() => (closed = true))
        while (!closed && sent < 2000) {
          srv.io.emit('flood', chunk)
          sent++
          if (sent % 16 === 0) {
            await new Promise((r) => setImmediate(r))
            // The reader reads (in this same process, between the bursts):
            // let it stay within half of its queue's bound, so that only the
            // client that stopped reading can overflow, however slow the
            // machine.
            const deadline = Date.now() + 10_000
            while (sent - read > 32 && reader.connected && Date.now() < deadline) {
              await new Promise((r) => setTimeout(r, 1))
            }
          }
        }
        const [reason] = await gone
        assert.equal(reason, 'slow consumer')
        await until('the reader got everything', () => read === sent || !reader.connected, 15_000)
        assert.ok(reader.connected, 'the reader was not cut')
        assert.equal(read, sent)
      } finally {
        await srv.close()
      }
    })
  }

  test('broadcasts with acks (socket.io path), and compress(false)', T, async () => {
    const srv = await start()
    try {
      const clients = [await srv.connect(), await srv.connect({ transports: ['polling'] })]
      for (const [i, c] of clients.entries()) c.on('ask', (ack) => ack(i))
      const answers = await srv.io.timeout(5000).emitWithAck('ask')
      assert.deepEqual(answers.sort(), [0, 1])
      const got = clients.map((c) => once(c, 'z'))
      srv.io.compress(false).emit('z', 'plain')
      for (const [v] of await Promise.all(got)) assert.equal(v, 'plain')
    } finally {
      await srv.close()
    }
  })
})

describe("fallback: socket.io's own engine", () => {
  test('the same broadcasts through socket.io-adapter, none through the core', T, async () => {
    const srv = await start({ stock: true })
    try {
      const [a, b] = [await srv.connect(), await srv.connect({ transports: ['polling'] })]
      srv.socketOf(a).join('r')
      srv.socketOf(b).join('r')
      const writes = countWrites([srv.socketOf(a), srv.socketOf(b)])
      const got = [a, b].map((c) => collect(c, 'x'))
      srv.io.to('r').emit('x', Buffer.from([5]))
      srv.io.except('nobody').emit('end')
      for (const g of await Promise.all(got)) assert.deepEqual([...g[0]], [5])
      assert.equal(srv.adapter().fastBroadcasts, 0)
      assert.ok(writes.writes >= 4, "socket.io's own path wrote to each socket")
    } finally {
      await srv.close()
    }
  })
})

/** Two nodes, A and B, with Tidewire's adapter over one Redis, both counted; closed after `fn`. */
async function withTwoNodes(fn) {
  const redis = await startRedis()
  const nodes = []
  try {
    for (let i = 0; i < 2; i++) nodes.push(await start({ adapter: createAdapter({ url: redis.url }) }))
    await until('both nodes', async () => (await nodes[0].adapter().serverCount()) === 2)
    await fn(nodes[0], nodes[1])
  } finally {
    for (const n of nodes) await n.close()
    redis.stop()
  }
}

describe('fast path in a cluster', () => {
  test("another node's broadcast is fanned out by the core of the node holding the sockets", T, async () => {
    await withTwoNodes(async (A, B) => {
      const clients = []
      for (let i = 0; i < 5; i++) clients.push(await B.connect())
      for (const c of clients) B.socketOf(c).join('far')
      await sleep(200)
      const [fast, direct] = [B.adapter().fastBroadcasts, B.adapter().link.native.directBroadcasts]
      const got = clients.map((c) => {
        const all = []
        c.on('x', (...args) => all.push(args))
        return once(c, 'end', 10_000).then(() => all)
      })
      A.io.to('far').emit('x', 'from A', Buffer.from([1, 2]))
      A.io.emit('end')
      for (const g of await Promise.all(got)) {
        assert.equal(g.length, 1)
        assert.equal(g[0][0], 'from A')
        assert.deepEqual([...g[0][1]], [1, 2])
      }
      // Neither crossed into B's JavaScript: B's core wrote them.
      assert.equal(B.adapter().fastBroadcasts, fast)
      assert.equal(B.adapter().link.native.directBroadcasts - direct, 2)
    })
  })

  test("what another node asks before its broadcast (socketsJoin to a new room, socketsLeave, disconnectSockets) is applied before the core delivers it", T, async () => {
    await withTwoNodes(async (A, B) => {
      const clients = []
      for (let i = 0; i < 4; i++) clients.push(await B.connect())
      for (const c of clients) B.socketOf(c).join('base')
      await sleep(200)
      for (let round = 0; round < 20; round++) {
        const room = `late-${round}`
        const got = clients.map((c) => {
          const all = []
          const on = (v) => all.push(v)
          c.on('x', on)
          return once(c, `end-${round}`, 10_000).then(() => {
            c.off('x', on)
            return all
          })
        })
        // B joins its sockets to a room it never had, then A broadcasts there
        // at once: B is not listening to that room's channel yet (interest
        // subscriptions), and the broadcast reaches it all the same.
        A.io.in('base').socketsJoin(room)
        A.io.to(room).emit('x', `joined ${round}`)
        A.io.in('base').socketsLeave(room)
        A.io.to(room).emit('x', `left ${round}`)
        A.io.to('base').emit(`end-${round}`)
        for (const g of await Promise.all(got)) assert.deepEqual(g, [`joined ${round}`], `round ${round}`)
      }
      // A disconnection asked before a broadcast: the broadcast does not reach the socket.
      const [gone, stays] = clients
      let late = 0
      gone.on('x', () => late++)
      const disconnected = once(gone, 'disconnect', 10_000)
      A.io.in(gone.id).disconnectSockets()
      A.io.to('base').emit('x', 'after')
      A.io.to('base').emit('end-d')
      await Promise.all([disconnected, once(stays, 'end-d', 10_000)])
      assert.equal(late, 0)
    })
  })

  test("a socket that left a room and said so gets no broadcast of another node to that room after saying so", T, async () => {
    await withTwoNodes(async (A, B) => {
      B.io.on('connection', (socket) => {
        socket.on('leave', (ack) => {
          // A write queued before the leave: the leave must still reach the
          // core before the packet that follows it.
          socket.emit('before')
          socket.leave('x')
          socket.emit('left')
          ack()
        })
        socket.on('join', (ack) => {
          socket.join('x')
          ack()
        })
      })
      const client = await B.connect()
      B.socketOf(client).join('x')
      // An anchor keeps B listening to x's channel.
      const anchor = await B.connect()
      B.socketOf(anchor).join('x')
      await sleep(200)
      let flooding = true
      let sent = 0
      const flood = (async () => {
        while (flooding) {
          for (let i = 0; i < 50; i++) A.io.to('x').emit('x', sent++)
          await new Promise((r) => setImmediate(r))
        }
      })()
      let state = 'in'
      const late = []
      client.on('x', (n) => {
        if (state === 'left') late.push(n)
      })
      client.on('left', () => (state = 'left'))
      for (let i = 0; i < 100; i++) {
        await client.timeout(5000).emitWithAck('leave')
        state = 'in'
        await client.timeout(5000).emitWithAck('join')
      }
      flooding = false
      await flood
      assert.ok(sent > 1000, `flooded: ${sent}`)
      assert.deepEqual(late, [])
    })
  })

  test("JavaScript sees other nodes' broadcasts again where it must: onAnyOutgoing, rooms held as numbers", T, async () => {
    await withTwoNodes(async (A, B) => {
      const [a, b] = [await B.connect(), await B.connect()]
      const [sa, sb] = [B.socketOf(a), B.socketOf(b)]
      sa.join('far')
      sb.join('far')
      await sleep(200)
      const native = B.adapter().link.native
      // A socket with an onAnyOutgoing listener: socket.io writes to it, and its listener sees the broadcast.
      const seen = []
      sa.onAnyOutgoing((event, ...args) => seen.push([event, ...args]))
      let got = [a, b].map((c) => collect(c, 'x', 'end1'))
      let direct = native.directBroadcasts
      A.io.to('far').emit('x', 1)
      A.io.to('far').emit('end1')
      assert.deepEqual(await Promise.all(got), [[1], [1]])
      assert.deepEqual(seen, [['x', 1], ['end1']])
      assert.equal(native.directBroadcasts, direct)
      // Gone: the core delivers again.
      a.disconnect()
      await until('a gone', () => !B.io.of('/').sockets.has(sa.id))
      got = collect(b, 'x', 'end2')
      A.io.to('far').emit('x', 2)
      A.io.to('far').emit('end2')
      assert.deepEqual(await got, [2])
      assert.equal(native.directBroadcasts - direct, 2)
      // A room held as a number on B: reached from A's string, as with the official adapter.
      sb.join(7)
      await sleep(200)
      got = collect(b, 'x', 'end3')
      direct = native.directBroadcasts
      A.io.to('7').emit('x', 'seven')
      A.io.to('far').emit('end3')
      assert.deepEqual(await got, ['seven'])
      assert.equal(native.directBroadcasts, direct)
    })
  })
})
