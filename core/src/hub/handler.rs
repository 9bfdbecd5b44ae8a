//! Handler traits. They are object-safe (`Arc<dyn ...>`) so that every
//! binding can implement them by calling into its language; closures
//! implement them too, for Rust users.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use serde_json::Value;

use crate::protocol::args::{ArgError, EncodeError, IntoPayload};
use crate::protocol::socketio::Payload;

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
    /// The socket's presence metadata (see [`super::PresenceOptions`]).
    pub presence: Option<Value>,
}

impl Admission {
    /// Admits the socket with nothing attached.
    pub fn accept() -> Admission {
        Admission::default()
    }

    /// Admits the socket as user `id`.
    pub fn user(id: impl Into<String>) -> Admission {
        Admission { user_id: Some(id.into()), data: None, presence: None }
    }

    /// Attaches `data` to the socket.
    pub fn with_data(mut self, data: Value) -> Admission {
        self.data = Some(data);
        self
    }

    /// Sets the socket's presence metadata, e.g. `{"name": "Ada", "device": "web"}`.
    pub fn with_presence(mut self, meta: Value) -> Admission {
        self.presence = Some(meta);
        self
    }

    pub(crate) fn merge(&mut self, other: Admission) {
        if other.user_id.is_some() {
            self.user_id = other.user_id;
        }
        if other.presence.is_some() {
            self.presence = other.presence;
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

/// Decides, when a socket's session is recovered, which of its old rooms
/// it may rejoin (see [`Namespace::restore_room_guard`](super::Namespace::restore_room_guard)):
/// the client's rights may have changed since it joined them.
pub trait RoomGuard: Send + Sync + 'static {
    /// Whether the socket with `data` (what the connect middlewares decided
    /// now) of `user` may rejoin `room`.
    fn may_rejoin(&self, data: &serde_json::Value, user: Option<&str>, room: &str) -> bool;
}

impl<F> RoomGuard for F
where
    F: Fn(&serde_json::Value, Option<&str>, &str) -> bool + Send + Sync + 'static,
{
    fn may_rejoin(&self, data: &serde_json::Value, user: Option<&str>, room: &str) -> bool {
        self(data, user, room)
    }
}

/// Handles an event from a client.
///
/// A handler that panics does not take the connection or the server down:
/// the panic is logged (`tracing::error!`) with the event's name, and the
/// event's ack, if the handler still held it, is answered with
/// `{status: "error", code: "internal_error", message}`.
pub trait EventHandler: Send + Sync + 'static {
    /// `event` arrived on `socket`; answer its ack, if any, with
    /// [`Event::reply`].
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
///
/// A panic, in this first poll (which runs in the transport's read path)
/// or later on the runtime, is caught: the handler's future is dropped
/// (releasing what it held, an ack responder included), then `on_panic`
/// gets the panic's message.
pub(crate) fn run_now_or_spawn<P>(fut: BoxFuture<()>, on_panic: P)
where
    P: FnOnce(&str) + Send + Unpin + 'static,
{
    let mut guarded = Guarded { fut: Some(AssertUnwindSafe(fut).catch_unwind()), on_panic: Some(on_panic) };
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if Pin::new(&mut guarded).poll(&mut cx).is_pending() {
        // The spawned task polls again at once and registers a real waker.
        tokio::spawn(guarded);
    }
}

/// An `on_panic` that only logs, for handlers without an ack: which
/// `handler` (connect, disconnect, ...) of which socket, if there is one yet.
pub(crate) fn panic_logger(
    handler: &'static str,
    namespace: &str,
    socket: Option<Arc<str>>,
) -> impl FnOnce(&str) + Send + Unpin + 'static {
    let namespace = namespace.to_owned();
    move |panic: &str| {
        tracing::error!(handler, namespace, socket = socket.as_deref(), panic, "handler panicked");
    }
}

/// A handler's future whose panic is caught and reported.
struct Guarded<P> {
    fut: Option<CatchUnwind<AssertUnwindSafe<BoxFuture<()>>>>,
    on_panic: Option<P>,
}

impl<P: FnOnce(&str) + Unpin> Future for Guarded<P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fut) = self.fut.as_mut() else { return Poll::Ready(()) };
        let Poll::Ready(result) = Pin::new(fut).poll(cx) else { return Poll::Pending };
        // Dropped before `on_panic` runs, so that what it held is released.
        self.fut = None;
        if let (Err(panic), Some(on_panic)) = (result, self.on_panic.take()) {
            on_panic(panic_message(&*panic));
        }
        Poll::Ready(())
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// Why an event was refused before reaching its handler. When the event
/// asked for an ack, the client gets
/// `{"status": "error", "code": code, "message": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EventRejection {
    /// A machine-readable code, e.g. `forbidden` or `invalid_payload`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// When the client may retry (rate limits), in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl EventRejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> EventRejection {
        EventRejection { code: code.into(), message: message.into(), retry_after_ms: None }
    }

    /// Adds [`retry_after_ms`](Self::retry_after_ms).
    pub fn retry_after(mut self, after: std::time::Duration) -> EventRejection {
        // Rounded up: retrying at the advertised time must succeed.
        self.retry_after_ms = Some(after.as_nanos().div_ceil(1_000_000).try_into().unwrap_or(u64::MAX));
        self
    }

    /// The ack payload sent to the client: `{status: "error", code,
    /// message}`, plus `retryAfterMs` when set. Every refusal the core
    /// makes (`rate_limited`, `invalid_payload`, `payload_too_large`,
    /// `internal_error`) and every event middleware's has this shape.
    pub fn to_ack(&self) -> Value {
        let mut ack = serde_json::json!({ "status": "error", "code": self.code, "message": self.message });
        if let (Some(ms), Some(map)) = (self.retry_after_ms, ack.as_object_mut()) {
            map.insert("retryAfterMs".to_owned(), ms.into());
        }
        ack
    }
}

/// A rejection sent as arguments is one argument, its [`to_ack`](EventRejection::to_ack).
///
/// # Examples
/// ```
/// use tidewire::hub::{Event, EventRejection, Hub, Socket};
/// let hub = Hub::default();
/// hub.of("/").on("admin:wipe", |_socket: Socket, mut event: Event| async move {
///     let _ = event.reply(EventRejection::new("forbidden", "admins only"));
/// });
/// ```
impl IntoPayload for EventRejection {
    fn into_payload(self) -> Result<Payload, EncodeError> {
        Ok(Payload::json(vec![self.to_ack()]))
    }
}

/// An argument a handler could not read, as the answer the client gets:
/// `{status: "error", code: "invalid_payload", message}`, the shape of the
/// core's own validation refusals.
///
/// # Examples
/// ```
/// use tidewire::hub::{Event, EventRejection, Hub, Socket};
/// let hub = Hub::default();
/// hub.of("/").on("chat:join", |socket: Socket, mut event: Event| async move {
///     match event.arg::<String>(0) {
///         Ok(room) => { let _ = socket.join(format!("room:{room}")); }
///         Err(e) => { let _ = event.reply(EventRejection::from(e)); }
///     }
/// });
/// ```
impl From<ArgError> for EventRejection {
    fn from(e: ArgError) -> EventRejection {
        EventRejection::new("invalid_payload", e.to_string())
    }
}

/// Runs before an event's handler (socket.io's `socket.use`): may inspect
/// or rewrite the event, or refuse it. Middlewares run in the order added.
/// The event's ack, if any, is held back while they run: a refusal answers
/// it with the rejection, an acceptance hands it to the handler.
pub trait EventMiddleware: Send + Sync + 'static {
    /// Passes the event on (possibly changed) or refuses it.
    fn call(&self, socket: Socket, event: Event) -> BoxFuture<Result<Event, EventRejection>>;
}

impl<F, Fut> EventMiddleware for F
where
    F: Fn(Socket, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Event, EventRejection>> + Send + 'static,
{
    fn call(&self, socket: Socket, event: Event) -> BoxFuture<Result<Event, EventRejection>> {
        Box::pin(self(socket, event))
    }
}

/// Observes every event of a namespace, in or out (socket.io's `onAny` and
/// `onAnyOutgoing`). Synchronous and called inline: keep it quick.
pub trait EventListener: Send + Sync + 'static {
    /// `event` with `args` was received from, or sent to, `socket`.
    fn on_event(&self, socket: &Socket, event: &str, args: &crate::protocol::socketio::Payload);
}

impl<F> EventListener for F
where
    F: Fn(&Socket, &str, &crate::protocol::socketio::Payload) + Send + Sync + 'static,
{
    fn on_event(&self, socket: &Socket, event: &str, args: &crate::protocol::socketio::Payload) {
        self(socket, event, args);
    }
}

/// Observes room lifecycle changes of a namespace (for presence, the
/// cluster bus, metrics). Synchronous, called after the change, outside
/// the namespace's locks.
pub trait RoomListener: Send + Sync + 'static {
    /// `change` happened in `namespace`.
    fn on_room_change(&self, namespace: &str, change: &super::RoomChange);
}

impl<F> RoomListener for F
where
    F: Fn(&str, &super::RoomChange) + Send + Sync + 'static,
{
    fn on_room_change(&self, namespace: &str, change: &super::RoomChange) {
        self(namespace, change);
    }
}

/// Decides which namespace names a dynamic namespace serves (socket.io's
/// `io.of(regex)` or `io.of(fn)`).
pub trait NamespaceMatcher: Send + Sync + 'static {
    /// Whether a client may create namespace `name` with auth payload `auth`.
    fn matches(&self, name: &str, auth: &Value) -> bool;
}

impl<F> NamespaceMatcher for F
where
    F: Fn(&str, &Value) -> bool + Send + Sync + 'static,
{
    fn matches(&self, name: &str, auth: &Value) -> bool {
        self(name, auth)
    }
}

impl NamespaceMatcher for regex::Regex {
    fn matches(&self, name: &str, _auth: &Value) -> bool {
        self.is_match(name)
    }
}

/// A [`NamespaceMatcher`] whose answer takes time: one asked in another
/// runtime (a host language's `io.of(fn)`, whose `next(err, allow)` comes
/// back later). The client's CONNECT waits for it.
pub trait AsyncNamespaceMatcher: Send + Sync + 'static {
    /// Whether a client may create namespace `name` with auth payload `auth`.
    fn matches(&self, name: &str, auth: &Value) -> BoxFuture<bool>;
}

impl<F, Fut> AsyncNamespaceMatcher for F
where
    F: Fn(&str, &Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    fn matches(&self, name: &str, auth: &Value) -> BoxFuture<bool> {
        Box::pin(self(name, auth))
    }
}

/// How a dynamic namespace decides (see [`Hub::dynamic`](super::Hub::dynamic)).
#[derive(Clone)]
pub(crate) enum Matcher {
    Now(Arc<dyn NamespaceMatcher>),
    Later(Arc<dyn AsyncNamespaceMatcher>),
}
