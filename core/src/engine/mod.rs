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

mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use crate::protocol::engine::Frame;

pub use session::{FLUSH_TIMEOUT, SendError, Session, new_id};

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
    /// The size of a WebSocket connection's own read buffer, held for the
    /// connection's life (it grows for larger frames). The socket is read
    /// in 64 KiB chunks into a buffer shared per thread, so this only
    /// bounds how much is copied at a time: small by default, so idle
    /// connections stay cheap.
    pub websocket_read_buffer: usize,
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
            websocket_read_buffer: 256,
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

/// What an [`EngineHandler::admit`] hands to the session it admits (for
/// instance connection-cap permits): kept until the session closes, then
/// dropped.
#[derive(Default)]
pub struct Admitted(Option<Box<dyn std::any::Any + Send + Sync>>);

impl Admitted {
    /// Nothing to hold.
    pub fn none() -> Admitted {
        Admitted(None)
    }

    /// Holds `guard` for the session's life.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Admitted {
        Admitted(Some(Box::new(guard)))
    }

    /// The guard, if it is a `T`.
    pub fn take<T: std::any::Any>(self) -> Option<T> {
        self.0.and_then(|g| (g as Box<dyn std::any::Any>).downcast::<T>().ok()).map(|b| *b)
    }
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Admitted").field(&self.0.is_some()).finish()
    }
}

/// Counters of an engine, for metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Sessions opened.
    pub opened: AtomicU64,
    /// Handshakes refused by the handler's admission.
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
        match admitted.0 {
            None => conn,
            Some(guard) => Box::new(Holding { conn, _guard: guard }),
        }
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
}

/// A table of sessions with one configuration and one handler.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: EngineConfig,
    handler: Arc<dyn EngineHandler>,
    sessions: Mutex<HashMap<Arc<str>, Session>>,
    stats: Arc<EngineStats>,
    /// New sessions for the heartbeat task, started with the first session
    /// (and again if the runtime it ran on has gone).
    heartbeats: Mutex<Option<mpsc::UnboundedSender<session::WeakSession>>>,
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
        Engine {
            inner: Arc::new(EngineInner {
                config,
                handler,
                sessions: Mutex::new(HashMap::new()),
                stats: Arc::default(),
                heartbeats: Mutex::new(None),
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

    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// Asks the handler whether `request` may open a session (see
    /// [`EngineHandler::admit`]); a refusal is counted.
    ///
    /// # Errors
    /// The handler's [`HandshakeRefusal`].
    pub fn admit(&self, request: &RequestInfo) -> Result<Admitted, HandshakeRefusal> {
        let r = self.inner.handler.admit(request);
        if r.is_err() {
            self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Opens a new session without asking the handler's admission (a
    /// custom transport or a test). See [`open_admitted`](Self::open_admitted).
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
        let session =
            Session::new(Arc::downgrade(&self.inner), self.inner.stats.clone(), &self.inner.config, transport);
        self.inner.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.sessions().insert(session.sid_arc(), session.clone());
        let conn = self.inner.handler.on_open_admitted(&session, request, admitted);
        session.attach(conn);
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

    /// Closes every session with [`CloseReason::ServerShutdown`].
    pub fn close_all(&self) {
        let sessions: Vec<Session> = self.sessions().values().cloned().collect();
        for s in sessions {
            s.close(CloseReason::ServerShutdown);
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Session>> {
        self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EngineInner {
    fn remove(&self, sid: &str) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(sid);
    }
}

pub use session::TransportKind;
