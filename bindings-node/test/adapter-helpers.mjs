// Shared by the adapter tests: a redis-server of the test's own on a free
// loopback port, and clusters of real socket.io 4.8 servers (each with a
// socket.io-client connected) whose adapters are Tidewire's or the official
// @socket.io/redis-adapter's, over node-redis v4 clients.
import { spawn } from 'node:child_process'
import { createServer as createHttpServer } from 'node:http'
import { createServer, connect as tcpConnect } from 'node:net'
import { createRequire } from 'node:module'
import { Server } from 'socket.io'
import { io as ioc } from 'socket.io-client'
import { createClient } from 'redis'
import * as official from '@socket.io/redis-adapter'

const require = createRequire(import.meta.url)
export const tidewire = require('../socket.io.js')

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

export async function until(what, pred, ms = 10_000) {
  const started = Date.now()
  for (;;) {
    if (await pred()) return
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

function reachable(port) {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1', () => {
      s.end()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** A redis-server on a free loopback port, stopped by `stop()`. */
export async function startRedis(args = [], port = undefined) {
  port = port || (await freePort())
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], {
    stdio: 'ignore',
  })
  await until('redis-server', () => reachable(port))
  return { port, url: `redis://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') }
}

/** Resolves with the first call of `emitter.once(event)`'s arguments, or fails after `ms`. */
export function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms)
    emitter.once(event, (...args) => {
      clearTimeout(t)
      resolve(args)
    })
  })
}

/**
 * Clients of socket.io server `io` at `url` (over WebSocket unless told),
 * connected with `connect`, closed with the server by `close`.
 */
export function socketIoClients(io, server, url) {
  const clients = []
  return {
    async connect(opts = {}) {
      const client = ioc(url, { reconnection: false, forceNew: true, transports: ['websocket'], ...opts })
      clients.push(client)
      await once(client, 'connect')
      return client
    },
    /** The server-side socket of `client`. */
    socketOf(client) {
      return io.of('/').sockets.get(client.id)
    },
    async close() {
      for (const c of clients) c.close()
      await io.close()
      server.closeAllConnections()
    },
  }
}

/** Counts calls; `done` resolves at `n` and fails on more. */
export function times(n) {
  let count = 0
  let resolve
  let reject
  const done = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  const fn = () => {
    count++
    if (count === n) resolve()
    else if (count > n) reject(new Error(`too many calls: ${count} instead of ${n}`))
  }
  fn.done = done
  return fn
}

/**
 * `kinds[i]` is `tidewire`, `official`, `tidewire-sharded` or
 * `official-sharded`, or a function `(redisUrl, clients) => adapter`.
 * Returns servers, their server-side sockets and the clients (one each).
 */
export async function setupCluster(redis, kinds, { serverOpts = {}, adapterOpts = {} } = {}) {
  const servers = []
  const serverSockets = []
  const clientSockets = []
  const redisClients = []
  const https = []
  for (const kind of kinds) {
    const pub = createClient({ url: redis.url })
    const sub = pub.duplicate()
    pub.on('error', () => {})
    sub.on('error', () => {})
    await Promise.all([pub.connect(), sub.connect()])
    redisClients.push(pub, sub)
    const adapter =
      typeof kind === 'function'
        ? kind(pub, sub)
        : kind === 'tidewire'
          ? tidewire.createAdapter(pub, sub, adapterOpts)
          : kind === 'official'
            ? official.createAdapter(pub, sub, adapterOpts)
            : kind === 'tidewire-sharded'
              ? tidewire.createShardedAdapter(pub, sub, adapterOpts)
              : official.createShardedAdapter(pub, sub, adapterOpts)
    const http = createHttpServer()
    https.push(http)
    const io = new Server(http, { adapter, ...serverOpts })
    servers.push(io)
    await new Promise((r) => http.listen(0, '127.0.0.1', r))
    const connected = once(io, 'connection')
    const client = ioc(`http://127.0.0.1:${http.address().port}`, { transports: ['websocket'] })
    clientSockets.push(client)
    const [socket] = await connected
    serverSockets.push(socket)
  }
  // Everything subscribed (what the official suite waits for too).
  await sleep(200)
  return {
    servers,
    serverSockets,
    clientSockets,
    async cleanup() {
      for (const c of clientSockets) c.disconnect()
      // Every node gone from Redis before the next test's nodes count theirs.
      await Promise.all(servers.map((io) => io.close()))
      for (const c of redisClients) await c.quit().catch(() => {})
    },
  }
}
