//! Tidewire's Socket.IO client for Swift and Kotlin (UniFFI): a thin layer
//! over `tidewire::client`'s Manager and sockets. Arguments cross as JSON
//! text (an array) plus binary attachments, the placeholders of which
//! Socket.IO's own format describes (`tidewire::embed::args`); the client
//! runs on a runtime of its own, so callers may await from any executor
//! (Swift concurrency, Kotlin coroutines, Python asyncio, ...).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tidewire::client::{self, ListenerId, Manager};
use tidewire::embed::args::{payload_from_parts, payload_to_parts};
use tidewire::protocol::socketio::Payload;

uniffi::setup_scaffolding!();

/// The runtime the clients run on (two worker threads, started on first use).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tidewire-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tidewire client runtime: {e}"))
    })
}

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// The URL is not a `http(s)://` or `ws(s)://` URL.
    #[error("invalid url: {message}")]
    InvalidUrl {
        /// The URL.
        message: String,
    },
    /// An option is out of range or malformed.
    #[error("invalid option {message}")]
    InvalidOption {
        /// Which, and why.
        message: String,
    },
    /// A bad argument (arguments that are not a JSON array, a reserved
    /// event name, an auth payload that is not an object).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong.
        message: String,
    },
    /// The connection could not be made.
    #[error("connection failed: {message}")]
    Connect {
        /// The cause.
        message: String,
    },
    /// The server refused the namespace (its middleware said no).
    #[error("connection refused: {message}")]
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, as JSON, if any.
        data_json: Option<String>,
    },
    /// The server broke the protocol.
    #[error("protocol error: {message}")]
    Protocol {
        /// What it did.
        message: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The socket disconnected before the answer came.
    #[error("disconnected")]
    Disconnected,
    /// A packet of `size` bytes is larger than the server's `maxPayload`
    /// (`max`): it was not sent; the connection goes on.
    #[error("the packet ({size} bytes) is larger than the server's maxPayload ({max} bytes)")]
    PayloadTooLarge {
        /// The packet's size on the transport, in bytes.
        size: u64,
        /// The server's `maxPayload`.
        max: u64,
    },
    /// The offline send buffer is full.
    #[error("the send buffer is full ({capacity} packets)")]
    BufferFull {
        /// Its capacity.
        capacity: u64,
    },
}

impl From<client::ClientError> for ClientError {
    fn from(e: client::ClientError) -> ClientError {
        use client::ClientError as E;
        match e {
            E::InvalidUrl(message) => ClientError::InvalidUrl { message },
            E::InvalidOption(message) => ClientError::InvalidOption { message },
            E::InvalidArgument(message) => ClientError::InvalidArgument { message },
            E::Connect(message) => ClientError::Connect { message },
            E::Refused { message, data } => ClientError::Refused { message, data_json: data.map(|d| d.to_string()) },
            E::Protocol(message) => ClientError::Protocol { message },
            E::Timeout => ClientError::Timeout,
            E::BufferFull { capacity } => ClientError::BufferFull { capacity: capacity as u64 },
            E::PayloadTooLarge { size, max } => ClientError::PayloadTooLarge { size: size as u64, max: max as u64 },
            _ => ClientError::Disconnected,
        }
    }
}

fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::InvalidArgument { message: message.into() }
}

/// Event or ack arguments: a JSON array whose binary values are
/// placeholders `{"_placeholder":true,"num":i}` pointing into `binary`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Args {
    /// The arguments, a JSON array.
    pub json: String,
    /// The binary attachments, in placeholder order.
    #[uniffi(default = [])]
    pub binary: Vec<Vec<u8>>,
}

impl Args {
    fn into_payload(self) -> Result<Payload, ClientError> {
        let attachments = self.binary.into_iter().map(Bytes::from).collect();
        payload_from_parts(&self.json, attachments).map_err(|e| invalid(e.to_string()))
    }

    fn from_payload(payload: Payload) -> Args {
        let (json, attachments) = payload_to_parts(payload);
        Args { json, binary: attachments.into_iter().map(|b| b.to_vec()).collect() }
    }
}

/// An Engine.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl From<Transport> for client::TransportKind {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Polling => client::TransportKind::Polling,
            Transport::WebSocket => client::TransportKind::WebSocket,
        }
    }
}

impl From<client::TransportKind> for Transport {
    fn from(t: client::TransportKind) -> Self {
        match t {
            client::TransportKind::Polling => Transport::Polling,
            client::TransportKind::WebSocket => Transport::WebSocket,
        }
    }
}

/// The HTTP proxy the connections are tunnelled through (`CONNECT`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Proxy {
    /// As the environment says (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    /// Apps read the platform's proxy settings themselves and pass `Url`.
    System,
    /// No proxy.
    Direct,
    /// This proxy: `http://[user:password@]host:port`.
    Url {
        /// The proxy's URL.
        url: String,
    },
}

impl From<Proxy> for client::Proxy {
    fn from(p: Proxy) -> Self {
        match p {
            Proxy::System => client::Proxy::System,
            Proxy::Direct => client::Proxy::Direct,
            Proxy::Url { url } => client::Proxy::Url(url),
        }
    }
}

/// A manager's options: socket.io-client's, with its defaults.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ManagerOptions {
    /// Reconnect after an unexpected disconnection.
    #[uniffi(default = true)]
    pub reconnection: bool,
    /// Attempts before giving up (`nil`: forever).
    #[uniffi(default = None)]
    pub reconnection_attempts: Option<u32>,
    /// The first reconnection delay, doubled at each attempt.
    #[uniffi(default = 1000)]
    pub reconnection_delay_ms: u64,
    /// The largest reconnection delay.
    #[uniffi(default = 5000)]
    pub reconnection_delay_max_ms: u64,
    /// Jitter, 0 to 1.
    #[uniffi(default = 0.5)]
    pub randomization_factor: f64,
    /// How long opening the connection may take.
    #[uniffi(default = 20000)]
    pub timeout_ms: u64,
    /// The Engine.IO path.
    #[uniffi(default = "/socket.io/")]
    pub path: String,
    /// Extra query parameters.
    #[uniffi(default)]
    pub query: HashMap<String, String>,
    /// Extra HTTP headers (polling requests and the WebSocket handshake).
    #[uniffi(default)]
    pub extra_headers: HashMap<String, String>,
    /// Transports in order (`nil`: polling, then an upgrade to WebSocket).
    #[uniffi(default = None)]
    pub transports: Option<Vec<Transport>>,
    /// Upgrade from polling to WebSocket.
    #[uniffi(default = true)]
    pub upgrade: bool,
    /// Connect as soon as a socket is made.
    #[uniffi(default = true)]
    pub auto_connect: bool,
    /// The default ack timeout (`nil`: until the answer or a disconnection).
    #[uniffi(default = None)]
    pub ack_timeout_ms: Option<u64>,
    /// Times an unacknowledged emit is sent again (same ack id).
    #[uniffi(default = 0)]
    pub retries: u32,
    /// Packets each socket buffers while offline.
    #[uniffi(default = 1000)]
    pub send_buffer_capacity: u32,
    /// Events each socket keeps waiting for its listeners, which run off
    /// the connection (a slow listener never costs it); newer events
    /// beyond are dropped and counted (`Socket.droppedEvents()`).
    #[uniffi(default = 1000)]
    pub listener_queue_capacity: u32,
    /// The largest message accepted from the server, in bytes.
    #[uniffi(default = 16777216)]
    pub max_payload: u64,
    /// Base64 SHA-256 pins of the server's public key (SPKI); empty: the
    /// OS trust store alone decides.
    #[uniffi(default = [])]
    pub pinned_keys: Vec<String>,
    /// Root certificates trusted besides the OS trust store, each PEM or
    /// one DER certificate (a private CA, a development server). Not on
    /// Android: trust extra CAs in the app's network security config.
    #[uniffi(default = [])]
    pub root_certificates: Vec<Vec<u8>>,
    /// The HTTP proxy (`nil`: as the environment says).
    #[uniffi(default = None)]
    pub proxy: Option<Proxy>,
}

impl TryFrom<ManagerOptions> for client::ManagerOptions {
    type Error = ClientError;

    fn try_from(o: ManagerOptions) -> Result<Self, ClientError> {
        let d = client::ManagerOptions::default();
        Ok(client::ManagerOptions {
            reconnection: o.reconnection,
            reconnection_attempts: o.reconnection_attempts,
            reconnection_delay: Duration::from_millis(o.reconnection_delay_ms),
            reconnection_delay_max: Duration::from_millis(o.reconnection_delay_max_ms),
            randomization_factor: o.randomization_factor,
            timeout: Duration::from_millis(o.timeout_ms),
            path: o.path,
            query: o.query.into_iter().collect(),
            extra_headers: o.extra_headers.into_iter().collect(),
            transports: o.transports.map_or(d.transports, |t| t.into_iter().map(Into::into).collect()),
            upgrade: o.upgrade,
            auto_connect: o.auto_connect,
            ack_timeout: o.ack_timeout_ms.map(Duration::from_millis),
            retries: o.retries,
            send_buffer_capacity: o.send_buffer_capacity as usize,
            listener_queue_capacity: o.listener_queue_capacity as usize,
            max_payload: usize::try_from(o.max_payload).unwrap_or(usize::MAX),
            pinned_keys: o.pinned_keys,
            root_certificates: o.root_certificates,
            proxy: o.proxy.map_or(client::Proxy::System, Into::into),
        })
    }
}

/// Where a socket stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SocketState {
    /// Waiting for the connection and the server's answer.
    Connecting,
    /// Joined the namespace as `sid`; `recovered` when the server restored
    /// the previous session (missed events replayed).
    Connected {
        /// The socket id.
        sid: String,
        /// Whether the session was recovered.
        recovered: bool,
    },
    /// Not connected, for `reason`; `will_reconnect` while the manager
    /// reconnects.
    Disconnected {
        /// Why (socket.io's reasons).
        reason: String,
        /// Whether a reconnection is under way.
        will_reconnect: bool,
    },
    /// The server refused the namespace; not retried until `connect()`.
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, as JSON, if any.
        data_json: Option<String>,
    },
}

impl From<client::SocketState> for SocketState {
    fn from(s: client::SocketState) -> SocketState {
        match s {
            client::SocketState::Connecting => SocketState::Connecting,
            client::SocketState::Connected { sid, recovered } => SocketState::Connected { sid, recovered },
            client::SocketState::Disconnected { reason, will_reconnect } => {
                SocketState::Disconnected { reason, will_reconnect }
            }
            client::SocketState::Refused { message, data } => {
                SocketState::Refused { message, data_json: data.map(|d| d.to_string()) }
            }
        }
    }
}

/// Where a manager's connection stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ManagerState {
    /// No socket wants a connection.
    Idle,
    /// Opening (attempt 0: the first connection).
    Opening {
        /// The reconnection attempt.
        attempt: u32,
    },
    /// Connected over `transport`.
    Open {
        /// The transport in use.
        transport: Transport,
    },
    /// Waiting `delay_ms` before attempt `attempt`, after `error`.
    Waiting {
        /// The attempt to come.
        attempt: u32,
        /// The backoff delay.
        delay_ms: u64,
        /// Why the last connection ended or failed.
        error: String,
    },
    /// Stopped (closed by the app, or every attempt failed).
    Closed {
        /// Why.
        reason: String,
    },
}

impl From<client::ManagerState> for ManagerState {
    fn from(s: client::ManagerState) -> ManagerState {
        match s {
            client::ManagerState::Opening { attempt } => ManagerState::Opening { attempt },
            client::ManagerState::Open { transport } => ManagerState::Open { transport: transport.into() },
            client::ManagerState::Waiting { attempt, delay, error } => {
                ManagerState::Waiting { attempt, delay_ms: delay.as_millis() as u64, error }
            }
            client::ManagerState::Closed { reason } => ManagerState::Closed { reason },
            _ => ManagerState::Idle,
        }
    }
}

/// Receives events (implemented in Swift or Kotlin). The value the first
/// listener returns answers a server's ack request, after every listener
/// ran (`nil` from all: an empty answer).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// `event` arrived with `args`.
    fn on_event(&self, event: String, args: Args) -> Option<Args>;
}

/// Hears of emits that failed after they returned: one that waited
/// offline and turned out larger than the server's `maxPayload` (an emit
/// with an ack fails through its ack instead).
#[uniffi::export(with_foreign)]
pub trait EmitErrorListener: Send + Sync {
    /// The emit of `event` failed, for the reason in `message`.
    fn on_emit_error(&self, event: String, message: String);
}

/// Receives a socket's state changes, in order.
#[uniffi::export(with_foreign)]
pub trait SocketStateListener: Send + Sync {
    /// The state changed.
    fn on_state(&self, state: SocketState);
}

/// Receives a manager's state changes, in order.
#[uniffi::export(with_foreign)]
pub trait ManagerStateListener: Send + Sync {
    /// The state changed.
    fn on_state(&self, state: ManagerState);
}

/// Gives the CONNECT auth payload, asked on every (re)connection so that
/// tokens can be refreshed.
#[uniffi::export(with_foreign)]
pub trait AuthProvider: Send + Sync {
    /// A JSON object, or `nil` for no auth payload.
    fn auth_json(&self) -> Option<String>;
}

struct ForeignAuth(Arc<dyn AuthProvider>);

impl client::AuthProvider for ForeignAuth {
    fn auth(&self) -> Option<Value> {
        let json = self.0.auth_json()?;
        match serde_json::from_str::<Value>(&json) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => {
                tracing::warn!("the auth provider's answer is not a JSON object: no auth sent");
                None
            }
        }
    }
}

/// A registered listener; `cancel()` removes it (and releases it).
#[derive(uniffi::Object)]
pub struct Subscription {
    cancel: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Subscription {
    fn new(f: impl FnOnce() + Send + 'static) -> Arc<Subscription> {
        Arc::new(Subscription { cancel: Mutex::new(Some(Box::new(f))) })
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivery to the listener; later calls do nothing.
    pub fn cancel(&self) {
        let f = self.cancel.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(f) = f {
            f();
        }
    }
}

/// One connection to a server shared by several namespaces. Releasing it
/// and its sockets closes the connection.
#[derive(uniffi::Object)]
pub struct SocketManager {
    inner: Manager,
}

#[uniffi::export]
impl SocketManager {
    /// A manager of `url` (`http(s)://` or `ws(s)://`). Nothing connects
    /// until a socket does.
    #[uniffi::constructor]
    pub fn new(url: String, options: ManagerOptions) -> Result<Arc<SocketManager>, ClientError> {
        let _rt = runtime().enter();
        let inner = Manager::new(&url, options.try_into()?)?;
        Ok(Arc::new(SocketManager { inner }))
    }

    /// The socket of `namespace` (the same one for the same name), with a
    /// fixed auth payload (`auth_json`, a JSON object) or a provider asked
    /// on every connection. It connects now unless `auto_connect` is off.
    pub fn socket(
        &self,
        namespace: String,
        auth_json: Option<String>,
        auth_provider: Option<Arc<dyn AuthProvider>>,
    ) -> Result<Arc<Socket>, ClientError> {
        let auth = match (auth_json, auth_provider) {
            (Some(_), Some(_)) => return Err(invalid("give auth_json or auth_provider, not both")),
            (None, Some(p)) => client::Auth::Provider(Arc::new(ForeignAuth(p))),
            (Some(json), None) => match serde_json::from_str::<Value>(&json) {
                Ok(v @ Value::Object(_)) => client::Auth::Value(v),
                _ => return Err(invalid("auth must be a JSON object")),
            },
            (None, None) => client::Auth::None,
        };
        let _rt = runtime().enter();
        Ok(Arc::new(Socket { inner: self.inner.socket(&namespace, client::SocketOptions { auth }) }))
    }

    /// Opens the connection.
    pub fn open(&self) {
        self.inner.open();
    }

    /// Disconnects every socket and closes the connection, no reconnection.
    pub fn close(&self) {
        self.inner.close();
    }

    /// The current state.
    pub fn state(&self) -> ManagerState {
        self.inner.state().into()
    }

    /// Calls `listener` with every state change from now on.
    pub fn on_state(&self, listener: Arc<dyn ManagerStateListener>) -> Arc<Subscription> {
        let id = self.inner.on_state(move |s: &client::ManagerState| listener.on_state(s.clone().into()));
        let manager = self.inner.clone();
        Subscription::new(move || {
            manager.off_state(id);
        })
    }

    /// The app went to the background: reconnection pauses.
    pub fn app_did_enter_background(&self) {
        self.inner.app_did_enter_background();
    }

    /// The app comes back: reconnect now if needed.
    pub fn app_will_enter_foreground(&self) {
        self.inner.app_will_enter_foreground();
    }

    /// The network path changed: reconnect now.
    pub fn network_path_changed(&self) {
        self.inner.network_path_changed();
    }
}

/// One namespace over a manager's connection.
#[derive(uniffi::Object)]
pub struct Socket {
    inner: client::Socket,
}

struct Foreign(Arc<dyn EventListener>);

impl client::Listener for Foreign {
    fn on_event(&self, event: &str, args: &Payload) -> Option<Payload> {
        let answer = self.0.on_event(event.to_owned(), Args::from_payload(args.clone()))?;
        match answer.into_payload() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "a listener's answer is not valid arguments: answered empty");
                Some(Payload::default())
            }
        }
    }
}

impl Socket {
    fn subscription(&self, id: ListenerId) -> Arc<Subscription> {
        let socket = self.inner.clone();
        Subscription::new(move || {
            socket.off(id);
        })
    }
}

#[uniffi::export]
impl Socket {
    /// The namespace.
    pub fn namespace(&self) -> String {
        self.inner.namespace().to_owned()
    }

    /// Connects (again after a refusal or `disconnect()`).
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Leaves the namespace; no reconnection. Pending acks fail.
    pub fn disconnect(&self) {
        self.inner.disconnect();
    }

    /// The current state.
    pub fn state(&self) -> SocketState {
        self.inner.state().into()
    }

    /// The socket id while connected.
    pub fn id(&self) -> Option<String> {
        self.inner.id()
    }

    /// Whether the last connection recovered the previous session.
    pub fn recovered(&self) -> bool {
        self.inner.recovered()
    }

    /// Calls `listener` for each `event`.
    pub fn on(&self, event: String, listener: Arc<dyn EventListener>) -> Arc<Subscription> {
        self.subscription(self.inner.on(&event, Foreign(listener)))
    }

    /// Calls `listener` for the next `event` only.
    pub fn once(&self, event: String, listener: Arc<dyn EventListener>) -> Arc<Subscription> {
        self.subscription(self.inner.once(&event, Foreign(listener)))
    }

    /// Calls `listener` for every event, before the event's own listeners.
    pub fn on_any(&self, listener: Arc<dyn EventListener>) -> Arc<Subscription> {
        self.subscription(self.inner.on_any(Foreign(listener)))
    }

    /// Removes every listener of `event`.
    pub fn off(&self, event: String) {
        self.inner.off_event(&event);
    }

    /// Removes every catch-all listener.
    pub fn off_any(&self) {
        self.inner.off_any();
    }

    /// Calls `listener` with every state change from now on.
    pub fn on_state(&self, listener: Arc<dyn SocketStateListener>) -> Arc<Subscription> {
        self.subscription(self.inner.on_state(move |s: &client::SocketState| listener.on_state(s.clone().into())))
    }

    /// Calls `listener` when an emit fails after it returned (it waited
    /// offline and is larger than the server's `maxPayload`).
    pub fn on_emit_error(&self, listener: Arc<dyn EmitErrorListener>) -> Arc<Subscription> {
        self.subscription(self.inner.on_emit_error(move |event: &str, error: &client::ClientError| {
            listener.on_emit_error(event.to_owned(), error.to_string());
        }))
    }

    /// Events dropped because the listener queue was full (listeners
    /// slower than the events coming in).
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped_events()
    }

    /// Sends `event`; buffered while offline, sent in order once connected.
    pub fn emit(&self, event: String, args: Args) -> Result<(), ClientError> {
        Ok(self.inner.emit(&event, args.into_payload()?)?)
    }

    /// Sends `event` now or never: dropped while offline.
    pub fn emit_volatile(&self, event: String, args: Args) -> Result<(), ClientError> {
        let opts = client::EmitOptions { volatile: true, ..client::EmitOptions::default() };
        Ok(self.inner.emit_with(&event, args.into_payload()?, opts)?)
    }

    /// Sends `event` and returns the server's answer; `timeout_ms`
    /// overrides the manager's `ack_timeout_ms`.
    pub async fn emit_with_ack(&self, event: String, args: Args, timeout_ms: Option<u64>) -> Result<Args, ClientError> {
        let payload = args.into_payload()?;
        let socket = self.inner.clone();
        let timeout = timeout_ms.map(Duration::from_millis);
        let reply = runtime()
            .spawn(async move { socket.emit_with_ack(&event, payload, timeout).await })
            .await
            .map_err(|_| ClientError::Disconnected)??;
        Ok(Args::from_payload(reply))
    }
}

/// The pin of a DER certificate for `pinned_keys`: base64 SHA-256 of its
/// public key (SPKI); `nil` when it is not a certificate.
#[uniffi::export]
pub fn public_key_pin(certificate_der: Vec<u8>) -> Option<String> {
    client::public_key_pin(&certificate_der)
}

/// The version of the Tidewire core.
#[uniffi::export]
pub fn core_version() -> String {
    tidewire::VERSION.to_owned()
}
