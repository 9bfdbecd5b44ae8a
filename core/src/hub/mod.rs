//! The Socket.IO layer: namespaces, sockets, events and acknowledgements.
//!
//! A [`Hub`] is the entry point (socket.io's `Server`). It owns
//! [`Namespace`]s; a client connects to one or more namespaces over a
//! single Engine.IO session, and gets one [`Socket`] per namespace. Each
//! namespace has connect middlewares, connect and disconnect handlers, and
//! event handlers by name (plus a catch-all), all trait objects (see
//! [`handler`]) so that bindings can implement them.
//!
//! # Example
//! ```
//! use tidewire::hub::{Event, Hub, Socket};
//!
//! let hub = Hub::default();
//! hub.of("/").on("echo", |_socket: Socket, mut event: Event| async move {
//!     let args = std::mem::take(&mut event.args);
//!     let _ = event.reply(args);
//! });
//! assert!(hub.namespace("/").is_some(), "the main namespace always exists");
//! assert!(hub.namespace("/other").is_none());
//! ```
//!
//! # Ordering
//! Handlers start in the order their packets arrived: each handler runs
//! up to its first `.await` before the next packet is read, as in Node.
//! What follows an `.await` runs concurrently on the tokio runtime.
//!
//! # Arguments and results
//! Every emit and every ack answer takes `impl` [`IntoPayload`]: `()` for
//! no argument, a tuple for several, any other `Serialize` value for one,
//! or a [`Payload`] as is (see [`crate::protocol::args`]). Handlers read
//! theirs with [`Event::arg`] and [`Event::args_as`], which fail with an
//! [`ArgError`] rather than panic on what a client may send.
//!
//! What an emit returns says what it reached: sending to one socket
//! ([`Socket::emit`], [`RemoteSocket::emit`], [`AckResponder::send`],
//! [`Event::reply`]) returns `Result<(), EmitError>`; a broadcast
//! ([`BroadcastOperator::emit`], [`Namespace::emit`], [`Hub::emit`])
//! returns how many sockets of this node it was queued for (other nodes
//! are not counted; arguments that cannot be serialized are logged and
//! reach nobody).
//!
//! # Panics in handlers
//! A handler that panics is caught: the panic is logged with the event's
//! name, the event's ack (if the handler still held it) is answered with
//! `{status: "error", code: "internal_error", message}`, and the
//! connection and the server carry on.

pub(crate) mod adapter;
mod broadcast;
mod client;
pub mod drain;
pub mod handler;
mod handshake;
mod namespace;
pub(crate) mod presence;
mod socket;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::engine::{Engine, EngineConfig, EngineHandler};
use crate::limits::{ConnectionCounter, ConnectionLimits, RateLimiter, RateLimits};
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::{Limits, Packet, Payload};
use crate::recovery::RecoveryConfig;

pub use adapter::{ClusterError, Gathered, Replies, ServerAck, ServerEventHandler};
pub use broadcast::{BroadcastError, BroadcastFlags, BroadcastOperator, RemoteSocket};
pub use drain::{DRAIN_NOTICE, DrainOptions, DrainReport};
pub use handler::{Admission, BoxFuture, ConnectError, EventRejection, RoomGuard};
pub use handshake::{Fields, Handshake};
pub(crate) use namespace::lock;
pub use namespace::{Namespace, TooManyRooms};
pub use presence::{PresenceCount, PresenceListener, PresenceOptions};
pub use socket::{AckError, AckResponder, CUT_ACK_DEADLINE, DISCONNECT_NOTICE, EmitError, Socket, SocketWithTimeout};

pub use crate::protocol::args::{ArgError, EncodeError, FromArgs, IntoPayload};

pub use crate::ack::AckReport;
pub use crate::rooms::Room;

/// A change of a namespace's rooms, as [`handler::RoomListener`]s see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// The room got its first member on this node.
    Created(Room),
    /// The room lost its last member on this node.
    Deleted(Room),
    /// `socket` joined `room`.
    Joined {
        /// The room.
        room: Room,
        /// The socket id.
        socket: Arc<str>,
    },
    /// `socket` left `room`.
    Left {
        /// The room.
        room: Room,
        /// The socket id.
        socket: Arc<str>,
    },
}

/// Hub settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// A client that has not connected to any namespace within this time is
    /// disconnected (default 45 s, like socket.io).
    pub connect_timeout: Duration,
    /// Default timeout of [`Socket::emit_with_ack`] (default 30 s).
    pub ack_timeout: Duration,
    /// The packet parser clients use.
    pub parser: Parser,
    /// Decoder limits (attachments per packet, namespace name length).
    pub limits: Limits,
    /// Most acks one socket may await from its client (default 1,024).
    pub max_pending_acks: usize,
    /// How many recent ack ids per socket are remembered to recognise
    /// retries of the same event (default 128).
    pub retry_window: usize,
    /// Whether children of dynamic namespaces are removed once empty
    /// (default true).
    pub cleanup_empty_children: bool,
    /// Event rate limits (see [`RateLimits`] for the defaults).
    pub rate_limits: RateLimits,
    /// Connection caps (see [`ConnectionLimits`] for the defaults).
    pub connection_limits: ConnectionLimits,
    /// Most rooms one socket may be in, its own room included (default 1,000).
    pub max_rooms_per_socket: usize,
    /// Most namespaces one connection may join (default 32).
    pub max_namespaces_per_connection: usize,
    /// Connection-state recovery (socket.io's `connectionStateRecovery`):
    /// off by default, as in socket.io. See [`crate::recovery`].
    pub recovery: Option<RecoveryConfig>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            connect_timeout: Duration::from_secs(45),
            ack_timeout: Duration::from_secs(30),
            parser: Parser::Default,
            limits: Limits::default(),
            max_pending_acks: 1024,
            retry_window: 128,
            cleanup_empty_children: true,
            rate_limits: RateLimits::default(),
            connection_limits: ConnectionLimits::default(),
            max_rooms_per_socket: 1000,
            max_namespaces_per_connection: 32,
            recovery: None,
        }
    }
}

impl HubConfig {
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`ack_timeout`](Self::ack_timeout).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }
    /// Sets [`parser`](Self::parser).
    pub fn parser(mut self, parser: Parser) -> Self {
        self.parser = parser;
        self
    }
    /// Sets [`max_pending_acks`](Self::max_pending_acks).
    pub fn max_pending_acks(mut self, n: usize) -> Self {
        self.max_pending_acks = n;
        self
    }
    /// Sets [`cleanup_empty_children`](Self::cleanup_empty_children).
    pub fn cleanup_empty_children(mut self, yes: bool) -> Self {
        self.cleanup_empty_children = yes;
        self
    }
    /// Sets [`rate_limits`](Self::rate_limits).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }
    /// Sets [`connection_limits`](Self::connection_limits).
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connection_limits = limits;
        self
    }
    /// Sets [`max_rooms_per_socket`](Self::max_rooms_per_socket).
    pub fn max_rooms_per_socket(mut self, n: usize) -> Self {
        self.max_rooms_per_socket = n;
        self
    }
    /// Sets [`max_namespaces_per_connection`](Self::max_namespaces_per_connection).
    pub fn max_namespaces_per_connection(mut self, n: usize) -> Self {
        self.max_namespaces_per_connection = n;
        self
    }
    /// Turns on connection-state recovery with `config`.
    pub fn connection_state_recovery(mut self, config: RecoveryConfig) -> Self {
        self.recovery = Some(config);
        self
    }
    /// No rate limits and no connection caps (benchmarks, trusted peers).
    pub fn unlimited(self) -> Self {
        self.rate_limits(RateLimits::none()).connection_limits(ConnectionLimits::none())
    }
}

/// The Socket.IO packet parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Parser {
    /// socket.io's default parser: JSON text plus binary attachments.
    #[default]
    Default,
    /// npm `socket.io-msgpack-parser`: one msgpack binary message per packet.
    #[cfg(feature = "msgpack")]
    Msgpack,
}

impl Parser {
    /// Encodes `packet` into Engine.IO messages.
    pub fn encode(self, packet: &Packet) -> Vec<Encoded> {
        match self {
            Parser::Default => packet.encode(),
            #[cfg(feature = "msgpack")]
            Parser::Msgpack => vec![crate::protocol::msgpack::encode(packet)],
        }
    }
}

/// Why a socket left its namespace. `Display` gives socket.io's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed the connection or it went away.
    #[error("transport close")]
    TransportClose,
    /// The connection failed, or the client broke the Engine.IO protocol.
    #[error("transport error")]
    TransportError,
    /// The client missed a heartbeat.
    #[error("ping timeout")]
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    #[error("parse error")]
    ParseError,
    /// The server is shutting down.
    #[error("server shutting down")]
    ServerShutdown,
    /// The server closed the whole connection.
    #[error("forced server close")]
    ForcedServerClose,
    /// The client left the namespace.
    #[error("client namespace disconnect")]
    ClientNamespaceDisconnect,
    /// The server disconnected the socket from the namespace.
    #[error("server namespace disconnect")]
    ServerNamespaceDisconnect,
    /// The client did not read fast enough and its queue overflowed.
    #[error("slow consumer")]
    SlowConsumer,
    /// The client kept sending past its rate limits.
    #[error("rate limited")]
    RateLimited,
}

impl From<&crate::engine::CloseReason> for DisconnectReason {
    fn from(r: &crate::engine::CloseReason) -> DisconnectReason {
        use crate::engine::CloseReason as C;
        match r {
            C::TransportClose => DisconnectReason::TransportClose,
            C::PingTimeout => DisconnectReason::PingTimeout,
            C::ParseError => DisconnectReason::ParseError,
            C::SlowConsumer => DisconnectReason::SlowConsumer,
            C::ServerShutdown => DisconnectReason::ServerShutdown,
            C::ForcedClose => DisconnectReason::ForcedServerClose,
            _ => DisconnectReason::TransportError,
        }
    }
}

/// An event received from a client.
///
/// # Examples
/// ```
/// use tidewire::hub::{Event, EventRejection, Hub, Socket};
/// let hub = Hub::default();
/// // socket.emit("move", 3, 4, (answer) => ..) in JavaScript:
/// hub.of("/").on("move", |_socket: Socket, mut event: Event| async move {
///     let answer = match event.args_as::<(i32, i32)>() {
///         Ok((x, y)) => serde_json::json!({ "status": "ok", "distance": x.abs() + y.abs() }),
///         Err(e) => EventRejection::from(e).to_ack(), // invalid_payload
///     };
///     let _ = event.reply(answer); // nothing happens without a callback
/// });
/// ```
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments (after the name).
    pub args: Payload,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckResponder>,
}

impl Event {
    /// Argument `index` as a `T`; see [`Payload::arg`].
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Event, Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on("chat:join", |socket: Socket, event: Event| async move {
    ///     // `42["chat:join"]` (no room) is an error here, not a panic.
    ///     if let Ok(room) = event.arg::<&str>(0) {
    ///         let _ = socket.join(format!("room:{room}"));
    ///     }
    /// });
    /// ```
    ///
    /// # Errors
    /// [`ArgError::Missing`] or [`ArgError::Invalid`].
    pub fn arg<'a, T: serde::Deserialize<'a>>(&'a self, index: usize) -> Result<T, ArgError> {
        self.args.arg(index)
    }

    /// The leading arguments as a tuple; see [`Payload::args_as`].
    ///
    /// # Errors
    /// The [`ArgError`] of the first argument that cannot be read.
    pub fn args_as<'a, T: FromArgs<'a>>(&'a self) -> Result<T, ArgError> {
        self.args.args_as()
    }

    /// Answers the client's acknowledgement with `args`, if it asked for
    /// one (socket.io's `callback(...)`), and otherwise does nothing. The
    /// ack is used up: a second reply does nothing.
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tidewire::hub::{Event, Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on("ping", |_socket: Socket, mut event: Event| async move {
    ///     let _ = event.reply(("pong", json!({ "at": 1 }))); // callback("pong", {at: 1})
    /// });
    /// ```
    ///
    /// # Errors
    /// As [`AckResponder::send`]; `Ok` when there was nothing to answer.
    pub fn reply(&mut self, args: impl IntoPayload) -> Result<(), EmitError> {
        match self.ack.take() {
            Some(ack) => ack.send(args),
            None => Ok(()),
        }
    }
}

/// The Socket.IO server: namespaces and their sockets. The main namespace
/// `/` always exists.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    config: HubConfig,
    namespaces: RwLock<HashMap<String, Namespace>>,
    /// The dynamic namespaces, in the order they were made (the first
    /// whose matcher accepts a name makes the child).
    dynamic: RwLock<Vec<(handler::Matcher, Namespace)>>,
    /// This node's id in a cluster (presence entries carry it).
    node_id: Arc<str>,
    pub(crate) rates: RateLimiter,
    pub(crate) connections: ConnectionCounter,
    pub(crate) stats: HubStats,
    /// Set by `drain`: new connections are refused.
    draining: std::sync::atomic::AtomicBool,
    /// The adapter of the cluster this hub joined, if any.
    adapter: std::sync::OnceLock<Arc<dyn adapter::Adapter>>,
    /// The engines serving this hub, where requests other nodes forward
    /// find their sessions.
    pub(crate) engines: Mutex<Vec<crate::engine::WeakEngine>>,
}

/// Counters of a hub, for metrics. Every field counts since the hub started.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Events received from clients (before any check).
    pub events_in: AtomicU64,
    /// Bytes of the events received (packet and attachments).
    pub bytes_in: AtomicU64,
    /// Event deliveries queued to clients (a broadcast to n sockets counts n).
    pub events_out: AtomicU64,
    /// Events refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Events refused by a payload validator.
    pub invalid_payload: AtomicU64,
    /// Events refused for their size.
    pub payload_too_large: AtomicU64,
    /// Sockets disconnected for repeated rate-limit violations.
    pub rate_limit_disconnects: AtomicU64,
    /// Connections refused by a cap (handshakes and namespace connects).
    pub connections_refused: AtomicU64,
    /// Namespace connects refused because of a room or namespace cap.
    pub namespace_refused: AtomicU64,
    /// Server-side acks that timed out.
    pub ack_timeouts: AtomicU64,
    /// Sockets that reconnected and got their session back.
    pub recovered: AtomicU64,
    /// Recovery attempts that failed (unknown or expired session, bad
    /// offset, packets gone, another user).
    pub recovery_failed: AtomicU64,
}

impl HubStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(HubConfig::default())
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.read().keys().cloned().collect();
        f.debug_struct("Hub").field("config", &self.inner.config).field("namespaces", &names).finish()
    }
}

/// What a client's CONNECT to a namespace finds.
pub(crate) enum Resolution {
    /// The namespace, there now.
    Found(Namespace),
    /// No such namespace.
    Invalid,
    /// An asynchronous matcher decides: the namespace, or `None`.
    Later(BoxFuture<Option<Namespace>>),
}

fn normalize(name: &str) -> String {
    if name.starts_with('/') { name.to_owned() } else { format!("/{name}") }
}

impl Hub {
    /// A hub with `config`.
    pub fn new(config: HubConfig) -> Hub {
        let epoch = crate::time::now();
        let hub = Hub {
            inner: Arc::new(HubInner {
                rates: RateLimiter::new(config.rate_limits.clone(), epoch),
                connections: ConnectionCounter::new(config.connection_limits.clone(), epoch),
                config,
                node_id: crate::engine::new_id().into(),
                namespaces: RwLock::default(),
                dynamic: RwLock::default(),
                stats: HubStats::default(),
                draining: std::sync::atomic::AtomicBool::new(false),
                adapter: std::sync::OnceLock::new(),
                engines: Mutex::default(),
            }),
        };
        hub.of("/");
        hub
    }

    pub(crate) fn from_inner(inner: Arc<HubInner>) -> Hub {
        Hub { inner }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// This node's id (random, per hub).
    pub fn node_id(&self) -> &Arc<str> {
        &self.inner.node_id
    }

    /// The hub's counters.
    pub fn stats(&self) -> &HubStats {
        &self.inner.stats
    }

    /// Connections counted against the connection caps now.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.connections()
    }

    pub(crate) fn inner(&self) -> &HubInner {
        &self.inner
    }

    /// The namespace `name`, created if needed (socket.io's `io.of(name)`).
    /// A name without a leading `/` gets one.
    pub fn of(&self, name: &str) -> Namespace {
        let name = normalize(name);
        if let Some(ns) = self.read().get(&name) {
            return ns.clone();
        }
        let mut map = self.inner.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.clone())
            .or_insert_with(|| {
                self.adapter().namespace_added(&name);
                Namespace::new(name, self.inner.config.parser, Arc::downgrade(&self.inner))
            })
            .clone()
    }

    /// A dynamic namespace (socket.io's `io.of(regex)` / `io.of(fn)`): a
    /// client connecting to an unknown namespace whose name `matcher`
    /// accepts creates it as a child. As in socket.io, a child starts with
    /// a copy of what was registered on the returned parent by then
    /// (middlewares, connection and event handlers); what is registered on
    /// the child afterwards is its own, and what is registered on the
    /// parent afterwards reaches only the children made later. Parents are
    /// named `/_0`, `/_1`, ... as socket.io's, and found again with
    /// [`dynamic_parent`](Self::dynamic_parent). Children are removed once
    /// empty unless [`HubConfig::cleanup_empty_children`] is off.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::Hub;
    /// let hub = Hub::default();
    /// let workspaces = hub.dynamic(regex::Regex::new(r"^/workspace-\d+$").unwrap());
    /// workspaces.on_connect(|socket: tidewire::hub::Socket| async move {
    ///     tracing::info!(nsp = socket.namespace(), "joined a workspace");
    /// });
    /// ```
    pub fn dynamic(&self, matcher: impl handler::NamespaceMatcher) -> Namespace {
        self.add_dynamic(handler::Matcher::Now(Arc::new(matcher)))
    }

    /// [`dynamic`](Self::dynamic) with a matcher whose answer takes time
    /// (one asked in another runtime): the client's CONNECT waits for it.
    pub fn dynamic_async(&self, matcher: impl handler::AsyncNamespaceMatcher) -> Namespace {
        self.add_dynamic(handler::Matcher::Later(Arc::new(matcher)))
    }

    fn add_dynamic(&self, matcher: handler::Matcher) -> Namespace {
        let mut dynamic = self.inner.dynamic.write().unwrap_or_else(PoisonError::into_inner);
        let name = format!("/_{}", dynamic.len());
        let parent = Namespace::new(name, self.inner.config.parser, Arc::downgrade(&self.inner));
        dynamic.push((matcher, parent.clone()));
        parent
    }

    /// The dynamic namespace named `name` (`/_0`, ...), if there is one.
    pub fn dynamic_parent(&self, name: &str) -> Option<Namespace> {
        let dynamic = self.inner.dynamic.read().unwrap_or_else(PoisonError::into_inner);
        dynamic.iter().find(|(_, p)| p.name() == name).map(|(_, p)| p.clone())
    }

    /// The children of dynamic namespace `parent` that exist now.
    pub fn children(&self, parent: &Namespace) -> Vec<Namespace> {
        self.read().values().filter(|ns| ns.parent_name() == Some(parent.name())).cloned().collect()
    }

    /// The namespace `name` if it exists (static or a live dynamic child).
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.read().get(name).cloned()
    }

    /// The namespace a client asks for: an existing one, or a new child of
    /// the first dynamic namespace whose matcher accepts the name (asking
    /// them in order; an asynchronous one makes the answer come later).
    pub(crate) fn resolve_namespace(&self, name: &str, auth: &serde_json::Value) -> Resolution {
        if let Some(ns) = self.namespace(name) {
            return Resolution::Found(ns);
        }
        // Cluster channels are `<prefix>#<nsp>#<room>#`: a client-chosen
        // namespace with a `#` could share a channel with another namespace's
        // room (`/a#b` + `c` and `/a` + `b#c`). Names the app created itself
        // are its own choice.
        if name.contains('#') {
            return Resolution::Invalid;
        }
        let parents = self.inner.dynamic.read().unwrap_or_else(PoisonError::into_inner).clone();
        for (i, (matcher, parent)) in parents.iter().enumerate() {
            match matcher {
                handler::Matcher::Now(m) if m.matches(name, auth) => {
                    return Resolution::Found(self.child(name, parent));
                }
                handler::Matcher::Now(_) => {}
                handler::Matcher::Later(_) => {
                    let (hub, name, auth) = (self.clone(), name.to_owned(), auth.clone());
                    let rest = parents[i..].to_vec();
                    return Resolution::Later(Box::pin(async move {
                        for (matcher, parent) in rest {
                            let yes = match matcher {
                                handler::Matcher::Now(m) => m.matches(&name, &auth),
                                handler::Matcher::Later(m) => m.matches(&name, &auth).await,
                            };
                            if yes {
                                return Some(hub.child(&name, &parent));
                            }
                        }
                        None
                    }));
                }
            }
        }
        Resolution::Invalid
    }

    /// The namespace `name`: the one that exists (made meanwhile), or a new
    /// child of `parent`.
    fn child(&self, name: &str, parent: &Namespace) -> Namespace {
        let mut map = self.inner.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned())
            .or_insert_with(|| {
                self.adapter().namespace_added(name);
                parent.child(name.to_owned())
            })
            .clone()
    }

    /// Removes an empty dynamic child from the namespace table.
    pub(crate) fn detach_if_empty(&self, ns: &Namespace) {
        let mut map = self.inner.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        let same = map.get(ns.name()).is_some_and(|n| n.same(ns));
        if same && ns.is_idle() {
            map.remove(ns.name());
            ns.mark_detached();
            self.adapter().namespace_removed(ns.name());
        }
    }

    /// Puts back a child that got a socket after it was detached.
    pub(crate) fn reattach(&self, ns: &Namespace) {
        let mut map = self.inner.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(ns.name().to_owned()).or_insert_with(|| {
            self.adapter().namespace_added(ns.name());
            ns.clone()
        });
    }

    /// The names of the namespaces that exist now.
    pub fn namespace_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// A broadcast on the main namespace (`io.to(room)`).
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.of("/").to(room)
    }

    /// A broadcast on the main namespace to everyone but `room`'s members.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.of("/").except(room)
    }

    /// A broadcast to every socket of the main namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.of("/").broadcast()
    }

    /// Sends `event` to every socket of the main namespace (`io.emit`); see
    /// [`BroadcastOperator::emit`].
    pub fn emit(&self, event: &str, args: impl IntoPayload) -> usize {
        self.of("/").emit(event, args)
    }

    /// The Engine.IO handler that serves this hub; mount it with an
    /// [`Engine`].
    pub fn engine_handler(&self) -> Arc<dyn EngineHandler> {
        Arc::new(client::Acceptor { hub: self.clone() })
    }

    /// An Engine.IO engine serving this hub. The hub admits handshakes
    /// with its own [`HubConfig::connection_limits`], so the engine's
    /// [`EngineConfig::connection_limits`] are turned off.
    ///
    /// Its session ids name this node: once the hub joins a cluster, a
    /// request for one of them that reaches another node is answered from
    /// here (see [`cluster`](crate::cluster)'s forwarding).
    pub fn engine(&self, config: EngineConfig) -> Engine {
        let engine = Engine::new(config.connection_limits(None), self.engine_handler());
        #[cfg(feature = "server")]
        crate::cluster::forward::attach(self, &engine);
        engine
    }

    /// The adapter: the cluster's once the hub joined one, else [`adapter::LOCAL`].
    pub(crate) fn adapter(&self) -> &Arc<dyn adapter::Adapter> {
        self.inner.adapter.get().unwrap_or(&adapter::LOCAL)
    }

    /// The adapter a cluster installed, if any.
    pub(crate) fn installed_adapter(&self) -> Option<&Arc<dyn adapter::Adapter>> {
        self.inner.adapter.get()
    }

    /// A handle that does not keep the hub alive (for background tasks).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<HubInner> {
        Arc::downgrade(&self.inner)
    }

    /// Installs the cluster's adapter, once.
    pub(crate) fn install_adapter(&self, adapter: Arc<dyn adapter::Adapter>) -> Result<(), ClusterError> {
        self.inner.adapter.set(adapter).map_err(|_| ClusterError::AlreadyJoined)
    }

    /// Whether this hub belongs to a cluster.
    pub fn in_cluster(&self) -> bool {
        self.inner.adapter.get().is_some()
    }

    /// The namespaces that exist now.
    pub(crate) fn namespaces(&self) -> Vec<Namespace> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Namespace>> {
        self.inner.namespaces.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod api_tests;
#[cfg(test)]
pub(crate) mod tests;
