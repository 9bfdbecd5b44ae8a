//! A Socket.IO server to embed in another language's runtime: what every
//! binding needs, in one place, so that each binding only converts values
//! and errors.
//!
//! * [`Embedded`]: a hub plus its listener, built from [`EmbedOptions`]
//!   (checked from a host's options object by [`EmbedOptions::from_json`],
//!   see [`options`]), started and closed once.
//! * [`args`]: event arguments cross a language boundary as JSON text plus
//!   the binary attachments its placeholders point to: binary data is
//!   never encoded into JSON.
//! * [`decision`]: a connect middleware written in another language
//!   answers with a JSON decision.
//! * [`listeners`]: handler lists per event (several handlers each, as in
//!   socket.io) and the one place deliveries go to the host.
//! * [`host`]: Engine.IO sessions carried by the host language's own HTTP
//!   server (ASGI, Node's `http.Server`), on [`Embedded::host_engine`].
//! * [`fanout`]: broadcasts the core writes for a host's own Socket.IO layer
//!   (socket.io in Node), whose rooms it mirrors.
//! * [`error`]: [`EmbedError`] and the one table of [`ErrorCode`]s every
//!   binding's errors carry.
//! * Socket and acknowledgement operations with those errors: [`join`],
//!   [`emit`], [`emit_with_ack`], [`AckSlot`], [`Broadcast`], [`rooms`].

pub mod args;
pub mod batch;
pub mod decision;
pub mod error;
pub mod fanout;
pub mod host;
pub mod listeners;
pub mod options;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::engine::{Engine, EngineConfig};
pub use args::{payload_from_parts, payload_to_parts};
pub use batch::Batch;
pub use decision::admission_from_decision;
use error::invalid;
pub use error::{EmbedError, ErrorCode};
pub use listeners::{Delivery, DeliveryKind, DeliveryParts, Host, Listen, ListenerSlot, Listeners};
pub use options::Dialect;

use crate::hub::{
    AckResponder, BroadcastOperator, DrainOptions, DrainReport, Handshake, Hub, HubConfig, Namespace, Replies, Socket,
};
use crate::limits::LimitsSpec;
use crate::protocol::socketio::Payload;
use crate::recovery::RecoveryConfig;
use crate::transport::Server;

/// Options of an embedded server; `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    /// Interface to listen on (default `127.0.0.1`).
    pub host: Option<String>,
    /// Port (default 0: a free port).
    pub port: Option<u32>,
    /// Milliseconds between heartbeats.
    pub ping_interval_ms: Option<u64>,
    /// Milliseconds to wait for a heartbeat's answer.
    pub ping_timeout_ms: Option<u64>,
    /// Largest message, in bytes.
    pub max_payload: Option<u64>,
    /// Milliseconds a client has to join a namespace.
    pub connect_timeout_ms: Option<u64>,
    /// Origins allowed by CORS (credentials allowed for them).
    pub cors_origins: Vec<String>,
    /// Rate limits and connection caps as the JSON of a
    /// [`LimitsSpec`] (applied over the defaults).
    pub limits: Option<String>,
    /// Connection-state recovery window in milliseconds (off when `None`
    /// or 0).
    pub recovery_ms: Option<u64>,
    /// The transports offered, `(polling, websocket)` (default both).
    pub transports: Option<(bool, bool)>,
    /// Whether a dynamic namespace's children are removed once empty
    /// (default no, as socket.io's `cleanupEmptyChildNamespaces`).
    pub cleanup_empty_children: Option<bool>,
}

/// A hub and its listener.
#[derive(Debug)]
pub struct Embedded {
    hub: Hub,
    engine: EngineConfig,
    host: String,
    port: u16,
    running: tokio::sync::Mutex<Option<Server>>,
    /// The engine of sessions carried by the host's HTTP server.
    host_engine: std::sync::OnceLock<Engine>,
    closed: AtomicBool,
    /// The Redis bus of the cluster this server joined, if any.
    #[cfg(feature = "redis")]
    bus: std::sync::OnceLock<std::sync::Arc<crate::bus::RedisBus>>,
}

/// How an embedded server joins a cluster over Redis (wire-compatible with
/// `@socket.io/redis-adapter`'s `createAdapter`).
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `redis://host:port/db`; with [`cluster`](Self::cluster), seed nodes
    /// separated by commas.
    pub url: String,
    /// The channel prefix (default `socket.io`, the official adapter's `key`).
    pub prefix: Option<String>,
    /// How long requests to the other nodes wait, in ms (default 5000).
    pub request_timeout_ms: Option<u64>,
    /// `url` names nodes of a Redis Cluster.
    pub cluster: bool,
}

impl Embedded {
    /// A server with `options` (not listening yet).
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for a port above 65535 or a zero
    /// payload limit.
    pub fn new(options: EmbedOptions) -> Result<Embedded, EmbedError> {
        let port = u16::try_from(options.port.unwrap_or(0)).map_err(|_| invalid("port must be 0-65535"))?;
        let mut engine = EngineConfig::default();
        if let Some(ms) = options.ping_interval_ms {
            engine = engine.ping_interval(Duration::from_millis(ms));
        }
        if let Some(ms) = options.ping_timeout_ms {
            engine = engine.ping_timeout(Duration::from_millis(ms));
        }
        if let Some(n) = options.max_payload {
            if n == 0 {
                return Err(invalid("max_payload must be positive"));
            }
            engine = engine.max_payload(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some((polling, websocket)) = options.transports {
            engine = engine.transports(polling, websocket);
        }
        for origin in options.cors_origins {
            engine = engine.cors_origin(origin).cors_credentials(true);
        }
        let mut hub = HubConfig::default().cleanup_empty_children(options.cleanup_empty_children.unwrap_or(false));
        if let Some(ms) = options.connect_timeout_ms {
            hub = hub.connect_timeout(Duration::from_millis(ms));
        }
        if let Some(json) = &options.limits {
            let spec: LimitsSpec = serde_json::from_str(json).map_err(|e| invalid(format!("limits: {e}")))?;
            let (rates, conns) = spec
                .apply(hub.rate_limits.clone(), hub.connection_limits.clone())
                .map_err(|e| invalid(format!("limits: {e}")))?;
            hub = hub.rate_limits(rates).connection_limits(conns);
        }
        if let Some(ms) = options.recovery_ms.filter(|ms| *ms > 0) {
            let window = Duration::from_millis(ms);
            hub = hub.connection_state_recovery(RecoveryConfig::default().max_disconnection_duration(window));
        }
        Ok(Embedded {
            hub: Hub::new(hub),
            engine,
            host: options.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
            port,
            running: tokio::sync::Mutex::new(None),
            host_engine: std::sync::OnceLock::new(),
            closed: AtomicBool::new(false),
            #[cfg(feature = "redis")]
            bus: std::sync::OnceLock::new(),
        })
    }

    /// Joins a cluster over Redis: broadcasts, room operations and
    /// server-side events reach every node, official socket.io nodes
    /// included. Redis being down is not an error: the bus keeps retrying.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for a bad URL or a second join;
    /// [`EmbedError::Closed`] once closed.
    #[cfg(feature = "redis")]
    pub async fn join_redis(&self, options: RedisOptions) -> Result<(), EmbedError> {
        if self.is_closed() {
            return Err(EmbedError::Closed);
        }
        let mut config = crate::cluster::ClusterConfig::default();
        if let Some(prefix) = options.prefix {
            config = config.prefix(prefix);
        }
        if let Some(ms) = options.request_timeout_ms {
            config = config.request_timeout(Duration::from_millis(ms));
        }
        let bus_config = crate::bus::RedisBusConfig::default();
        let bus =
            self.hub.join_redis(&options.url, options.cluster, bus_config, config).await.map_err(|e| match e {
                crate::hub::ClusterError::AlreadyJoined => invalid("this server already joined a cluster"),
                other => invalid(format!("redis: {other}")),
            })?;
        let _ = self.bus.set(bus);
        Ok(())
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The namespace `name`, checked: a dynamic namespace by its name
    /// (`/_0`, ...), or the namespace of that name (made if needed).
    ///
    /// # Errors
    /// [`EmbedError::Closed`] once closed; [`EmbedError::InvalidArgument`]
    /// when `name` does not start with `/`.
    pub fn namespace(&self, name: &str) -> Result<Namespace, EmbedError> {
        if self.is_closed() {
            return Err(EmbedError::Closed);
        }
        if !name.starts_with('/') {
            return Err(invalid(format!("namespace {name:?} must start with '/'")));
        }
        Ok(self.hub.dynamic_parent(name).unwrap_or_else(|| self.hub.of(name)))
    }

    /// A dynamic namespace whose `matcher` the host answers (its
    /// `io.of(regex)` or `io.of(fn)`); returns its name (`/_0`, ...), by
    /// which [`namespace`](Self::namespace) finds it.
    ///
    /// # Errors
    /// [`EmbedError::Closed`] once closed.
    pub fn dynamic(&self, matcher: impl crate::hub::handler::AsyncNamespaceMatcher) -> Result<String, EmbedError> {
        if self.is_closed() {
            return Err(EmbedError::Closed);
        }
        Ok(self.hub.dynamic_async(matcher).name().to_owned())
    }

    /// The names of the children of dynamic namespace `name` that exist now.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] when `name` is no dynamic namespace.
    pub fn children(&self, name: &str) -> Result<Vec<String>, EmbedError> {
        let parent =
            self.hub.dynamic_parent(name).ok_or_else(|| invalid(format!("{name:?} is not a dynamic namespace")))?;
        Ok(self.hub.children(&parent).iter().map(|ns| ns.name().to_owned()).collect())
    }

    /// The engine for sessions carried by the host's own HTTP server (see
    /// [`host`]): the same hub and options as the built-in listener, made
    /// on first use.
    ///
    /// # Errors
    /// [`EmbedError::Closed`] once closed.
    pub fn host_engine(&self) -> Result<Engine, EmbedError> {
        if self.is_closed() {
            return Err(EmbedError::Closed);
        }
        Ok(self.host_engine.get_or_init(|| self.hub.engine(self.engine.clone())).clone())
    }

    /// Starts listening (once; later calls return the same address). Must
    /// run inside a tokio runtime, which then serves the connections.
    ///
    /// # Errors
    /// [`EmbedError::Closed`], or [`EmbedError::Listen`].
    pub async fn listen(&self) -> Result<SocketAddr, EmbedError> {
        if self.is_closed() {
            return Err(EmbedError::Closed);
        }
        let mut running = self.running.lock().await;
        if let Some(server) = running.as_ref() {
            return Ok(server.local_addr());
        }
        let server = Server::builder()
            .mount("/socket.io/", self.hub.engine(self.engine.clone()))
            .bind((self.host.as_str(), self.port))
            .await
            .map_err(|source| EmbedError::Listen { addr: format!("{}:{}", self.host, self.port), source })?;
        let addr = server.local_addr();
        *running = Some(server);
        Ok(addr)
    }

    /// Drains the hub gracefully (see [`Hub::drain`]), then stops
    /// listening; the server cannot be used again.
    pub async fn drain(&self, options: DrainOptions) -> DrainReport {
        let report = self.hub.drain(options).await;
        self.close().await;
        report
    }

    /// Disconnects every client and stops listening; the server cannot be
    /// used again. Calling it twice does nothing.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(engine) = self.host_engine.get() {
            engine.close_all();
        }
        if let Some(server) = self.running.lock().await.take() {
            server.shutdown().await;
        }
        #[cfg(feature = "redis")]
        if let Some(bus) = self.bus.get() {
            self.hub.announce_leaving();
            bus.flush(Duration::from_secs(1)).await;
            bus.close();
        }
    }
}

/// socket.io's `BroadcastOperator` for a binding: where a broadcast goes,
/// built up with [`to`](Self::to) and [`except`](Self::except), then
/// [`emit`](Self::emit)ted. Each step returns a new operator, so a host
/// object can hold one and hand out others.
#[derive(Debug, Clone)]
pub struct Broadcast {
    op: BroadcastOperator,
    rooms: Vec<String>,
    except: Vec<String>,
}

impl Broadcast {
    /// Everyone `op` (a namespace's or a socket's broadcast) reaches.
    pub fn new(op: BroadcastOperator) -> Broadcast {
        Broadcast { op, rooms: Vec::new(), except: Vec::new() }
    }

    fn checked(rooms: Vec<String>) -> Result<Vec<String>, EmbedError> {
        match rooms.iter().any(String::is_empty) {
            true => Err(invalid("a room must be a non-empty string")),
            false => Ok(rooms),
        }
    }

    /// Also the members of `rooms` (the first call narrows "everyone" to
    /// them).
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty room name.
    pub fn to(&self, rooms: Vec<String>) -> Result<Broadcast, EmbedError> {
        let mut next = self.clone();
        next.rooms.extend(Broadcast::checked(rooms)?);
        Ok(next)
    }

    /// Not the members of `rooms`.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty room name.
    pub fn except(&self, rooms: Vec<String>) -> Result<Broadcast, EmbedError> {
        let mut next = self.clone();
        next.except.extend(Broadcast::checked(rooms)?);
        Ok(next)
    }

    /// Makes the sockets it reaches leave `room` (every node's, in a
    /// cluster): `close_room` when it reaches the room's members.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty room name.
    pub fn leave(&self, room: &str) -> Result<(), EmbedError> {
        if room.is_empty() {
            return Err(invalid("a room must be a non-empty string"));
        }
        self.operator().sockets_leave(room);
        Ok(())
    }

    /// Makes the sockets it reaches join `room` (every node's, in a
    /// cluster): `enter_room` of a socket of another node.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty room name.
    pub fn join(&self, room: &str) -> Result<(), EmbedError> {
        if room.is_empty() {
            return Err(invalid("a room must be a non-empty string"));
        }
        self.operator().sockets_join([room]);
        Ok(())
    }

    /// Disconnects the sockets it reaches (every node's, in a cluster);
    /// with `close`, their whole connections.
    pub fn disconnect(&self, close: bool) {
        self.operator().disconnect_sockets(close);
    }

    fn with(&self, flag: impl FnOnce(BroadcastOperator) -> BroadcastOperator) -> Broadcast {
        let mut next = self.clone();
        next.op = flag(next.op);
        next
    }

    /// socket.io's `volatile`: skipped for a socket whose queue is backed up.
    pub fn volatile(&self) -> Broadcast {
        self.with(BroadcastOperator::volatile)
    }

    /// socket.io's `local`: this node's sockets only.
    pub fn local(&self) -> Broadcast {
        self.with(BroadcastOperator::local)
    }

    /// socket.io's `compress(yes)`.
    pub fn compress(&self, yes: bool) -> Broadcast {
        self.with(|op| op.compress(yes))
    }

    /// socket.io's `fetchSockets`, every node's: `[{id, handshake, rooms,
    /// data}]` as JSON, and whether every node answered in time.
    pub async fn fetch_sockets(&self) -> (String, bool) {
        let gathered = self.operator().fetch_sockets().await;
        (serde_json::to_string(&gathered.value).unwrap_or_else(|_| "[]".to_owned()), gathered.replies.complete())
    }

    fn operator(&self) -> BroadcastOperator {
        let op = self.op.clone().to_many(self.rooms.clone());
        self.except.iter().cloned().fold(op, BroadcastOperator::except)
    }

    /// Emits `event`; returns how many sockets of this node it was queued
    /// for.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty event name.
    pub fn emit(&self, event: &str, args: Payload) -> Result<usize, EmbedError> {
        if event.is_empty() {
            return Err(invalid("an event name must be a non-empty string"));
        }
        Ok(self.operator().emit(event, args))
    }

    /// socket.io's broadcast with an acknowledgement: every answer that
    /// came within `timeout` (each recipient's arguments, in arrival
    /// order), and whether every recipient answered (none timed out,
    /// disconnected first or sat on a node that did not report).
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty event name,
    /// [`EmbedError::Send`] when a recipient has too many acknowledgements
    /// pending (nothing is sent then).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Payload,
        timeout: Duration,
    ) -> Result<(Vec<Payload>, bool), EmbedError> {
        if event.is_empty() {
            return Err(invalid("an event name must be a non-empty string"));
        }
        let report = self
            .operator()
            .timeout(timeout)
            .emit_with_ack(event, args)
            .await
            .map_err(|e| EmbedError::Send(e.to_string()))?;
        let complete = report.timed_out.is_empty()
            && report.disconnected.is_empty()
            && report.missing_remote == 0
            && report.missing_nodes == 0;
        Ok((report.responses.into_iter().map(|(_, answer)| answer).collect(), complete))
    }
}

/// Joins `socket` to `room`.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for an empty name,
/// [`EmbedError::TooManyRooms`] when the socket is in as many as allowed.
pub fn join(socket: &Socket, room: String) -> Result<(), EmbedError> {
    if room.is_empty() {
        return Err(invalid("a room name cannot be empty"));
    }
    Ok(socket.join(room)?)
}

/// The rooms `socket` is in (its own id included), sorted.
pub fn rooms(socket: &Socket) -> Vec<String> {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms
}

/// A handshake as JSON (socket.io's `socket.handshake` shape).
pub fn handshake_json(handshake: &Handshake) -> String {
    serde_json::to_string(handshake).unwrap_or_else(|_| "{}".to_owned())
}

/// Sends `event` to `socket`.
///
/// # Errors
/// [`EmbedError::Send`] when it cannot go out.
pub fn emit(socket: &Socket, event: &str, args: Payload) -> Result<(), EmbedError> {
    Ok(socket.emit(event, args)?)
}

/// Emits `event` to `socket` and waits for its answer, at most `timeout`
/// (a binding's optional argument: the hub's `ack_timeout` when `None`).
///
/// # Errors
/// [`EmbedError::AckTimeout`], [`EmbedError::Disconnected`] or
/// [`EmbedError::Send`].
pub async fn emit_with_ack(
    socket: &Socket,
    event: &str,
    args: Payload,
    timeout: Option<Duration>,
) -> Result<Payload, EmbedError> {
    Ok(match timeout {
        Some(t) => socket.timeout(t).emit_with_ack(event, args).await,
        None => socket.emit_with_ack(event, args).await,
    }?)
}

/// How many nodes serve `ns`, this one included (1 outside a cluster).
///
/// # Errors
/// [`EmbedError::Cluster`] when the bus cannot count.
pub async fn server_count(ns: &Namespace) -> Result<usize, EmbedError> {
    Ok(ns.server_count().await?)
}

/// Sends `event` to the other nodes of the cluster (socket.io's
/// `serverSideEmit`); nobody to tell outside a cluster.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for an empty event name;
/// [`EmbedError::Cluster`] when the bus refuses it.
pub fn server_side_emit(ns: &Namespace, event: &str, args: &Payload) -> Result<(), EmbedError> {
    if event.is_empty() {
        return Err(invalid("an event name must be a non-empty string"));
    }
    Ok(ns.server_side_emit(event, args)?)
}

/// [`server_side_emit`] asking every other node for an answer: the
/// answers that came within `timeout` (the cluster's request timeout when
/// `None`) as one JSON array, and how many nodes were asked.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for an empty event name.
pub async fn server_side_emit_with_ack(
    ns: &Namespace,
    event: &str,
    args: &Payload,
    timeout: Option<Duration>,
) -> Result<(String, Replies), EmbedError> {
    if event.is_empty() {
        return Err(invalid("an event name must be a non-empty string"));
    }
    let gathered = ns.server_side_emit_with_ack(event, args, timeout).await;
    Ok((serde_json::Value::Array(gathered.value).to_string(), gathered.replies))
}

/// Handles `event` sent by another node with [`server_side_emit`]:
/// `handler(args, wants_answer)` resolves to the answer's JSON (an empty
/// text: no answer, and the sender counts this node as silent).
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for an empty event name.
pub fn on_server_event<F, Fut>(ns: &Namespace, event: &str, handler: F) -> Result<(), EmbedError>
where
    F: Fn(Payload, bool) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    if event.is_empty() {
        return Err(invalid("an event name must be a non-empty string"));
    }
    ns.on_server_event(event, move |args: Payload, ack: Option<crate::hub::ServerAck>| {
        let answer = handler(args, ack.is_some());
        async move {
            let answer = answer.await;
            let (Some(ack), false) = (ack, answer.is_empty()) else { return };
            match serde_json::from_str::<serde_json::Value>(&answer) {
                Ok(value) => ack.send(&value),
                Err(e) => tracing::warn!(error = %e, "a server-side event's answer is not JSON"),
            }
        }
    });
    Ok(())
}

/// The acknowledgement a client asked for, answered at most once.
#[derive(Debug)]
pub struct AckSlot(std::sync::Mutex<Option<AckResponder>>);

impl AckSlot {
    /// A slot holding `responder`.
    pub fn new(responder: AckResponder) -> AckSlot {
        AckSlot(std::sync::Mutex::new(Some(responder)))
    }

    /// Sends the answer.
    ///
    /// # Errors
    /// [`EmbedError::AckAlreadySent`] the second time;
    /// [`EmbedError::Send`] when it cannot go out.
    pub fn send(&self, args: Payload) -> Result<(), EmbedError> {
        let responder = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        Ok(responder.ok_or(EmbedError::AckAlreadySent)?.send(args)?)
    }
}

/// Limits `event` on `ns` with the rule `options_json` describes (see
/// [`options::event_rule_from_json`]); refused events never reach a handler.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] for an empty event name or a bad rule.
pub fn limit_event(ns: &Namespace, event: &str, options_json: &str, dialect: Dialect) -> Result<(), EmbedError> {
    if event.is_empty() {
        return Err(invalid("an event name must be a non-empty string"));
    }
    ns.limit_event(event, options::event_rule_from_json(options_json, dialect)?);
    Ok(())
}

/// A room's presence as JSON: `[{userId, connections: [{id, node, meta}]}]`.
pub fn presence_json(ns: &Namespace, room: &str) -> String {
    serde_json::to_string(&ns.presence(room)).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_a_closed_server_refuses_work() {
        assert_eq!(
            Embedded::new(EmbedOptions { port: Some(70_000), ..Default::default() }).unwrap_err().code().as_str(),
            "ERR_INVALID_ARG"
        );
        assert_eq!(
            Embedded::new(EmbedOptions { max_payload: Some(0), ..Default::default() }).unwrap_err().code().as_str(),
            "ERR_INVALID_ARG"
        );
        let e = Embedded::new(EmbedOptions::default()).unwrap();
        assert_eq!(e.namespace("x").unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        assert!(e.namespace("/x").is_ok());
    }

    #[test]
    fn a_broadcast_checks_rooms_and_names_and_keeps_each_step() {
        let e = Embedded::new(EmbedOptions::default()).unwrap();
        let everyone = Broadcast::new(e.namespace("/").unwrap().broadcast());
        let to_a = everyone.to(vec!["a".to_owned()]).unwrap();
        assert_eq!(to_a.rooms, ["a"]);
        assert!(everyone.rooms.is_empty(), "each step is a new operator");
        let both = to_a.to(vec!["b".to_owned()]).unwrap().except(vec!["c".to_owned()]).unwrap();
        assert_eq!(
            (both.rooms.clone(), both.except.clone()),
            (vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()])
        );
        assert_eq!(everyone.to(vec![String::new()]).unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        assert_eq!(everyone.except(vec![String::new()]).unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        assert_eq!(both.emit("", Payload::default()).unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        assert_eq!(both.emit("news", Payload::default()).unwrap(), 0);
        assert_eq!(both.join("").unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        assert!(both.join("d").is_ok() && both.leave("d").is_ok());
        both.disconnect(false); // nobody there: nothing to do
    }

    #[tokio::test]
    async fn listens_once_and_closes_for_good() {
        let e = Embedded::new(EmbedOptions::default()).unwrap();
        let a = e.listen().await.unwrap();
        assert_eq!(e.listen().await.unwrap(), a);
        e.close().await;
        assert!(e.is_closed());
        assert_eq!(e.listen().await.unwrap_err().code().as_str(), "ERR_SERVER_CLOSED");
        assert_eq!(e.namespace("/").unwrap_err().code().as_str(), "ERR_SERVER_CLOSED");
        e.close().await;
    }
}
