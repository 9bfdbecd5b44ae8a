'use strict'
// The connection settings of the Redis clients an app hands to
// `createAdapter(pubClient, subClient)` (node-redis v4 / v5 or ioredis, a
// single server or a cluster), or of a `{ url, ... }` object, as the URL
// the core's RedisBus connects to. The clients themselves carry no
// traffic: Tidewire's bus opens its own connections with their settings.

function unsupported(message) {
  const e = new Error(`tidewire createAdapter: ${message}`)
  e.code = 'ERR_UNSUPPORTED'
  return e
}

function invalid(message) {
  const e = new TypeError(`tidewire createAdapter: ${message}`)
  e.code = 'ERR_INVALID_ARG'
  return e
}

/** Whether `v` is a Redis client (node-redis or ioredis), not options. */
function isRedisClient(v) {
  return (
    v !== null &&
    typeof v === 'object' &&
    (typeof v.sendCommand === 'function' || typeof v.duplicate === 'function' || typeof v.publish === 'function')
  )
}

/** TLS settings the bus can honour: on, with the system's roots. */
function checkTls(tls, where) {
  if (tls === undefined || tls === null || tls === false) return false
  if (tls === true) return true
  if (typeof tls === 'object') {
    const keys = Object.keys(tls).filter((k) => tls[k] !== undefined)
    const known = new Set(['servername', 'rejectUnauthorized'])
    const other = keys.filter((k) => !known.has(k))
    if (other.length) throw unsupported(`${where}: TLS option(s) ${other.join(', ')} (custom certificates) are not supported; Tidewire's Redis connection trusts the system's root certificates`)
    if (tls.rejectUnauthorized === false) throw unsupported(`${where}: tls.rejectUnauthorized = false is not supported`)
    return true
  }
  throw invalid(`${where}: tls must be a boolean or an object`)
}

/** A Redis URL from its parts. */
function urlOf({ host, port, username, password, db, tls }) {
  const auth =
    password !== undefined && password !== null && password !== ''
      ? `${username ? encodeURIComponent(username) : ''}:${encodeURIComponent(password)}@`
      : username
        ? `${encodeURIComponent(username)}@`
        : ''
  const h = host && host.includes(':') && !host.startsWith('[') ? `[${host}]` : host || '127.0.0.1'
  const path = db ? `/${Number(db)}` : ''
  return `${tls ? 'rediss' : 'redis'}://${auth}${h}:${port || 6379}${path}`
}

/** Merges what a URL lacks from separate credentials (node-redis allows both). */
function withCredentials(url, { username, password, db }) {
  const u = new URL(url)
  if (!['redis:', 'rediss:'].includes(u.protocol)) throw unsupported(`the Redis URL scheme ${u.protocol} is not supported (redis: or rediss:)`)
  if (username && !u.username) u.username = encodeURIComponent(username)
  if (password && !u.password) u.password = encodeURIComponent(password)
  if (db && (u.pathname === '' || u.pathname === '/')) u.pathname = `/${Number(db)}`
  return u.toString()
}

/** node-redis (v4, v5): `{ url, socket: { host, port, tls, path }, username, password, database }`. */
function nodeRedisUrl(o, where) {
  const socket = o.socket || {}
  if (socket.path) throw unsupported(`${where}: Unix socket connections (socket.path) are not supported`)
  const tls = checkTls(socket.tls, where)
  if (o.url) return withCredentials(o.url, { username: o.username, password: o.password, db: o.database })
  return urlOf({ host: socket.host, port: socket.port, username: o.username, password: o.password, db: o.database, tls })
}

/** ioredis: `{ host, port, username, password, db, tls, path }`. */
function ioredisUrl(o, where) {
  if (o.path) throw unsupported(`${where}: Unix socket connections (path) are not supported`)
  return urlOf({ host: o.host, port: o.port, username: o.username, password: o.password, db: o.db, tls: checkTls(o.tls, where) })
}

/**
 * The connection of a Redis client: `{ url, redisCluster }` (`url` lists the
 * seed nodes separated by commas for a cluster).
 */
function clientSettings(client, where) {
  if (client.isCluster === true) {
    // ioredis Cluster: startup nodes plus shared redisOptions.
    const shared = (client.options && client.options.redisOptions) || {}
    const urls = (client.startupNodes || []).map((n) =>
      typeof n === 'string' ? withCredentials(n.includes('://') ? n : `redis://${n}`, shared) : ioredisUrl({ ...shared, ...n }, where),
    )
    if (!urls.length) throw invalid(`${where}: the cluster client has no startup nodes`)
    return { url: urls.join(','), redisCluster: true }
  }
  const o = client.options
  if (!o || typeof o !== 'object') throw invalid(`${where}: cannot read the connection settings of this Redis client`)
  if (Array.isArray(o.rootNodes)) {
    // node-redis cluster: root nodes plus shared defaults.
    const defaults = o.defaults || {}
    const urls = o.rootNodes.map((n) => nodeRedisUrl({ ...defaults, ...n, socket: { ...(defaults.socket || {}), ...(n.socket || {}) } }, where))
    if (!urls.length) throw invalid(`${where}: the cluster client has no root nodes`)
    return { url: urls.join(','), redisCluster: true }
  }
  // ioredis has a `status` string; node-redis has none.
  if (typeof client.status === 'string') return { url: ioredisUrl(o, where), redisCluster: false }
  return { url: nodeRedisUrl(o, where), redisCluster: false }
}

/** The connection keys of `createAdapter({ url, ... })`. */
const CONNECTION_KEYS = ['url', 'host', 'port', 'username', 'password', 'db', 'tls', 'redisCluster']

/** The connection of `createAdapter({ url, ... })`'s object. */
function objectSettings(o) {
  if (o.url !== undefined && typeof o.url !== 'string') throw invalid('url must be a string')
  const redisCluster = !!o.redisCluster
  if (o.url) {
    const urls = o.url.split(',').map((u) => withCredentials(u.trim(), o))
    checkTls(o.tls, 'options')
    return { url: urls.join(','), redisCluster }
  }
  return { url: urlOf({ ...o, tls: checkTls(o.tls, 'options') }), redisCluster }
}

module.exports = { isRedisClient, clientSettings, objectSettings, CONNECTION_KEYS, unsupported, invalid }
