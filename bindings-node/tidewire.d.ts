// Types of the `tidewire` package's public API (tidewire.js).

/** Errors thrown or rejected by tidewire carry a `code`. */
export interface TidewireError extends Error {
  code:
    | 'ERR_INVALID_ARG'
    | 'ERR_SERVER_CLOSED'
    | 'ERR_LISTEN'
    | 'ERR_SEND'
    | 'ERR_ACK_SENT'
    | 'ERR_ACK_TIMEOUT'
    | 'ERR_DISCONNECTED'
    | 'ERR_TOO_MANY_ROOMS'
}

export interface ServerOptions {
  host?: string
  port?: number
  pingInterval?: number
  pingTimeout?: number
  connectTimeout?: number
  maxPayload?: number
  cors?: { origin?: string[] }
  onError?: (err: unknown) => void
  /** Rate limits and connection caps; rates as `COUNT/UNIT[:BURST]` or `'off'`, caps 0 for none. */
  limits?: Limits
  /** As socket.io's: keep a dropped client's session and missed packets this long (ms, default 120000). */
  connectionStateRecovery?: { maxDisconnectionDuration?: number }
}

export interface Limits {
  rateSocket?: string
  rateUser?: string
  rateIp?: string
  events?: Record<string, string>
  maxViolations?: number
  maxConnPerIp?: number
  maxConnPerUser?: number
  maxConnections?: number
  handshakesPerIp?: string
  trustedProxies?: number
}

export interface PresentUser {
  userId: string
  connections: { id: string; node: string; meta: any }[]
}

export interface DrainReport {
  connections: number
  batches: number
  acksAbandoned: number
}

export interface Handshake {
  headers: Record<string, string>
  query: Record<string, string>
  auth: any
  address: string
  time: string
  issued: number
  url: string
  secure: boolean
  xdomain: boolean
}

export type Admission = { user?: string; data?: any; presence?: Record<string, any> } | void

/** The operations of socket.io's broadcast operator (also on `Server` and `Namespace`). */
interface Broadcasting {
  to(rooms: string | string[]): BroadcastOperator
  in(rooms: string | string[]): BroadcastOperator
  except(rooms: string | string[]): BroadcastOperator
  readonly volatile: BroadcastOperator
  readonly local: BroadcastOperator
  compress(yes: boolean): BroadcastOperator
  /** Returns how many sockets of this server it reached. */
  emit(event: string, ...args: any[]): number
  socketsJoin(rooms: string | string[]): void
  socketsLeave(rooms: string | string[]): void
  disconnectSockets(close?: boolean): void
  /** This server's as their `Socket`, the other servers' as `RemoteSocket`; rejects with ERR_CLUSTER on a timeout. */
  fetchSockets(): Promise<Array<Socket | RemoteSocket>>
}

export declare class BroadcastOperator implements Broadcasting {
  to(rooms: string | string[]): BroadcastOperator
  in(rooms: string | string[]): BroadcastOperator
  except(rooms: string | string[]): BroadcastOperator
  readonly volatile: BroadcastOperator
  readonly local: BroadcastOperator
  compress(yes: boolean): BroadcastOperator
  emit(event: string, ...args: any[]): number
  socketsJoin(rooms: string | string[]): void
  socketsLeave(rooms: string | string[]): void
  disconnectSockets(close?: boolean): void
  fetchSockets(): Promise<Array<Socket | RemoteSocket>>
}

/** A socket of another server, as `fetchSockets` found it. */
export declare class RemoteSocket {
  readonly id: string
  readonly handshake: Handshake
  readonly rooms: Set<string>
  readonly data: any
  emit(event: string, ...args: any[]): boolean
  join(rooms: string | string[]): void
  leave(rooms: string | string[]): void
  disconnect(close?: boolean): this
}

export declare class Socket {
  readonly id: string
  readonly nsp: string
  readonly connected: boolean
  readonly user: string | null
  /** Whether the client got its previous session back. */
  readonly recovered: boolean
  readonly handshake: Handshake
  readonly rooms: Set<string>
  readonly broadcast: BroadcastOperator
  /** The middleware's `data` (after a recovery: the middleware's if it gave some, else the session's); assignments are kept with the session. */
  data: any
  /** socket.io's per-socket listeners: the client's events (an ack function last when it asked), or `disconnect`. */
  on(event: 'disconnect', fn: (reason: string) => unknown): this
  on(event: string, fn: (...args: any[]) => unknown): this
  addListener(event: string, fn: (...args: any[]) => unknown): this
  once(event: string, fn: (...args: any[]) => unknown): this
  off(event: string, fn: (...args: any[]) => unknown): this
  removeListener(event: string, fn: (...args: any[]) => unknown): this
  removeAllListeners(event?: string): this
  listeners(event: string): Array<(...args: any[]) => unknown>
  listenerCount(event: string): number
  onAny(fn: (event: string, ...args: any[]) => unknown): this
  prependAny(fn: (event: string, ...args: any[]) => unknown): this
  offAny(fn?: (event: string, ...args: any[]) => unknown): this
  listenersAny(): Array<(event: string, ...args: any[]) => unknown>
  join(rooms: string | string[]): this
  leave(room: string): this
  /** A function as the last argument is an ack callback (the client's answer's arguments). */
  emit(event: string, ...args: any[]): this
  /** Resolves to the first argument of the client's answer, as in socket.io. */
  emitWithAck(event: string, ...args: any[]): Promise<any>
  timeout(ms: number): {
    /** The last argument is `(err, ...answer) => void`: err is ERR_ACK_TIMEOUT / ERR_DISCONNECTED, or null. */
    emit(event: string, ...args: any[]): Socket
    emitWithAck(event: string, ...args: any[]): Promise<any>
  }
  to(rooms: string | string[]): BroadcastOperator
  in(rooms: string | string[]): BroadcastOperator
  except(rooms: string | string[]): BroadcastOperator
  disconnect(close?: boolean): this
}

export declare class Namespace {
  readonly name: string
  readonly socketCount: number
  readonly broadcast: BroadcastOperator
  use(fn: (handshake: Handshake) => Admission | Promise<Admission>): this
  on(event: 'connection' | 'connect', fn: (socket: Socket) => unknown): this
  on(event: 'disconnect', fn: (socket: Socket, reason: string) => unknown): this
  on(event: string, fn: (socket: Socket, ...args: any[]) => unknown): this
  to(rooms: string | string[]): BroadcastOperator
  in(rooms: string | string[]): BroadcastOperator
  except(rooms: string | string[]): BroadcastOperator
  readonly volatile: BroadcastOperator
  readonly local: BroadcastOperator
  compress(yes: boolean): BroadcastOperator
  emit(event: string, ...args: any[]): number
  socketsJoin(rooms: string | string[]): void
  socketsLeave(rooms: string | string[]): void
  disconnectSockets(close?: boolean): void
  fetchSockets(): Promise<Array<Socket | RemoteSocket>>
  limitEvent(event: string, limits: { maxBytes?: number; schema?: object }): this
  enablePresence(options?: { prefix?: string }): this
  presence(room: string): PresentUser[]
  serverCount(): Promise<number>
}

export interface ClusterOptions {
  /** `redis://host:port/db`; with `redisCluster`, seed nodes separated by commas. */
  redisUrl: string
  /** Channel prefix (default `socket.io`, the official adapter's `key`). */
  prefix?: string
  /** Milliseconds requests to the other nodes wait (default 5000). */
  requestTimeout?: number
  /** `redisUrl` names nodes of a Redis Cluster. */
  redisCluster?: boolean
}

export declare class Server {
  constructor(options?: ServerOptions)
  of(name: string): Namespace
  use(fn: (handshake: Handshake) => Admission | Promise<Admission>): this
  on(event: 'connection' | 'connect', fn: (socket: Socket) => unknown): this
  on(event: 'disconnect', fn: (socket: Socket, reason: string) => unknown): this
  on(event: string, fn: (socket: Socket, ...args: any[]) => unknown): this
  to(rooms: string | string[]): BroadcastOperator
  in(rooms: string | string[]): BroadcastOperator
  except(rooms: string | string[]): BroadcastOperator
  readonly volatile: BroadcastOperator
  readonly local: BroadcastOperator
  compress(yes: boolean): BroadcastOperator
  emit(event: string, ...args: any[]): number
  socketsJoin(rooms: string | string[]): void
  socketsLeave(rooms: string | string[]): void
  disconnectSockets(close?: boolean): void
  fetchSockets(): Promise<Array<Socket | RemoteSocket>>
  listen(): Promise<{ host: string; port: number; url: string }>
  joinCluster(options: ClusterOptions): Promise<void>
  serverCount(): Promise<number>
  close(): Promise<void>
  drain(options?: { batchSize?: number; batchInterval?: number; ackDeadline?: number }): Promise<DrainReport>
}

export declare function encode(args: any[]): { json: string; attachments: Buffer[] }
export declare function decode(json: string, attachments: Buffer[]): any[]
