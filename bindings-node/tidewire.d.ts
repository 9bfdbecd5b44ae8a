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
    | 'ERR_CLUSTER'
    | 'ERR_UNSUPPORTED'
}

export interface ServerOptions {
  host?: string
  port?: number
  pingInterval?: number
  pingTimeout?: number
  connectTimeout?: number
  maxPayload?: number
  /** socket.io's name of `maxPayload`. */
  maxHttpBufferSize?: number
  /** Where Socket.IO is served on an attached http.Server (default `/socket.io/`); the own listener serves `/socket.io/` only. */
  path?: string
  transports?: Array<'polling' | 'websocket'>
  cors?: { origin?: string[] }
  onError?: (err: unknown) => void
  /** Rate limits and connection caps; rates as `COUNT/UNIT[:BURST]` or `'off'`, caps 0 for none. */
  limits?: Limits
  /** As socket.io's: keep a dropped client's session and missed packets this long (ms, default 120000). */
  connectionStateRecovery?: { maxDisconnectionDuration?: number }
  /** Remove a dynamic namespace's children once empty (default false, as socket.io's). */
  cleanupEmptyChildNamespaces?: boolean
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
  handshakesTotal?: string
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

/** Event names and their listeners' signatures, as socket.io's `EventsMap`. */
export interface EventsMap {
  [event: string]: any
}

/** Any event, any arguments (socket.io's default). */
export interface DefaultEventsMap {
  [event: string]: (...args: any[]) => void
}

export type EventNames<Map extends EventsMap> = keyof Map & string
export type EventParams<Map extends EventsMap, Ev extends EventNames<Map>> = Parameters<Map[Ev]>
/** The arguments of an event whose last one is its ack callback, without it. */
type AckArgs<Map extends EventsMap, Ev extends EventNames<Map>> = EventParams<Map, Ev> extends [...infer Args, (...answer: any[]) => any] ? Args : EventParams<Map, Ev>
/** The first argument of the ack callback of an event. */
type AckAnswer<Map extends EventsMap, Ev extends EventNames<Map>> = EventParams<Map, Ev> extends [...any[], (first: infer A, ...rest: any[]) => any] ? A : any

/** socket.io's broadcast operator (its operations are on `Server` and `Namespace` too). */
export declare class BroadcastOperator<EmitEvents extends EventsMap = DefaultEventsMap, SocketData = any> {
  to(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  in(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  except(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  /** Skipped for the sockets whose queue is backed up. */
  readonly volatile: BroadcastOperator<EmitEvents, SocketData>
  /** This server's sockets only. */
  readonly local: BroadcastOperator<EmitEvents, SocketData>
  compress(yes: boolean): BroadcastOperator<EmitEvents, SocketData>
  /** How long a broadcast with an acknowledgement waits for every answer (ms); without it, socket.io's 1 ms. */
  timeout(ms: number): BroadcastOperator<EmitEvents, SocketData>
  /**
   * With an ack callback last, `(err, responses)`: each recipient's first answer argument; `err` is
   * socket.io's "operation has timed out" when one did not answer in time. Without: how many sockets of
   * this server it reached.
   */
  emit<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: [...AckArgs<EmitEvents, Ev>, (err: Error | null, responses: Array<AckAnswer<EmitEvents, Ev>>) => void]): true
  emit<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: EventParams<EmitEvents, Ev>): number
  /** Every recipient's first answer argument; rejects with "operation has timed out" (its `responses`: the answers that came). */
  emitWithAck<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: AckArgs<EmitEvents, Ev>): Promise<Array<AckAnswer<EmitEvents, Ev>>>
  socketsJoin(rooms: string | string[]): void
  socketsLeave(rooms: string | string[]): void
  disconnectSockets(close?: boolean): void
  /** This server's as their `Socket`, the other servers' as `RemoteSocket`; rejects with ERR_CLUSTER on a timeout. */
  fetchSockets(): Promise<Array<Socket<DefaultEventsMap, EmitEvents, DefaultEventsMap, SocketData> | RemoteSocket<EmitEvents, SocketData>>>
}

/** A socket of another server, as `fetchSockets` found it. */
export declare class RemoteSocket<EmitEvents extends EventsMap = DefaultEventsMap, SocketData = any> {
  readonly id: string
  readonly handshake: Handshake
  readonly rooms: Set<string>
  readonly data: SocketData
  emit<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: EventParams<EmitEvents, Ev>): boolean
  join(rooms: string | string[]): void
  leave(rooms: string | string[]): void
  disconnect(close?: boolean): this
}

/** A connected socket; typed as socket.io's `Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>`. */
export declare class Socket<
  ListenEvents extends EventsMap = DefaultEventsMap,
  EmitEvents extends EventsMap = ListenEvents,
  ServerSideEvents extends EventsMap = DefaultEventsMap,
  SocketData = any,
> {
  readonly id: string
  /** Its namespace, as in socket.io. */
  readonly nsp: Namespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData>
  readonly connected: boolean
  readonly user: string | null
  /** Whether the client got its previous session back. */
  readonly recovered: boolean
  readonly handshake: Handshake
  readonly rooms: Set<string>
  readonly broadcast: BroadcastOperator<EmitEvents, SocketData>
  /** The middleware's `data` (after a recovery: the middleware's if it gave some, else the session's); assignments are kept with the session. */
  data: SocketData
  /** socket.io's per-socket listeners: the client's events (an ack function last when it asked), `disconnecting` (rooms still readable) or `disconnect`. */
  on(event: 'disconnect' | 'disconnecting', fn: (reason: string) => unknown): this
  on<Ev extends EventNames<ListenEvents>>(event: Ev, fn: ListenEvents[Ev]): this
  addListener<Ev extends EventNames<ListenEvents>>(event: Ev, fn: ListenEvents[Ev]): this
  once<Ev extends EventNames<ListenEvents>>(event: Ev, fn: ListenEvents[Ev]): this
  off<Ev extends EventNames<ListenEvents>>(event: Ev, fn: ListenEvents[Ev]): this
  removeListener<Ev extends EventNames<ListenEvents>>(event: Ev, fn: ListenEvents[Ev]): this
  removeAllListeners(event?: EventNames<ListenEvents> | 'disconnect' | 'disconnecting'): this
  listeners(event: EventNames<ListenEvents> | 'disconnect' | 'disconnecting'): Array<(...args: any[]) => unknown>
  listenerCount(event: EventNames<ListenEvents> | 'disconnect' | 'disconnecting'): number
  onAny(fn: (event: string, ...args: any[]) => unknown): this
  prependAny(fn: (event: string, ...args: any[]) => unknown): this
  offAny(fn?: (event: string, ...args: any[]) => unknown): this
  listenersAny(): Array<(event: string, ...args: any[]) => unknown>
  join(rooms: string | string[]): this
  leave(room: string): this
  /** A function as the last argument is an ack callback (the client's answer's arguments). */
  emit<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: EventParams<EmitEvents, Ev>): this
  /** Resolves to the first argument of the client's answer, as in socket.io. */
  emitWithAck<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: AckArgs<EmitEvents, Ev>): Promise<AckAnswer<EmitEvents, Ev>>
  timeout(ms: number): {
    /** The last argument is `(err, ...answer) => void`: err is ERR_ACK_TIMEOUT / ERR_DISCONNECTED, or null. */
    emit<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: [...AckArgs<EmitEvents, Ev>, (err: TidewireError | null, ...answer: any[]) => void]): Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>
    emitWithAck<Ev extends EventNames<EmitEvents>>(event: Ev, ...args: AckArgs<EmitEvents, Ev>): Promise<AckAnswer<EmitEvents, Ev>>
  }
  to(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  in(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  except(rooms: string | string[]): BroadcastOperator<EmitEvents, SocketData>
  disconnect(close?: boolean): this
}

/** The namespace-level shortcut's handler: the socket first, then the event's arguments. */
type NamespaceHandler<ListenEvents extends EventsMap, Ev extends EventNames<ListenEvents>, S> = (socket: S, ...args: EventParams<ListenEvents, Ev>) => unknown

export declare class Namespace<
  ListenEvents extends EventsMap = DefaultEventsMap,
  EmitEvents extends EventsMap = ListenEvents,
  ServerSideEvents extends EventsMap = DefaultEventsMap,
  SocketData = any,
> extends BroadcastOperator<EmitEvents, SocketData> {
  readonly name: string
  readonly socketCount: number
  /** socket.io's `nsp.sockets`: this node's connected sockets by id. */
  readonly sockets: Map<string, Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>>
  /** socket.io's `nsp.adapter`, to read: this node's rooms (room -> ids) and sids (id -> rooms); its methods throw ERR_UNSUPPORTED. */
  readonly adapter: { readonly rooms: Map<string, Set<string>>; readonly sids: Map<string, Set<string>> }
  readonly broadcast: BroadcastOperator<EmitEvents, SocketData>
  use(fn: (handshake: Handshake) => Admission | Promise<Admission>): this
  on(event: 'connection' | 'connect', fn: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>) => unknown): this
  on(event: 'disconnect' | 'disconnecting', fn: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>, reason: string) => unknown): this
  on<Ev extends EventNames<ListenEvents>>(event: Ev, fn: NamespaceHandler<ListenEvents, Ev, Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>>): this
  limitEvent(event: string, limits: { maxBytes?: number; schema?: object }): this
  enablePresence(options?: { prefix?: string }): this
  presence(room: string): PresentUser[]
  serverCount(): Promise<number>
  /** socket.io's `serverSideEmit`: to this namespace on the other nodes; an ack callback last gathers their answers. */
  serverSideEmit<Ev extends EventNames<ServerSideEvents>>(event: Ev, ...args: EventParams<ServerSideEvents, Ev>): true
  serverSideEmit(event: string, ...args: [...any[], (err: Error | null, responses: any[]) => void]): true
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>
  /** Listens to another node's `serverSideEmit` (socket.io's `io.on(event)` for server-side events); an answer callback comes last when the sender waits. */
  onServerSideEmit<Ev extends EventNames<ServerSideEvents>>(event: Ev, fn: (...args: any[]) => unknown): this
}

/** The function form of a dynamic namespace: `next(null, true)` lets the client create `name`. */
export type NamespaceMatcher = (name: string, auth: Record<string, any>, next: (err: Error | null, allow: boolean) => void) => void

/** A dynamic namespace (`io.of(regex)` / `io.of(fn)`): its broadcasts reach every child. */
export declare class ParentNamespace<
  ListenEvents extends EventsMap = DefaultEventsMap,
  EmitEvents extends EventsMap = ListenEvents,
  ServerSideEvents extends EventsMap = DefaultEventsMap,
  SocketData = any,
> extends Namespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData> {
  /** The children that exist now. */
  readonly children: Set<Namespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData>>
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

/** Typed as socket.io's `Server<ListenEvents, EmitEvents, ServerSideEvents, SocketData>`. */
export declare class Server<
  ListenEvents extends EventsMap = DefaultEventsMap,
  EmitEvents extends EventsMap = ListenEvents,
  ServerSideEvents extends EventsMap = DefaultEventsMap,
  SocketData = any,
> extends BroadcastOperator<EmitEvents, SocketData> {
  constructor(options?: ServerOptions)
  /** socket.io's forms: on the app's http.Server or https.Server (other requests stay the app's), or on a new one listening on `port`. */
  constructor(srv: import('node:http').Server | import('node:https').Server | number, options?: ServerOptions)
  /** socket.io's `io.sockets`: the main namespace. */
  readonly sockets: Namespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData>
  /** Not here: reading it throws ERR_UNSUPPORTED (socket.io with tidewire/socket.io has an engine). */
  readonly engine: never
  /** The http.Server it is attached to, or null. */
  readonly httpServer: import('node:http').Server | import('node:https').Server | null
  /** socket.io's `attach`: serves at the `path` option of `srv` (a port: a new http.Server listening there). */
  attach(srv: import('node:http').Server | import('node:https').Server | number): this
  of(name: string, fn?: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>) => unknown): Namespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData>
  of(name: RegExp | NamespaceMatcher, fn?: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>) => unknown): ParentNamespace<ListenEvents, EmitEvents, ServerSideEvents, SocketData>
  use(fn: (handshake: Handshake) => Admission | Promise<Admission>): this
  on(event: 'connection' | 'connect', fn: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>) => unknown): this
  on(event: 'disconnect' | 'disconnecting', fn: (socket: Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>, reason: string) => unknown): this
  on<Ev extends EventNames<ListenEvents>>(event: Ev, fn: NamespaceHandler<ListenEvents, Ev, Socket<ListenEvents, EmitEvents, ServerSideEvents, SocketData>>): this
  /** Its own listener, at the `host` and `port` options. */
  listen(): Promise<{ host: string; port: number; url: string }>
  /** socket.io's `listen(port)` / `listen(httpServer)`: the same as `attach`. */
  listen(srv: import('node:http').Server | import('node:https').Server | number): this
  joinCluster(options: ClusterOptions): Promise<void>
  serverCount(): Promise<number>
  serverSideEmit<Ev extends EventNames<ServerSideEvents>>(event: Ev, ...args: EventParams<ServerSideEvents, Ev>): true
  serverSideEmit(event: string, ...args: [...any[], (err: Error | null, responses: any[]) => void]): true
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>
  onServerSideEmit<Ev extends EventNames<ServerSideEvents>>(event: Ev, fn: (...args: any[]) => unknown): this
  close(): Promise<void>
  drain(options?: { batchSize?: number; batchInterval?: number; ackDeadline?: number }): Promise<DrainReport>
}

export declare function encode(args: any[]): { json: string; attachments: Buffer[] }
export declare function decode(json: string, attachments: Buffer[]): any[]
