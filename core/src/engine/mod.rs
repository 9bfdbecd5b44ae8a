//! Engine.IO sessions, independent of the transport that carries them.
//!
//! An [`Engine`] owns a table of [`Session`]s. Each session has one bounded
//! outbound queue drained by whichever transport is current (a long-polling
//! `GET` or a WebSocket writer), a heartbeat (the server pings every
//! `ping_interval` and closes the session when the pong is more than
//! `ping_timeout` late), and one [`Connection`]: the object an application
//! supplies through its [`EngineHandler`] to receive the session's messages.
//!
//! This layer is usable on its own, like npm `engine.io` beside `socket.io`:
//! mount an engine with your own handler at a path of your choice (see
//! [`crate::transport::Server`]) and you get every message, text or binary,
//! plus open and close, without the Socket.IO layer. [`crate::hub::Hub`] is
//! itself such a handler.
//!
//! # Driving a session
//! A transport is a driver around a session: it feeds what the client sent
//! to [`Session::receive`] and writes what [`Session::drain`] returns,
//! waiting with [`Session::wait_writable`]. The HTTP long-polling and
//! WebSocket transports in [`crate::transport`] do exactly that; so can a
//! custom transport, a binding that owns its sockets, or a test.
//!
//! # Closing
//! A session closes once, for one [`CloseReason`]: the client's close packet
//! or a transport failure, a missed pong, a parse error, an overflowing
//! outbound queue, or the application. The connection's
//! [`Connection::on_close`] runs exactly once after its last
//! [`Connection::on_message`].
//!
//! # Admission
//! Every handshake is admitted before anything is allocated for it: first
//! by the engine's own [`connection_limits`](EngineConfig::connection_limits)
//! (concurrent connections per IP address and in total, handshakes per IP
//! address; on by default with [`ConnectionLimits::default`]), then by the
//! handler's [`EngineHandler::admit`]. A refusal is answered with HTTP 429
//! (503 at the global cap) and counted in [`EngineStats::refused`]. So an
//! engine mounted with any handler is capped unless its configuration says
//! otherwise; the hub's engine ([`crate::hub::Hub::engine`]) leaves the caps
//! to the hub, which applies its own
//! [`HubConfig::connection_limits`](crate::hub::HubConfig::connection_limits).

pub(crate) mod forward;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use crate::limits::{ConnectionCounter, ConnectionLimits, ConnectionRefused, IpPermit};
use crate::protocol::engine::Frame;

pub use session::{FLUSH_TIMEOUT, OVERFLOW_GRACE, SendError, Session, new_id};

/// Engine.IO settings. The defaults are socket.io's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Time between the server's pings (default 25 s).
    pub ping_interval: Duration,
    /// How long the server waits for a pong before closing (default 20 s).
    pub ping_timeout: Duration,
    /// How long a WebSocket probe may take to complete an upgrade (default 10 s).
    pub upgrade_timeout: Duration,
    /// The largest message or polling body accepted, in bytes (default
    /// 1,000,000). Applied to polling bodies, WebSocket messages and frames.
    pub max_payload: usize,
    /// Most packets held in a session's outbound queue before the session is
    /// closed as a slow consumer (default 4,096).
    pub max_buffered_packets: usize,
    /// Most bytes held in a session's outbound queue before the session is
    /// closed as a slow consumer (default 4 MiB). A single message always
    /// fits an empty queue.
    pub max_buffered_bytes: usize,
    /// What happens when a session's queue overflows (default
    /// [`SlowConsumerPolicy::DropVolatileFirst`]).
    pub slow_consumer: SlowConsumerPolicy,
    /// Allowed CORS origins for long-polling requests; empty means no CORS
    /// headers are sent (browsers then allow same-origin pages only). A
    /// listed origin is reflected in `Access-Control-Allow-Origin`; `*`
    /// answers any other origin with a literal `*`, never with credentials
    /// (as npm `cors` does: a wildcard that reflected origins with
    /// credentials would let every site call in with the user's cookies).
    pub cors_origins: Vec<String>,
    /// Whether `Access-Control-Allow-Credentials: true` is sent with CORS
    /// responses to listed origins (never to the `*` wildcard).
    pub cors_credentials: bool,
    /// Whether the long-polling transport is offered.
    pub allow_polling: bool,
    /// Whether the WebSocket transport (and upgrades to it) is offered.
    pub allow_websocket: bool,
    /// Whether a long-polling session may upgrade to WebSocket (default
    /// true; engine.io's `allowUpgrades`). When false the polling
    /// handshake offers no upgrade and an upgrade request is refused
    /// (`400`); new WebSocket sessions are unaffected.
    pub allow_upgrades: bool,
    /// The size of a WebSocket connection's own read buffer, held for the
    /// connection's life (it grows for larger frames). The socket is read
    /// in 64 KiB chunks into a buffer shared per thread, so this only
    /// bounds how much is copied at a time: small by default, so idle
    /// connections stay cheap.
    pub websocket_read_buffer: usize,
    /// The caps the engine applies to every handshake before its handler's
    /// own [`EngineHandler::admit`] (default [`ConnectionLimits::default`]:
    /// 1,000 connections per IP address, 100,000 in total, 50 handshakes
    /// per second per address with bursts of 100). Per-user caps do not
    /// apply here: the engine knows no users. `None` turns the engine's caps
    /// off: for a handler that admits by itself, as the hub does (see
    /// [`Hub::engine`](crate::hub::Hub::engine)), or to serve without caps.
    pub connection_limits: Option<ConnectionLimits>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            upgrade_timeout: Duration::from_secs(10),
            max_payload: 1_000_000,
            max_buffered_packets: 4096,
            max_buffered_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::DropVolatileFirst,
            cors_origins: Vec::new(),
            cors_credentials: false,
            allow_polling: true,
            allow_websocket: true,
            allow_upgrades: true,
            websocket_read_buffer: 256,
            connection_limits: Some(ConnectionLimits::default()),
        }
    }
}

impl EngineConfig {
    /// Sets [`ping_interval`](Self::ping_interval).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// Sets [`ping_timeout`](Self::ping_timeout).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }
    /// Sets [`upgrade_timeout`](Self::upgrade_timeout).
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.upgrade_timeout = d;
        self
    }
    /// Sets [`max_payload`](Self::max_payload).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }
    /// Sets [`max_buffered_packets`](Self::max_buffered_packets).
    pub fn max_buffered_packets(mut self, n: usize) -> Self {
        self.max_buffered_packets = n;
        self
    }
    /// Sets [`max_buffered_bytes`](Self::max_buffered_bytes).
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }
    /// Sets [`slow_consumer`](Self::slow_consumer).
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.slow_consumer = policy;
        self
    }
    /// Adds an allowed CORS origin (`*` allows any, without credentials;
    /// see [`cors_origins`](Self::cors_origins)).
    pub fn cors_origin(mut self, origin: impl Into<String>) -> Self {
        self.cors_origins.push(origin.into());
        self
    }
    /// Sets [`cors_credentials`](Self::cors_credentials).
    pub fn cors_credentials(mut self, yes: bool) -> Self {
        self.cors_credentials = yes;
        self
    }
    /// Chooses the transports offered.
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.allow_polling = polling;
        self.allow_websocket = websocket;
        self
    }
    /// Sets [`allow_upgrades`](Self::allow_upgrades).
    pub fn allow_upgrades(mut self, yes: bool) -> Self {
        self.allow_upgrades = yes;
        self
    }
    /// Sets [`connection_limits`](Self::connection_limits) (`None`: the
    /// engine applies no caps of its own).
    ///
    /// # Examples
    /// ```
    /// use tidewire::engine::EngineConfig;
    /// use tidewire::limits::ConnectionLimits;
    /// let config = EngineConfig::default().connection_limits(Some(ConnectionLimits::default().per_ip(Some(10))));
    /// assert_eq!(config.connection_limits.unwrap().per_ip, Some(10));
    /// assert!(EngineConfig::default().connection_limits(None).connection_limits.is_none());
    /// ```
    pub fn connection_limits(mut self, limits: Option<ConnectionLimits>) -> Self {
        self.connection_limits = limits;
        self
    }
}

/// What happens when a session's outbound queue overflows.
///
/// Either way volatile packets are never queued past the queue's soft mark
/// (half of either bound): they are dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the session as a slow consumer at once.
    Disconnect,
    /// First drop the volatile packets still queued; close the session only
    /// if that does not make room.
    #[default]
    DropVolatileFirst,
}

/// A handshake the application refused (connection caps, rates): answered
/// with an HTTP error, before any session exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRefusal {
    /// The HTTP status (429 for limits).
    pub status: http::StatusCode,
    /// A machine-readable code, sent in the JSON body.
    pub code: &'static str,
    /// A human-readable message, sent in the JSON body.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up) when known.
    pub retry_after: Option<Duration>,
}

impl HandshakeRefusal {
    /// `503 server_shutting_down`: what a draining node answers to what it
    /// no longer takes (a handshake, a relay), so a balancer tries another.
    pub fn shutting_down() -> HandshakeRefusal {
        HandshakeRefusal {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            code: "server_shutting_down",
            message: "server shutting down".to_owned(),
            retry_after: None,
        }
    }
}

impl From<ConnectionRefused> for HandshakeRefusal {
    /// 503 at the global cap or the total handshake rate (the server is
    /// full or busy, not the client too eager), 429 otherwise, with the
    /// refusal's code and retry time.
    fn from(refused: ConnectionRefused) -> HandshakeRefusal {
        let status = match refused {
            ConnectionRefused::Global | ConnectionRefused::HandshakeRateTotal(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => http::StatusCode::TOO_MANY_REQUESTS,
        };
        HandshakeRefusal {
            status,
            code: refused.code(),
            message: refused.to_string(),
            retry_after: refused.retry_after(),
        }
    }
}

/// What an [`EngineHandler::admit`] hands to the session it admits (for
/// instance connection-cap permits): kept until the session closes, then
/// dropped.
#[derive(Default)]
pub struct Admitted {
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The engine's own connection slot (see
    /// [`EngineConfig::connection_limits`]): never handed to the handler,
    /// held beside its connection.
    engine_permit: Option<IpPermit>,
}

impl Admitted {
    /// Nothing to hold.
    pub fn none() -> Admitted {
        Admitted::default()
    }

    /// Holds `guard` for the session's life.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Admitted {
        Admitted { guard: Some(Box::new(guard)), engine_permit: None }
    }

    /// The guard, if it is a `T`.
    pub fn take<T: std::any::Any>(self) -> Option<T> {
        self.guard.and_then(|g| (g as Box<dyn std::any::Any>).downcast::<T>().ok()).map(|b| *b)
    }
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("guard", &self.guard.is_some())
            .field("engine_permit", &self.engine_permit.is_some())
            .finish()
    }
}

/// Counters of an engine, for metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Sessions opened.
    pub opened: AtomicU64,
    /// Handshakes refused by the engine's connection caps or the
    /// handler's admission.
    pub refused: AtomicU64,
    /// Sessions closed as slow consumers.
    pub slow_consumers: AtomicU64,
    /// Volatile packets dropped (queue past its soft mark, or dropped to
    /// make room).
    pub volatile_dropped: AtomicU64,
    /// Engine.IO packets handed to the transports.
    pub packets_out: AtomicU64,
    /// Their bytes (as sent on a WebSocket).
    pub bytes_out: AtomicU64,
}

/// What the client's handshake request looked like.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The request URI.
    pub uri: http::Uri,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// When the handshake arrived.
    pub time: SystemTime,
    /// Whether the connection is TLS.
    pub secure: bool,
}

impl RequestInfo {
    /// The first query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why a session closed. The `Display` text is socket.io's reason string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the session or its connection went away.
    #[error("transport close")]
    TransportClose,
    /// The transport failed or the client broke the Engine.IO protocol.
    #[error("transport error")]
    TransportError,
    /// The client did not answer a ping in time.
    #[error("ping timeout")]
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    #[error("parse error")]
    ParseError,
    /// The outbound queue overflowed: the client does not read fast enough.
    #[error("slow consumer")]
    SlowConsumer,
    /// The application closed the session.
    #[error("forced close")]
    ForcedClose,
    /// The server is shutting down.
    #[error("server shutting down")]
    ServerShutdown,
}

/// The application side of one session: receives its messages in order.
///
/// Called from the transport's task; keep it quick (spawn work that waits).
pub trait Connection: Send + 'static {
    /// A message arrived. Returning an error closes the session with it.
    ///
    /// # Errors
    /// The reason to close the session, e.g. [`CloseReason::ParseError`].
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason>;

    /// The session closed. Called once, after the last message.
    fn on_close(&mut self, reason: CloseReason);

    /// Whether this connection closes its session itself when its outbound
    /// queue overflows (see [`on_overflow`](Self::on_overflow)). Asked
    /// once, when the connection is attached. The default (false): the
    /// session closes as a slow consumer at once (after writing what was
    /// queued before the overflow, if the client reads it in time).
    fn cuts_on_overflow(&self) -> bool {
        false
    }

    /// The session's outbound queue overflowed: the client does not read
    /// (a slow consumer). Called (from a task of its own) only when
    /// [`cuts_on_overflow`](Self::cuts_on_overflow) said so: queue what the
    /// client is still owed with [`Session::send_answer`] (everything else
    /// is dropped from now on), then call [`Session::close_after_flush`];
    /// the session closes by itself after [`OVERFLOW_GRACE`] all the same.
    fn on_overflow(&mut self, session: &Session) {
        session.close_after_flush(CloseReason::SlowConsumer);
    }
}

/// Accepts new sessions: the entry point of an application on the engine.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened. Returns the connection that will receive its
    /// messages. `session` may be kept to send messages or close it.
    fn on_open(&self, session: &Session, request: &RequestInfo) -> Box<dyn Connection>;

    /// Decides whether a handshake may open a session, before anything is
    /// allocated for it. What it returns is held by the session until it
    /// closes. The default admits everyone.
    ///
    /// # Errors
    /// A [`HandshakeRefusal`], answered with its HTTP status.
    fn admit(&self, request: &RequestInfo) -> Result<Admitted, HandshakeRefusal> {
        let _ = request;
        Ok(Admitted::none())
    }

    /// [`on_open`](Self::on_open) for a session that [`admit`](Self::admit)
    /// accepted: what it returned must live as long as the connection. The
    /// default keeps it beside the connection; a handler may take it into
    /// its own connection instead (see [`Admitted::take`]).
    fn on_open_admitted(&self, session: &Session, request: &RequestInfo, admitted: Admitted) -> Box<dyn Connection> {
        let conn = self.on_open(session, request);
        hold(conn, admitted.guard)
    }

    /// Whether this node is draining (see `Hub::drain`): it then relays no
    /// new WebSocket for a session of another node, since the relay would
    /// end with this node and send the client back through a reconnect;
    /// the upgrade gets `503`, which a balancer retries on another node
    /// (nginx: `proxy_next_upstream http_503`). The default: never.
    fn is_draining(&self) -> bool {
        false
    }
}

/// `conn`, holding `guard` (if any) until it is dropped.
fn hold(conn: Box<dyn Connection>, guard: Option<Box<dyn std::any::Any + Send + Sync>>) -> Box<dyn Connection> {
    match guard {
        None => conn,
        Some(guard) => Box::new(Holding { conn, _guard: guard }),
    }
}

/// A connection and what its admission handed over (dropped together when
/// the session closes).
struct Holding {
    conn: Box<dyn Connection>,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Connection for Holding {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        self.conn.on_message(frame)
    }

    fn on_close(&mut self, reason: CloseReason) {
        self.conn.on_close(reason);
    }

    fn cuts_on_overflow(&self) -> bool {
        self.conn.cuts_on_overflow()
    }

    fn on_overflow(&mut self, session: &Session) {
        self.conn.on_overflow(session);
    }
}

/// A table of sessions with one configuration and one handler.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: EngineConfig,
    handler: Arc<dyn EngineHandler>,
    /// Enforces [`EngineConfig::connection_limits`] (none when `None`).
    connections: Option<ConnectionCounter>,
    sessions: Mutex<HashMap<Arc<str>, Session>>,
    stats: Arc<EngineStats>,
    /// New sessions for the heartbeat task, started with the first session
    /// (and again if the runtime it ran on has gone).
    heartbeats: Mutex<Option<mpsc::UnboundedSender<session::WeakSession>>>,
    /// Long-polling sessions their clients closed just now.
    client_closes: session::ClientCloses,
    /// Where requests for sessions of other nodes go (a cluster's).
    forward: std::sync::OnceLock<Arc<dyn forward::Forward>>,
    /// Cancelled by [`Engine::close_all`]: the WebSockets this node relays
    /// to other nodes close too (their owners told).
    relays: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.inner.config).field("sessions", &self.session_count()).finish()
    }
}

impl Engine {
    /// An engine serving `handler` with `config`.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use tidewire::engine::{Connection, CloseReason, Engine, EngineConfig, EngineHandler, RequestInfo, Session};
    /// use tidewire::protocol::engine::Frame;
    ///
    /// // An echo server on raw Engine.IO.
    /// struct Echo;
    /// struct EchoConn(Session);
    /// impl EngineHandler for Echo {
    ///     fn on_open(&self, session: &Session, _: &RequestInfo) -> Box<dyn Connection> {
    ///         Box::new(EchoConn(session.clone()))
    ///     }
    /// }
    /// impl Connection for EchoConn {
    ///     fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
    ///         let _ = self.0.send_frame(frame);
    ///         Ok(())
    ///     }
    ///     fn on_close(&mut self, _: CloseReason) {}
    /// }
    /// let engine = Engine::new(EngineConfig::default(), Arc::new(Echo));
    /// assert_eq!(engine.session_count(), 0);
    /// ```
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Engine {
        let epoch = crate::time::now();
        Engine {
            inner: Arc::new(EngineInner {
                connections: config.connection_limits.clone().map(|limits| ConnectionCounter::new(limits, epoch)),
                config,
                handler,
                sessions: Mutex::new(HashMap::new()),
                stats: Arc::default(),
                heartbeats: Mutex::new(None),
                client_closes: session::ClientCloses::default(),
                forward: std::sync::OnceLock::new(),
                relays: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// The open session with id `sid`.
    pub fn session(&self, sid: &str) -> Option<Session> {
        self.sessions().get(sid).cloned()
    }

    /// Sends requests for sessions of other nodes to `forward` (once; a
    /// second call is ignored).
    pub(crate) fn set_forward(&self, forward: Arc<dyn forward::Forward>) {
        let _ = self.inner.forward.set(forward);
    }

    /// Whether the application on this engine is draining
    /// ([`EngineHandler::is_draining`]).
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.handler.is_draining()
    }

    /// Where requests for sessions of other nodes go, if anywhere.
    pub(crate) fn forward(&self) -> Option<&Arc<dyn forward::Forward>> {
        self.inner.forward.get()
    }

    /// A handle that does not keep the engine alive.
    pub(crate) fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// Decides whether `request` may open a session: the engine's
    /// [`connection_limits`](EngineConfig::connection_limits) first, then
    /// the handler's [`EngineHandler::admit`]; a refusal is counted in
    /// [`EngineStats::refused`]. What it returns holds the session's slots.
    ///
    /// # Errors
    /// A [`HandshakeRefusal`]: 429 (503 at the global cap) from the
    /// engine's caps, or the handler's.
    pub fn admit(&self, request: &RequestInfo) -> Result<Admitted, HandshakeRefusal> {
        let engine_permit = match &self.inner.connections {
            Some(counter) => {
                let xff = request.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
                let ip = counter.limits().client_ip(request.remote_addr.ip(), xff);
                match counter.acquire_ip(ip, crate::time::now()) {
                    Ok(permit) => Some(permit),
                    Err(refused) => {
                        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%ip, reason = %refused, "handshake refused by the engine's caps");
                        return Err(refused.into());
                    }
                }
            }
            None => None,
        };
        match self.inner.handler.admit(request) {
            Ok(admitted) => Ok(Admitted { engine_permit, ..admitted }),
            Err(refusal) => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(refusal)
            }
        }
    }

    /// Opens a new session without admission (a custom transport or a
    /// test): neither the engine's caps nor the handler's are asked. See
    /// [`open_admitted`](Self::open_admitted).
    pub fn open_session(&self, request: &RequestInfo, transport: session::TransportKind) -> Session {
        self.open_admitted(request, transport, Admitted::none())
    }

    /// Opens a new session that [`admit`](Self::admit) accepted (the
    /// transport has validated the handshake) and hands it to the handler.
    /// Must be called inside a tokio runtime: it starts the session's
    /// heartbeat.
    pub fn open_admitted(
        &self,
        request: &RequestInfo,
        transport: session::TransportKind,
        admitted: Admitted,
    ) -> Session {
        // With a cluster, the id says which node owns the session.
        let sid: Arc<str> = match self.forward() {
            Some(f) => format!("{}{}", new_id(), f.tag()).into(),
            None => new_id().into(),
        };
        let session =
            Session::new(sid, Arc::downgrade(&self.inner), self.inner.stats.clone(), &self.inner.config, transport);
        self.inner.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.sessions().insert(session.sid_arc(), session.clone());
        // The engine's own slot stays beside the connection; the handler
        // gets (and may take) only what its admission returned.
        let Admitted { guard, engine_permit } = admitted;
        let conn = self.inner.handler.on_open_admitted(&session, request, Admitted { guard, engine_permit: None });
        let engine_permit = engine_permit.map(|p| Box::new(p) as Box<dyn std::any::Any + Send + Sync>);
        session.attach(hold(conn, engine_permit));
        let mut heartbeats = self.inner.heartbeats.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = heartbeats.get_or_insert_with(|| self.start_heartbeats());
        if tx.is_closed() {
            *tx = self.start_heartbeats();
        }
        let _ = tx.send(session.downgrade());
        drop(heartbeats);
        session
    }

    fn start_heartbeats(&self) -> mpsc::UnboundedSender<session::WeakSession> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (interval, timeout) = (self.inner.config.ping_interval, self.inner.config.ping_timeout);
        tokio::spawn(session::heartbeats(rx, interval, timeout));
        tx
    }

    /// Resolves once [`close_all`](Self::close_all) was called: relayed
    /// WebSockets then close.
    pub(crate) fn relays_closing(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.relays.cancelled()
    }

    /// Closes every session with [`CloseReason::ServerShutdown`], and the
    /// WebSockets this node relays to the owners of their sessions (the
    /// owners see `transport close`, so the clients may resume elsewhere).
    pub fn close_all(&self) {
        self.inner.relays.cancel();
        let sessions: Vec<Session> = self.sessions().values().cloned().collect();
        for s in sessions {
            s.close(CloseReason::ServerShutdown);
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Session>> {
        self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An [`Engine`] that may have gone.
#[derive(Clone)]
pub(crate) struct WeakEngine(std::sync::Weak<EngineInner>);

impl WeakEngine {
    /// The engine, while it exists.
    pub(crate) fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

impl EngineInner {
    fn remove(&self, sid: &str) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(sid);
    }
}

pub use session::TransportKind;

/// A handler whose sessions ignore what they receive: the tests of the
/// transports, which look at the engine's side only.
#[cfg(test)]
pub(crate) struct Silent;

#[cfg(test)]
impl Connection for Silent {
    fn on_message(&mut self, _: Frame) -> Result<(), CloseReason> {
        Ok(())
    }
    fn on_close(&mut self, _: CloseReason) {}
}

#[cfg(test)]
impl EngineHandler for Silent {
    fn on_open(&self, _: &Session, _: &RequestInfo) -> Box<dyn Connection> {
        Box::new(Silent)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::limits::Rate;

    /// Opens sessions that do nothing; records the guards its admission
    /// handed over.
    #[derive(Default)]
    struct Quiet {
        guards: Mutex<Vec<Option<u32>>>,
        refuse: bool,
    }

    impl EngineHandler for Quiet {
        fn on_open(&self, _: &Session, _: &RequestInfo) -> Box<dyn Connection> {
            Box::new(Silent)
        }

        fn admit(&self, _: &RequestInfo) -> Result<Admitted, HandshakeRefusal> {
            if self.refuse {
                return Err(HandshakeRefusal {
                    status: http::StatusCode::FORBIDDEN,
                    code: "no",
                    message: "no".into(),
                    retry_after: None,
                });
            }
            Ok(Admitted::new(7u32))
        }

        fn on_open_admitted(&self, s: &Session, r: &RequestInfo, admitted: Admitted) -> Box<dyn Connection> {
            self.guards.lock().unwrap().push(admitted.take::<u32>());
            self.on_open(s, r)
        }
    }

    fn request(last: u8) -> RequestInfo {
        RequestInfo {
            headers: http::HeaderMap::new(),
            query: Vec::new(),
            uri: http::Uri::from_static("/engine.io/?EIO=4&transport=polling"),
            remote_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 40000),
            time: SystemTime::now(),
            secure: false,
        }
    }

    fn engine(limits: Option<ConnectionLimits>) -> (Engine, Arc<Quiet>) {
        let handler = Arc::new(Quiet::default());
        (Engine::new(EngineConfig::default().connection_limits(limits), handler.clone()), handler)
    }

    #[test]
    fn an_engine_caps_connections_by_default_and_the_hubs_leaves_it_to_the_hub() {
        let limits = EngineConfig::default().connection_limits.expect("caps on by default");
        let defaults = ConnectionLimits::default();
        assert_eq!((limits.per_ip, limits.global), (defaults.per_ip, defaults.global));
        assert_eq!(limits.handshakes_per_ip, defaults.handshakes_per_ip);
        let hub = crate::hub::Hub::default();
        assert!(hub.engine(EngineConfig::default()).config().connection_limits.is_none(), "no second count");
    }

    #[tokio::test]
    async fn a_session_holds_its_slot_until_it_closes() {
        let (engine, handler) = engine(Some(ConnectionLimits::none().per_ip(Some(2))));
        let open = |last| {
            let admitted = engine.admit(&request(last))?;
            Ok::<_, HandshakeRefusal>(engine.open_admitted(&request(last), TransportKind::WebSocket, admitted))
        };
        let first = open(1).unwrap();
        let _second = open(1).unwrap();
        let refused = open(1).unwrap_err();
        assert_eq!((refused.status, refused.code), (http::StatusCode::TOO_MANY_REQUESTS, "too_many_connections"));
        assert!(open(2).is_ok(), "another address has its own slots");
        assert_eq!(engine.stats().refused.load(Ordering::Relaxed), 1, "the refusal is counted");
        first.close(CloseReason::TransportClose);
        tokio::task::yield_now().await;
        assert!(open(1).is_ok(), "a closed session gives its slot back");
        // The handler got what its own admission returned, every time.
        assert_eq!(*handler.guards.lock().unwrap(), [Some(7); 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn handshakes_per_address_are_rate_limited() {
        let rate = Rate::per(Duration::from_secs(60), 3);
        let (engine, _) = engine(Some(ConnectionLimits::none().handshakes_per_ip(Some(rate))));
        for _ in 0..3 {
            engine.admit(&request(1)).unwrap();
        }
        let refused = engine.admit(&request(1)).unwrap_err();
        assert_eq!((refused.status, refused.code), (http::StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(engine.admit(&request(1)).is_ok(), "one more after the interval");
    }

    #[test]
    fn the_global_cap_is_503_and_the_handler_is_asked_after_the_engine() {
        let (engine, _) = engine(Some(ConnectionLimits::none().global(Some(1))));
        let held = engine.admit(&request(1)).unwrap();
        let refused = engine.admit(&request(2)).unwrap_err();
        assert_eq!((refused.status, refused.code), (http::StatusCode::SERVICE_UNAVAILABLE, "too_many_connections"));
        drop(held);
        assert!(engine.admit(&request(2)).is_ok(), "an admission never opened gives its slot back");

        let refusing = Arc::new(Quiet { refuse: true, ..Quiet::default() });
        let limits = ConnectionLimits::none().global(Some(1));
        let engine = Engine::new(EngineConfig::default().connection_limits(Some(limits)), refusing);
        assert_eq!(engine.admit(&request(1)).unwrap_err().code, "no");
        assert_eq!(engine.admit(&request(1)).unwrap_err().code, "no", "the handler's refusal freed the engine's slot");
        assert_eq!(engine.stats().refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn without_limits_the_engine_admits_whatever_its_handler_admits() {
        let (engine, _) = engine(None);
        for _ in 0..500 {
            engine.admit(&request(1)).unwrap();
        }
        assert_eq!(engine.stats().refused.load(Ordering::Relaxed), 0);
    }
}
