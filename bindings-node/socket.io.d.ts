// Types of `tidewire/socket.io`: Tidewire's internals for an unchanged
// socket.io app (socket.io.js, js/engine.js).

import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse, Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'

/** engine.io's error codes, as `connection_error` reports them. */
export interface EngineErrors {
  UNKNOWN_TRANSPORT: 0
  UNKNOWN_SID: 1
  BAD_HANDSHAKE_METHOD: 2
  BAD_REQUEST: 3
  FORBIDDEN: 4
  UNSUPPORTED_PROTOCOL_VERSION: 5
}

/**
 * engine.io's server options that the core honours. Any other option, or
 * a value the core cannot honour, throws at construction (code
 * `ERR_INVALID_ARG`) with a message naming it.
 */
export interface EngineOptions {
  /** ms between the server's pings (default 25000). */
  pingInterval?: number
  /** ms the server waits for a pong (default 20000). */
  pingTimeout?: number
  /** ms a WebSocket upgrade may take (default 10000). */
  upgradeTimeout?: number
  /** The largest polling body or WebSocket message, in bytes (default 1e6). */
  maxHttpBufferSize?: number
  /** The transports offered (default both). `webtransport` is not supported. */
  transports?: Array<'polling' | 'websocket'>
  /** Whether polling sessions may upgrade to WebSocket (default true). */
  allowUpgrades?: boolean
  /** Decides on each handshake, as engine.io's: `callback(errorMessage, success)`. */
  allowRequest?: (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void) => void
  /** The options of npm `cors`, applied to every polling request (as engine.io does). */
  cors?: object | boolean
  /** The `io` cookie on the polling handshake: `true` or npm `cookie`'s serialize options plus `name`. */
  cookie?: boolean | ({ name?: string } & Record<string, unknown>)
  /** The default path for `attach` (default `/engine.io`). */
  path?: string
  /** Whether `path` gets a trailing slash (default true). */
  addTrailingSlash?: boolean
  /**
   * Tidewire's connection caps (engine.io has none): concurrent connections
   * per IP address (default 1000) and in total (100,000), new connections per
   * address (`"50/s:100"`, or `"off"`), and how many reverse proxies append to
   * `X-Forwarded-For` (0: the peer's address counts). A cap of 0 is no cap.
   */
  limits?: { maxConnPerIp?: number; maxConnections?: number; handshakesPerIp?: string; handshakesTotal?: string; trustedProxies?: number }
  /**
   * Tidewire's: hand each WebSocket connection on a plain `http.Server` over
   * to the core (its file descriptor, duplicated), which then reads and
   * writes its frames itself (default true). `false` keeps every WebSocket
   * on npm `ws`, as over `https.Server`.
   */
  handOff?: boolean
  /** Only `false`: WebSocket compression is off. */
  perMessageDeflate?: false
  /** Only `false`: polling answers are not compressed. */
  httpCompression?: false
  /** Only `false`: Engine.IO v4 clients only. */
  allowEIO3?: false
}

/** Options of `attach`. */
export interface AttachOptions {
  /** Where the engine answers (default the `path` option, else `/engine.io`). */
  path?: string
  addTrailingSlash?: boolean
  /** Closes upgrades at other paths that nobody answered (default true, as engine.io). */
  destroyUpgrade?: boolean
  /** ms before such an upgrade is closed (default 1000). */
  destroyUpgradeTimeout?: number
}

/** A request the engine refused, as engine.io reports it. */
export interface ConnectionError {
  req: IncomingMessage
  /** engine.io's numeric code, or the core's refusal code (e.g. `too_many_connections`). */
  code: number | string
  message: string
  context: Record<string, unknown>
}

/** The current transport of a session. */
export interface EngineTransport {
  readonly name: 'polling' | 'websocket'
  readonly writable: boolean
  readonly sid: string
}

/** One Engine.IO session: what socket.io's `Client` and apps use of engine.io's `Socket`. */
export declare class EngineSocket extends EventEmitter {
  readonly id: string
  readonly server: Engine
  /** The request that opened the session (its `_query` set as engine.io sets it). */
  readonly request: IncomingMessage
  readonly protocol: 4
  readonly remoteAddress: string | undefined
  readonly upgrading: boolean
  readonly upgraded: boolean
  /** Tidewire's: whether its WebSocket is carried by the core itself (handed over), not by npm `ws`. */
  readonly handedOff: boolean
  readonly transport: EngineTransport
  readonly readyState: 'open' | 'closing' | 'closed'
  /** Queues a message; `opts.volatile` drops it when the client lags; `callback` runs once it is queued. */
  write(data: string | Buffer | ArrayBuffer | ArrayBufferView, opts?: { volatile?: boolean; compress?: boolean }, callback?: () => void): this
  send(data: string | Buffer | ArrayBuffer | ArrayBufferView, opts?: { volatile?: boolean; compress?: boolean }, callback?: () => void): this
  /** Closes the session once what is queued is written (`close` follows with `forced close`). */
  close(): void
  on(event: 'data' | 'message', listener: (data: string | Buffer) => void): this
  on(event: 'packet', listener: (packet: { type: 'message'; data: string | Buffer }) => void): this
  on(event: 'close', listener: (reason: string, description?: unknown) => void): this
  on(event: 'upgrading' | 'upgrade', listener: (transport: EngineTransport) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  /** `heartbeat`, `packetCreate`, `flush` and `drain` throw: the core does that work. */
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * An engine.io-compatible server on Tidewire's core, for socket.io's
 * `io.bind(engine)`:
 *
 * ```js
 * const engine = new Engine({ pingInterval: 10000 })
 * engine.attach(httpServer, { path: '/socket.io/' })
 * io.bind(engine)
 * ```
 *
 * The core generates session ids: `generateId` cannot be replaced.
 */
export declare class Engine extends EventEmitter {
  constructor(opts?: EngineOptions)
  static readonly errors: EngineErrors
  static readonly errorMessages: Readonly<Record<number, string>>
  readonly opts: Readonly<EngineOptions>
  readonly clients: Record<string, EngineSocket>
  readonly clientsCount: number
  /** Adds an Express-style middleware run on every request at the path (and on upgrades). */
  use(middleware: (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void): void
  /** Takes the requests and upgrades at the path; every other request stays the app's. */
  attach(server: HttpServer | HttpsServer, options?: AttachOptions): void
  handleRequest(req: IncomingMessage, res: ServerResponse): void
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Closes every session. */
  close(): this
  on(event: 'connection', listener: (socket: EngineSocket) => void): this
  on(event: 'initial_headers' | 'headers', listener: (headers: Record<string, string | string[]>, req: IncomingMessage) => void): this
  on(event: 'connection_error', listener: (err: ConnectionError) => void): this
  /** `flush` and `drain` throw: the core writes the queues. */
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * What `createAdapter` / `createShardedAdapter` return: the adapter factory
 * socket.io takes (`new Server(httpServer, { adapter })`), building one
 * socket.io-adapter `Adapter` per namespace.
 */
export type AdapterConstructor = (nsp: any) => import('socket.io-adapter').Adapter

/**
 * A node-redis (v4, v5) or ioredis client, single server or cluster. Only
 * its connection settings are read (url, host, port, username, password,
 * db/database, tls); Tidewire's bus opens its own connections with them.
 */
export type RedisClientLike = object

/** Where Tidewire's bus connects, for `createAdapter({ url, ... })`. */
export interface RedisConnection {
  /** `redis://` or `rediss://` URL (seed URLs separated by commas with `redisCluster`). */
  url?: string
  host?: string
  port?: number
  username?: string
  password?: string
  db?: number
  /** `true` (or `{ servername }`): TLS with the system's root certificates. */
  tls?: boolean | { servername?: string }
  /** The URL lists seed nodes of a Redis Cluster. */
  redisCluster?: boolean
}

/**
 * `@socket.io/redis-adapter` 8.3's `createAdapter` options. Any other option
 * throws (`code` `ERR_UNSUPPORTED`).
 */
export interface RedisAdapterOptions {
  /** The channel prefix (default `socket.io`). */
  key?: string
  /** ms a request (fetchSockets, serverSideEmit with acks, allRooms) waits for the other nodes (default 5000). */
  requestsTimeout?: number
  /** Answers on the requester's own channel (default false; the same on every node). */
  publishOnSpecificResponseChannel?: boolean
  /** Only notepack.io (the default): the core encodes as notepack.io does; another parser throws. */
  parser?: { encode(msg: any): any; decode(msg: any): any }
}

/** `@socket.io/redis-adapter` 8.3's `createShardedAdapter` options (heartbeat options throw). */
export interface ShardedRedisAdapterOptions {
  /** The channel prefix (default `socket.io`). */
  channelPrefix?: string
  /** `static`, `dynamic` (default) or `dynamic-private`. */
  subscriptionMode?: 'static' | 'dynamic' | 'dynamic-private'
}

/**
 * A socket.io adapter: with no argument this node only (socket.io-adapter's
 * in-memory rooms; session-aware under `connectionStateRecovery`); with
 * Redis clients (or `{ url, ... }`) a cluster through Tidewire's Redis bus,
 * wire-compatible with `@socket.io/redis-adapter` 8.x nodes (classic).
 * Errors carry `code` (`ERR_INVALID_ARG`, `ERR_UNSUPPORTED`).
 */
export declare function createAdapter(): AdapterConstructor
export declare function createAdapter(
  pubClient: RedisClientLike,
  subClient: RedisClientLike,
  opts?: RedisAdapterOptions,
): AdapterConstructor
export declare function createAdapter(opts: RedisConnection & RedisAdapterOptions): AdapterConstructor

/** `@socket.io/redis-adapter`'s sharded adapter (Redis 7 sharded pub/sub), the same way. */
export declare function createShardedAdapter(
  pubClient: RedisClientLike,
  subClient: RedisClientLike,
  opts?: ShardedRedisAdapterOptions,
): AdapterConstructor
export declare function createShardedAdapter(opts: RedisConnection & ShardedRedisAdapterOptions): AdapterConstructor
