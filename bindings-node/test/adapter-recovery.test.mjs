// Connection state recovery across nodes with Tidewire's createAdapter:
// a client handed from node to node while every node broadcasts to its
// room without pause gets every broadcast exactly once, in order per
// sender (nothing falls between the node it left and the one it came
// back to, nothing comes twice).
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import { Server } from 'socket.io'
import { io as ioc } from 'socket.io-client'
import { tidewire, startRedis, once, sleep, until } from './adapter-helpers.mjs'

const { createAdapter, createShardedAdapter } = tidewire

async function serve(io) {
  const http = createHttpServer()
  io.attach(http)
  await new Promise((r) => http.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${http.address().port}`
}

for (const [name, make] of [
  ['createAdapter', (url) => createAdapter({ url })],
  ['createShardedAdapter', (url) => createShardedAdapter({ url })],
]) {
  describe(`recovery across nodes under continuous broadcasts (${name})`, () => {
    let redis
    before(async () => {
      redis = await startRedis()
    })
    after(() => redis.stop())

    test('every broadcast arrives exactly once across 9 hand-offs', { timeout: 60_000 }, async () => {
      const servers = [0, 1, 2].map(() => new Server({ adapter: make(redis.url), connectionStateRecovery: {} }))
      const urls = []
      for (const io of servers) urls.push(await serve(io))
      await sleep(300)
      const client = ioc(urls[0], { transports: ['websocket'], reconnectionDelay: 20, reconnectionDelayMax: 50 })
      await once(client, 'connect')
      const [socket] = [...servers[0].of('/').sockets.values()]
      socket.join('room')
      await sleep(200)

      const got = []
      client.on('n', (origin, seq) => got.push([origin, seq]))
      // Every node broadcasts to the room, one message per 2 ms each.
      const sent = [0, 0, 0]
      const timers = servers.map((io, origin) =>
        setInterval(() => {
          io.to('room').emit('n', origin, sent[origin]++)
        }, 2),
      )

      const recovered = []
      for (let round = 1; round <= 9; round++) {
        await sleep(150)
        const gone = once(client, 'disconnect')
        client.io.uri = urls[round % 3]
        client.io.engine.close()
        await gone
        await once(client, 'connect', 10_000)
        recovered.push(client.recovered)
      }
      await sleep(150)
      timers.forEach(clearInterval)
      // Everything sent has arrived (or never will).
      let last = -1
      await until('the last broadcasts', () => {
        const done = got.length === last
        last = got.length
        return done
      })

      assert.deepEqual(recovered, Array(9).fill(true), 'every hand-off recovered')
      for (let origin = 0; origin < 3; origin++) {
        const seqs = got.filter(([o]) => o === origin).map(([, s]) => s)
        const missing = []
        for (let i = 0; i < sent[origin]; i++) if (!seqs.includes(i)) missing.push(i)
        assert.deepEqual(missing, [], `node ${origin}: none missing (of ${sent[origin]})`)
        assert.deepEqual(seqs, [...Array(sent[origin]).keys()], `node ${origin}: each once, in order`)
      }
      client.disconnect()
      await Promise.all(servers.map((io) => io.close()))
    })
  })
}
