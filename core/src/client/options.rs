//! The Manager's and each socket's options, named and defaulted as
//! socket.io-client names and defaults them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::ClientError;
use super::proxy::Proxy;

/// An Engine.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP long-polling (`transport=polling`).
    Polling,
    /// WebSocket (`transport=websocket`).
    WebSocket,
}

impl TransportKind {
    /// The name on the wire (`polling`, `websocket`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Supplies the CONNECT packet's auth payload, called before every
/// (re)connection of a namespace so that a token can be refreshed
/// (socket.io-client's `auth` given as a function).
pub trait AuthProvider: Send + Sync + 'static {
    /// The auth payload: a JSON object, or `None` for none.
    fn auth(&self) -> Option<Value>;
}

impl<F: Fn() -> Option<Value> + Send + Sync + 'static> AuthProvider for F {
    fn auth(&self) -> Option<Value> {
        self()
    }
}

/// The auth payload of a namespace's CONNECT.
#[derive(Clone, Default)]
pub enum Auth {
    /// No auth payload.
    #[default]
    None,
    /// The same object on every connection.
    Value(Value),
    /// Asked for on every connection.
    Provider(Arc<dyn AuthProvider>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Value(v) => f.debug_tuple("Value").field(v).finish(),
            Auth::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

impl Auth {
    /// The payload for the next CONNECT (a provider is called).
    pub(crate) fn resolve(&self) -> Option<Value> {
        match self {
            Auth::None => None,
            Auth::Value(v) => Some(v.clone()),
            Auth::Provider(p) => p.auth(),
        }
    }
}

/// How a [`Manager`](super::Manager) connects and reconnects; the defaults
/// are socket.io-client's.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Reconnect after an unexpected disconnection (default `true`).
    pub reconnection: bool,
    /// Attempts before giving up (default `None`: forever).
    pub reconnection_attempts: Option<u32>,
    /// The first reconnection delay (default 1 s), doubled at each attempt.
    pub reconnection_delay: Duration,
    /// The largest reconnection delay (default 5 s).
    pub reconnection_delay_max: Duration,
    /// Jitter: each delay moves by up to this fraction either way
    /// (default 0.5; 0 to 1).
    pub randomization_factor: f64,
    /// How long opening the connection may take (default 20 s).
    pub timeout: Duration,
    /// The Engine.IO path on the server (default `/socket.io/`).
    pub path: String,
    /// Extra query parameters of every request.
    pub query: BTreeMap<String, String>,
    /// Extra HTTP headers of every request (polling requests and the
    /// WebSocket handshake).
    pub extra_headers: BTreeMap<String, String>,
    /// Transports in order of preference (default polling, then an upgrade
    /// to WebSocket). When the first cannot be opened, the next is tried.
    pub transports: Vec<TransportKind>,
    /// Upgrade from polling to WebSocket when the server offers it
    /// (default `true`).
    pub upgrade: bool,
    /// Connect as soon as a socket is created (default `true`).
    pub auto_connect: bool,
    /// The default ack timeout of every emit with ack (default `None`:
    /// wait until the answer or a disconnection).
    pub ack_timeout: Option<Duration>,
    /// How many times an emit is sent again when its ack does not come in
    /// time (default 0). Retries keep their ack id, so the server's retry
    /// detection answers a retry of a handled event without running it again.
    pub retries: u32,
    /// Packets each socket keeps while offline (default 1000); an emit
    /// beyond fails with [`ClientError::BufferFull`].
    pub send_buffer_capacity: usize,
    /// Events each socket keeps waiting for its listeners (default 1000).
    /// Listeners run off the connection's task, one at a time and in
    /// order, so that a slow one never delays the heartbeat; when this
    /// many events wait, newer ones are dropped (and counted:
    /// [`Socket::dropped_events`](super::Socket::dropped_events)); the
    /// server's ack request of a dropped event is not answered (its ack
    /// times out there). The connection itself never pays for a slow
    /// listener.
    pub listener_queue_capacity: usize,
    /// The largest message accepted from the server, in bytes (default
    /// 16 MiB): larger ones end the connection with a transport error.
    pub max_payload: usize,
    /// SHA-256 pins (base64) of server public keys (the certificate's
    /// SubjectPublicKeyInfo): when not empty, a TLS server whose
    /// certificate matches none is refused, after the OS trust store
    /// accepted it.
    pub pinned_keys: Vec<String>,
    /// Root certificates trusted besides the OS trust store (each PEM, or
    /// one DER certificate): a private CA, a development server's
    /// self-signed certificate. Not on Android, where an app trusts extra
    /// CAs through its network security configuration.
    pub root_certificates: Vec<Vec<u8>>,
    /// The HTTP proxy connections are tunnelled through (default
    /// [`Proxy::System`]: `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`).
    pub proxy: Proxy,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            timeout: Duration::from_millis(20_000),
            path: "/socket.io/".to_owned(),
            query: BTreeMap::new(),
            extra_headers: BTreeMap::new(),
            transports: vec![TransportKind::Polling, TransportKind::WebSocket],
            upgrade: true,
            auto_connect: true,
            ack_timeout: None,
            retries: 0,
            send_buffer_capacity: 1000,
            listener_queue_capacity: 1000,
            max_payload: 16 << 20,
            pinned_keys: Vec::new(),
            root_certificates: Vec::new(),
            proxy: Proxy::System,
        }
    }
}

impl ManagerOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`ClientError::InvalidOption`] naming the first bad option.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |name: &str, why: &str| Err(ClientError::InvalidOption(format!("{name}: {why}")));
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return bad("randomizationFactor", "must be between 0 and 1");
        }
        if self.reconnection_delay_max < self.reconnection_delay {
            return bad("reconnectionDelayMax", "must not be below reconnectionDelay");
        }
        if self.transports.is_empty() {
            return bad("transports", "at least one transport is needed");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be positive");
        }
        if self.send_buffer_capacity == 0 {
            return bad("sendBufferCapacity", "must be positive");
        }
        if self.listener_queue_capacity == 0 {
            return bad("listenerQueueCapacity", "must be positive");
        }
        if self.max_payload < 1024 {
            return bad("maxPayload", "must be at least 1024 bytes");
        }
        for (name, value) in &self.extra_headers {
            if http::HeaderName::try_from(name.as_str()).is_err()
                || http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return bad("extraHeaders", &format!("invalid header {name:?}"));
            }
        }
        for root in &self.root_certificates {
            if let Err(e) = super::tls::parse_roots(root) {
                return bad("rootCertificates", &e);
            }
        }
        super::proxy::Route::new(&self.proxy)?;
        for pin in &self.pinned_keys {
            if super::tls::decode_pin(pin).is_none() {
                return bad("pinnedKeys", &format!("{pin:?} is not a base64 SHA-256 digest"));
            }
        }
        Ok(())
    }
}

/// A socket's options.
#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    /// The CONNECT auth payload, or a provider asked on every connection.
    pub auth: Auth,
}

/// How one emit is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitOptions {
    /// Dropped, not buffered, while the socket is not connected.
    pub volatile: bool,
    /// This emit's ack timeout (default: the manager's `ack_timeout`).
    pub timeout: Option<Duration>,
}
