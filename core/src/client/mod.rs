//! A Socket.IO v5 client, the one Rust programs, tests and the mobile
//! bindings (Swift, Kotlin) use.
//!
//! # Manager and sockets
//! A [`Manager`] holds one Engine.IO connection to a server; each
//! [`Socket`] is one namespace over it ([`Manager::socket`]), as in
//! socket.io-client. The connection opens over HTTP long-polling and
//! upgrades to WebSocket (or over the [`transports`](ManagerOptions::transports)
//! given, trying the next when one cannot be opened), answers the
//! server's heartbeat and treats `pingInterval + pingTimeout` of silence as
//! a dead link.
//!
//! # Reconnection
//! A lost connection is reopened after an exponential backoff with jitter
//! ([`Backoff`], socket.io-client's defaults: 1 s doubling to 5 s, ±50%),
//! forever unless `reconnection_attempts` says otherwise. Listeners stay;
//! each socket sends its CONNECT again, asking its [`AuthProvider`] for a
//! fresh payload, with the recovery `pid` and `offset` when the server
//! uses connection state recovery: [`SocketState::Connected`] then says
//! whether the session was `recovered`, and the events missed meanwhile
//! arrive in order. The app's lifecycle hints
//! ([`Manager::network_path_changed`], ...) reconnect at once.
//!
//! # No lost messages
//! An emit while the socket is not connected waits in its bounded send
//! buffer and goes out in order once connected (a `volatile` emit is
//! dropped instead). Acks have timeouts and fail with
//! [`ClientError::Disconnected`] when the connection drops after their
//! event was sent; `retries` sends an unanswered event again with the same
//! ack id, which the server's retry detection recognises.
//!
//! # Threads
//! Listeners never run on the connection's task: each socket queues its
//! events for its listeners (bounded by
//! [`listener_queue_capacity`](ManagerOptions::listener_queue_capacity)),
//! and they run one at a time, in the order events arrive, on tokio's
//! blocking pool, never under a lock. A listener may block (longer than
//! the server's heartbeat, even) without costing the connection; while it
//! does, the socket's later events wait, and beyond the queue's capacity
//! they are dropped and counted ([`Socket::dropped_events`]). The answer
//! to a server's ack request goes out when the listeners have run, on the
//! connection it was asked on. State listeners run the same way, on a
//! queue of their own.
//!
//! # Proxies and TLS
//! Connections go through the HTTP proxy the environment names
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) or the one
//! [`ManagerOptions::proxy`] gives, tunnelled with `CONNECT`. TLS is the
//! platform's ([`ManagerOptions::root_certificates`] adds roots,
//! [`ManagerOptions::pinned_keys`] pins the server's key).
//!
//! # Payload limits
//! The server's handshake announces its `maxPayload`. Long-polling
//! uploads are split into POST bodies no larger than it (as
//! engine.io-client does); a packet larger than it is never sent (the
//! server would end the session): [`Socket::emit`] fails with
//! [`ClientError::PayloadTooLarge`] once the limit is known, an emit with
//! an ack fails through its ack, and an emit that waited offline before
//! the first handshake is reported to [`Socket::on_emit_error`].

mod backoff;
mod buffer;
mod dispatch;
mod legacy;
mod link;
mod listeners;
mod manager;
mod options;
mod proxy;
mod socket;
mod state;
mod tls;
mod url;

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

pub use backoff::Backoff;
pub use buffer::BufferFull;
pub use legacy::{Client, ClientConfig, ClientState};
pub use listeners::ListenerId;
pub use manager::{Manager, ManagerState};
pub use options::{Auth, AuthProvider, EmitOptions, ManagerOptions, SocketOptions, TransportKind};
pub use proxy::Proxy;
pub use socket::{EmitErrorListener, Listener, Socket, SocketState};
pub use state::StateListener;
pub use tls::public_key_pin;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `http(s)://` or `ws(s)://` URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// An option is out of range or malformed.
    #[error("invalid option {0}")]
    InvalidOption(String),
    /// A bad argument (a reserved event name, malformed arguments).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The connection could not be made (network, TLS, HTTP, handshake).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The server refused the namespace (CONNECT_ERROR), with its message
    /// and data.
    #[error("connection refused: {message}")]
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, if any.
        data: Option<Value>,
    },
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The socket disconnected before the answer came.
    #[error("disconnected")]
    Disconnected,
    /// A packet of `size` bytes is larger than the server's `maxPayload`
    /// (`max`): it is not sent, the session goes on.
    #[error("the packet ({size} bytes) is larger than the server's maxPayload ({max} bytes)")]
    PayloadTooLarge {
        /// The packet's size on the transport, in bytes.
        size: usize,
        /// The server's `maxPayload`.
        max: usize,
    },
    /// The offline send buffer is full.
    #[error("the send buffer is full ({capacity} packets)")]
    BufferFull {
        /// The buffer's capacity.
        capacity: usize,
    },
}

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs app code (a listener, maybe in another language) so that a panic
/// in it does not take the connection down.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!("a client listener panicked");
            None
        }
    }
}
