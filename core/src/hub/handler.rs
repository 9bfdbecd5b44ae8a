//! Handler traits. They are object-safe (`Arc<dyn ...>`) so that every
//! binding can implement them by calling into its language; closures
//! implement them too, for Rust users.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use serde_json::Value;

use super::{DisconnectReason, Event, Handshake, Socket};

/// A boxed, sendable future: what handler methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a connect middleware grants a socket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    /// Data attached to the socket (`socket.data` in socket.io). Objects
    /// from several middlewares are merged, later keys winning.
    pub data: Option<Value>,
    /// The user the socket belongs to, if the middleware authenticated one.
    pub user_id: Option<String>,
}

impl Admission {
    /// Admits the socket with nothing attached.
    pub fn accept() -> Admission {
        Admission::default()
    }

    /// Admits the socket as user `id`.
    pub fn user(id: impl Into<String>) -> Admission {
        Admission { user_id: Some(id.into()), data: None }
    }

    /// Attaches `data` to the socket.
    pub fn with_data(mut self, data: Value) -> Admission {
        self.data = Some(data);
        self
    }

    pub(crate) fn merge(&mut self, other: Admission) {
        if other.user_id.is_some() {
            self.user_id = other.user_id;
        }
        match (&mut self.data, other.data) {
            (Some(Value::Object(mine)), Some(Value::Object(theirs))) => mine.extend(theirs),
            (mine, Some(theirs)) => *mine = Some(theirs),
            (_, None) => {}
        }
    }
}

/// A refused CONNECT: the client gets CONNECT_ERROR `{"message", "data"}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// Shown to the client as `err.message`.
    pub message: String,
    /// Optional details, shown to the client as `err.data`.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with `message` and no data.
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError { message: message.into(), data: None }
    }

    /// Adds details for the client.
    pub fn with_data(mut self, data: Value) -> ConnectError {
        self.data = Some(data);
        self
    }
}

/// Decides whether a socket may connect to a namespace (socket.io's
/// `io.use`). Runs before the socket exists; sees the handshake.
pub trait ConnectMiddleware: Send + Sync + 'static {
    /// Admits or refuses the connection.
    fn call(&self, handshake: Arc<Handshake>) -> BoxFuture<Result<Admission, ConnectError>>;
}

impl<F, Fut> ConnectMiddleware for F
where
    F: Fn(Arc<Handshake>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Admission, ConnectError>> + Send + 'static,
{
    fn call(&self, handshake: Arc<Handshake>) -> BoxFuture<Result<Admission, ConnectError>> {
        Box::pin(self(handshake))
    }
}

/// Runs when a socket has connected to a namespace.
pub trait ConnectHandler: Send + Sync + 'static {
    /// The socket is connected (its CONNECT reply has been queued).
    fn call(&self, socket: Socket) -> BoxFuture<()>;
}

impl<F, Fut> ConnectHandler for F
where
    F: Fn(Socket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, socket: Socket) -> BoxFuture<()> {
        Box::pin(self(socket))
    }
}

/// Handles an event from a client.
pub trait EventHandler: Send + Sync + 'static {
    /// `event` arrived on `socket`; answer its ack, if any, through
    /// [`Event::ack`].
    fn call(&self, socket: Socket, event: Event) -> BoxFuture<()>;
}

impl<F, Fut> EventHandler for F
where
    F: Fn(Socket, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, socket: Socket, event: Event) -> BoxFuture<()> {
        Box::pin(self(socket, event))
    }
}

/// Runs when a socket leaves a namespace, for any reason.
pub trait DisconnectHandler: Send + Sync + 'static {
    /// `socket` disconnected because of `reason`.
    fn call(&self, socket: Socket, reason: DisconnectReason) -> BoxFuture<()>;
}

impl<F, Fut> DisconnectHandler for F
where
    F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, socket: Socket, reason: DisconnectReason) -> BoxFuture<()> {
        Box::pin(self(socket, reason))
    }
}

/// Runs a handler's future up to its first await right here, so handlers
/// start in the order their packets arrived (as in Node), and hands the
/// rest, if any, to the runtime.
pub(crate) fn run_now_or_spawn(mut fut: BoxFuture<()>) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        // The spawned task polls again at once and registers a real waker.
        tokio::spawn(fut);
    }
}
