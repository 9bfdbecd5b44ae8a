//! Sockets: one client's presence in one namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::broadcast::BroadcastOperator;
use super::client::ClientShared;
use super::handler::{panic_logger, run_now_or_spawn};
use super::namespace::TooManyRooms;
use super::{DisconnectReason, Handshake, HubStats, Namespace};
use crate::ack::{AckTable, InboundAcks};
use crate::engine::{CloseReason, SendError, Session};
use crate::limits::SocketRates;
use crate::protocol::args::{EncodeError, IntoPayload};
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::{Packet, Payload};
use crate::recovery::{Offset, Origin, StoredSession};
use crate::rooms::{Room, Target};

mod events;

pub(crate) use events::Closing;
pub use events::{AckResponder, CUT_ACK_DEADLINE};

/// The event a socket receives just before the server disconnects it for
/// a policy violation, with `{code, message}` saying why (a DISCONNECT
/// packet carries no reason).
pub const DISCONNECT_NOTICE: &str = "tidewire:disconnect";

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The client did not answer in time.
    #[error("ack timed out")]
    Timeout,
    /// The socket disconnected before answering.
    #[error("socket disconnected")]
    Disconnected,
    /// Too many acks are pending on this socket.
    #[error("too many pending acknowledgements")]
    TooManyPending,
    /// The event could not be sent.
    #[error("send failed: {0}")]
    Send(#[from] SendError),
    /// The arguments could not be serialized (nothing was sent).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl From<EmitError> for AckError {
    fn from(e: EmitError) -> AckError {
        match e {
            EmitError::Send(e) => AckError::Send(e),
            EmitError::Encode(e) => AckError::Encode(e),
        }
    }
}

/// Why an emit to one socket, or an ack answer, did not go out.
///
/// Sending to one socket returns `Result<(), EmitError>` ([`Socket::emit`],
/// [`AckResponder::send`], [`Event::reply`](super::Event::reply)); a broadcast returns how many
/// sockets of this node it was queued for ([`BroadcastOperator::emit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The connection is closed, or its queue is full.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The arguments could not be serialized (nothing was sent).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Where an awaited ack goes.
#[derive(Debug)]
pub(crate) enum AckSink {
    /// One `emit_with_ack`.
    One(oneshot::Sender<Payload>),
    /// A broadcast's collector: (socket id, answer or `None` if it left).
    Broadcast(mpsc::UnboundedSender<(Arc<str>, Option<Payload>)>),
}

/// A client's presence in one namespace (socket.io's `Socket`). Cheap to
/// clone; every clone is the same socket.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tidewire::hub::{Hub, Socket};
/// let hub = Hub::default();
/// hub.of("/").on_connect(|socket: Socket| async move {
///     let _ = socket.join("lobby");
///     let _ = socket.emit("welcome", ("lobby", 3)); // two arguments
///     // To everyone in the lobby but this socket:
///     socket.to("lobby").emit("arrived", socket.id());
///     // Ask the client and wait for its answer:
///     match socket.timeout(Duration::from_secs(5)).emit_with_ack("name?", ()).await {
///         Ok(answer) => tracing::info!(name = ?answer.arg::<String>(0), "named"),
///         Err(e) => tracing::info!(error = %e, "no name"),
///     }
/// });
/// ```
#[derive(Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

struct Inner {
    id: Arc<str>,
    key: u64,
    namespace: Namespace,
    session: Session,
    handshake: Arc<Handshake>,
    user_id: Option<Arc<str>>,
    /// `socket.data` and the presence metadata, boxed: most sockets have
    /// neither, and an inline `Value` costs 80 bytes per socket.
    values: Mutex<Option<Box<Values>>>,
    /// Set when the namespace has connection-state recovery.
    recovery: Option<Box<SocketRecovery>>,
    rates: SocketRates,
    connected: AtomicBool,
    /// A [`Closing`]: set when the server decided to cut the socket.
    closing: std::sync::atomic::AtomicU8,
    /// Events from the client whose ack the server has not sent yet.
    in_flight: std::sync::atomic::AtomicU32,
    /// Set once the connect handlers have been started; until then the
    /// socket's events wait in `held` (see `dispatch`).
    ready: AtomicBool,
    held: Mutex<Vec<(Payload, Option<u64>, usize)>>,
    acks: Mutex<AckTable<AckSink>>,
    inbound: Mutex<InboundAcks<Option<Arc<[Encoded]>>>>,
    client: Weak<ClientShared>,
    ack_timeout: Duration,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("namespace", &self.inner.namespace.name())
            .field("connected", &self.connected())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything a [`Socket`] is made of.
pub(crate) struct SocketParts {
    pub(crate) id: String,
    pub(crate) key: u64,
    pub(crate) namespace: Namespace,
    pub(crate) session: Session,
    pub(crate) handshake: Arc<Handshake>,
    pub(crate) admission: super::Admission,
    pub(crate) client: Weak<ClientShared>,
    pub(crate) ack_timeout: Duration,
    pub(crate) max_pending_acks: usize,
    pub(crate) retry_window: usize,
    pub(crate) rates: SocketRates,
    pub(crate) recovery: Option<Box<SocketRecovery>>,
}

/// What an app attaches to a socket.
#[derive(Debug, Default)]
struct Values {
    data: Value,
    presence: Option<Value>,
}

/// A socket's part of connection-state recovery.
#[derive(Debug)]
pub(crate) struct SocketRecovery {
    /// The private session id the client reconnects with.
    pub(crate) pid: Arc<str>,
    /// The log's position when the socket (re)connected: replayed from
    /// there when the client comes back without an offset.
    pub(crate) base: Option<Offset>,
    pub(crate) recovered: bool,
}

impl Socket {
    pub(crate) fn new(p: SocketParts) -> Socket {
        Socket {
            inner: Arc::new(Inner {
                id: p.id.into(),
                key: p.key,
                namespace: p.namespace,
                session: p.session,
                handshake: p.handshake,
                user_id: p.admission.user_id.map(Arc::from),
                rates: p.rates,
                recovery: p.recovery,
                values: Mutex::new(match (p.admission.data, p.admission.presence) {
                    (None, None) => None,
                    (data, presence) => Some(Box::new(Values { data: data.unwrap_or(Value::Null), presence })),
                }),
                connected: AtomicBool::new(true),
                closing: std::sync::atomic::AtomicU8::new(Closing::No as u8),
                in_flight: std::sync::atomic::AtomicU32::new(0),
                ready: AtomicBool::new(false),
                held: Mutex::new(Vec::new()),
                acks: Mutex::new(AckTable::new(p.max_pending_acks)),
                inbound: Mutex::new(InboundAcks::new(p.retry_window)),
                client: p.client,
                ack_timeout: p.ack_timeout,
            }),
        }
    }

    /// The socket id (distinct from the Engine.IO session id).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The id, shared (room indexes and broadcasts hold it without copying).
    pub(crate) fn id_arc(&self) -> Arc<str> {
        self.inner.id.clone()
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        self.inner.namespace.name()
    }

    /// The namespace.
    pub fn nsp(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// The handshake the socket connected with.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    pub(crate) fn handshake_arc(&self) -> Arc<Handshake> {
        self.inner.handshake.clone()
    }

    /// The user the connect middleware authenticated, if any. Such a socket
    /// is in the room `user:<id>`.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }

    /// Whether this socket is a reconnected client that got its previous
    /// session back (socket.io's `socket.recovered`): same id, rooms and
    /// data, and the packets it missed were replayed before anything else.
    pub fn recovered(&self) -> bool {
        self.inner.recovery.as_ref().is_some_and(|r| r.recovered)
    }

    /// The private session id, when recovery is on.
    pub(crate) fn pid(&self) -> Option<&str> {
        self.inner.recovery.as_ref().map(|r| &*r.pid)
    }

    /// Joins `rooms`, with the notifications left to the caller.
    pub(crate) fn join_deferred(
        &self,
        rooms: impl IntoIterator<Item = Room>,
    ) -> Result<super::namespace::Deferred, TooManyRooms> {
        self.inner.namespace.join_deferred(self.inner.key, rooms.into_iter().collect())
    }

    /// The user id, shared.
    pub(crate) fn user_arc(&self) -> Option<&Arc<str>> {
        self.inner.user_id.as_ref()
    }

    /// The socket's presence metadata (`{}` unless set).
    pub fn presence_meta(&self) -> Value {
        lock(&self.inner.values)
            .as_ref()
            .and_then(|v| v.presence.clone())
            .unwrap_or_else(|| Value::Object(Default::default()))
    }

    /// Replaces the socket's presence metadata; the members of every
    /// tracked room it is in get `presence:update`.
    pub fn set_presence_meta(&self, meta: Value) {
        lock(&self.inner.values).get_or_insert_with(Default::default).presence = Some(meta.clone());
        self.inner.namespace.update_presence(self.id(), meta);
    }

    /// The data the middlewares attached (`socket.data`).
    pub fn data(&self) -> Value {
        lock(&self.inner.values).as_ref().map_or(Value::Null, |v| v.data.clone())
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        let mut values = lock(&self.inner.values);
        match values.as_mut() {
            Some(v) => v.data = data,
            None if data.is_null() => {}
            None => *values = Some(Box::new(Values { data, presence: None })),
        }
    }

    /// The Engine.IO session carrying this socket.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// How many of the client's events await their ack from the server.
    pub fn acks_in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Whether the socket is still connected to its namespace.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    // --- rooms ---------------------------------------------------------------

    /// Joins `room`.
    ///
    /// # Errors
    /// [`TooManyRooms`] when the socket is in
    /// [`max_rooms_per_socket`](super::HubConfig::max_rooms_per_socket) rooms already.
    pub fn join(&self, room: impl Into<Room>) -> Result<(), TooManyRooms> {
        self.inner.namespace.join(self.inner.key, vec![room.into()])
    }

    /// Joins `room` and resolves once what the other nodes of a cluster
    /// send to it reaches this socket (socket.io's `await socket.join(room)`
    /// with an adapter whose join completes later): acknowledge a join
    /// after this, and a broadcast another node sends once the client
    /// knows is not lost. Without a cluster it resolves at once.
    ///
    /// # Errors
    /// [`TooManyRooms`] when the socket is at its limit.
    pub async fn join_async(&self, room: impl Into<Room>) -> Result<(), TooManyRooms> {
        let room = room.into();
        self.join(room.clone())?;
        let adapter = self.inner.namespace.adapter();
        adapter.listen(self.namespace(), std::slice::from_ref(&room)).await;
        Ok(())
    }

    /// Joins each of `rooms`, or none of them.
    ///
    /// # Errors
    /// [`TooManyRooms`] when joining them all would exceed the limit.
    pub fn join_many<R: Into<Room>>(&self, rooms: impl IntoIterator<Item = R>) -> Result<(), TooManyRooms> {
        self.inner.namespace.join(self.inner.key, rooms.into_iter().map(Into::into).collect())
    }

    /// [`join_many`](Self::join_many), then waits until a cluster delivers
    /// the rooms' broadcasts to this node (see [`join_async`](Self::join_async)).
    ///
    /// # Errors
    /// As [`join_many`](Self::join_many).
    pub async fn join_many_async<R: Into<Room>>(&self, rooms: impl IntoIterator<Item = R>) -> Result<(), TooManyRooms> {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.inner.namespace.join(self.inner.key, rooms.clone())?;
        self.inner.namespace.adapter().listen(self.namespace(), &rooms).await;
        Ok(())
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        self.inner.namespace.leave(self.inner.key, room);
    }

    /// The rooms the socket is in, its own id included (`socket.rooms`).
    pub fn rooms(&self) -> Vec<Room> {
        self.inner.namespace.rooms_of(self.inner.key)
    }

    /// Whether the socket is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.inner.namespace.in_room(self.inner.key, room)
    }

    // --- sending -------------------------------------------------------------

    pub(crate) fn send_shared(&self, frames: &[Encoded], volatile: bool) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        let frames = frames.iter().cloned();
        if volatile { self.inner.session.send_volatile(frames) } else { self.inner.session.send(frames) }
    }

    /// Queues answers the client is owed (acks, a cut's notice, a
    /// DISCONNECT): they still go out after its queue overflowed (see
    /// [`Session::send_answer`]).
    pub(crate) fn send_answer(&self, frames: &[Encoded]) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        self.inner.session.send_answer(frames.iter().cloned())
    }

    /// Sends a notice about this connection (a cut, a drain) as an answer:
    /// never recorded for recovery, so a client that resumes elsewhere is
    /// not told again.
    pub(crate) fn emit_notice(&self, event: &str, notice: Value) -> Result<(), SendError> {
        let args = Payload::json(vec![notice]);
        self.notify_outgoing(event, &args);
        let frames = self.inner.namespace.parser().encode(&Packet::event(self.namespace(), event, args, None));
        self.send_answer(&frames)
    }

    fn notify_outgoing(&self, event: &str, args: &Payload) {
        let handlers = self.inner.namespace.handlers();
        for l in &handlers.outgoing {
            l.on_event(self, event, args);
        }
    }

    fn emit_packet(&self, event: &str, args: Payload, id: Option<u64>, volatile: bool) -> Result<(), SendError> {
        if let Some(rec) = self.inner.namespace.recorder(id.is_none() && !volatile) {
            // Recorded like a broadcast to the socket's own room, so a
            // reconnecting client gets it back (socket.io does the same).
            let target = Target { rooms: vec![self.id_arc()], except: Vec::new() };
            let (sent, args) = self.inner.namespace.send_recorded(
                rec,
                Origin::Here,
                &target,
                event,
                args,
                |_| {},
                |frames| self.send_shared(frames, false),
            );
            self.notify_outgoing(event, &args);
            return sent;
        }
        self.notify_outgoing(event, &args);
        let frames = self.inner.namespace.parser().encode(&Packet::event(self.namespace(), event, args, id));
        self.send_shared(&frames, volatile)
    }

    /// Sends `event` with `args` to this client: `()` for no argument, a
    /// tuple for several, any other serializable value for one, or a
    /// [`Payload`] (see [`crate::protocol::args`]).
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tidewire::hub::{Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on_connect(|socket: Socket| async move {
    ///     let _ = socket.emit("hello", ()); // socket.on("hello", () => ..)
    ///     let _ = socket.emit("profile", json!({"name": "Ada"})); // (profile) => ..
    ///     let _ = socket.emit("move", (3, 4)); // (x, y) => ..
    /// });
    /// ```
    ///
    /// # Errors
    /// [`EmitError::Send`] when the connection is closed or its queue is
    /// full (the client is then disconnected as a slow consumer);
    /// [`EmitError::Encode`] when `args` cannot be serialized.
    pub fn emit(&self, event: &str, args: impl IntoPayload) -> Result<(), EmitError> {
        Ok(self.emit_packet(event, args.into_payload()?, None, false)?)
    }

    /// Sends `event` unless the client's queue is full, in which case it is
    /// dropped (socket.io's `volatile`).
    ///
    /// # Errors
    /// [`EmitError::Send`] with [`SendError::Full`] when dropped,
    /// [`SendError::Closed`] once closed; [`EmitError::Encode`].
    pub fn emit_volatile(&self, event: &str, args: impl IntoPayload) -> Result<(), EmitError> {
        Ok(self.emit_packet(event, args.into_payload()?, None, true)?)
    }

    /// Sends `event` and waits for the client's acknowledgement, at most
    /// the hub's [`ack_timeout`](super::HubConfig::ack_timeout); set another
    /// with [`timeout`](Self::timeout).
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on_connect(|socket: Socket| async move {
    ///     if let Ok(answer) = socket.emit_with_ack("ready?", ()).await {
    ///         tracing::info!(ready = ?answer.arg::<bool>(0), "answered");
    ///     }
    /// });
    /// ```
    ///
    /// # Errors
    /// [`AckError::Timeout`], [`AckError::Disconnected`],
    /// [`AckError::TooManyPending`], [`AckError::Send`] or
    /// [`AckError::Encode`].
    pub async fn emit_with_ack(&self, event: &str, args: impl IntoPayload) -> Result<Payload, AckError> {
        self.ask(event, args.into_payload()?, self.inner.ack_timeout).await
    }

    /// This socket with another ack timeout for
    /// [`emit_with_ack`](SocketWithTimeout::emit_with_ack) (socket.io's
    /// `socket.timeout(ms)`).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use tidewire::hub::{AckError, Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on_connect(|socket: Socket| async move {
    ///     match socket.timeout(Duration::from_secs(2)).emit_with_ack("ping", ()).await {
    ///         Ok(_) => {}
    ///         Err(AckError::Timeout) => socket.disconnect(false),
    ///         Err(e) => tracing::debug!(error = %e, "no pong"),
    ///     }
    /// });
    /// ```
    pub fn timeout(&self, timeout: Duration) -> SocketWithTimeout {
        SocketWithTimeout { socket: self.clone(), timeout }
    }

    async fn ask(&self, event: &str, args: Payload, timeout: Duration) -> Result<Payload, AckError> {
        let id = self.inner.namespace.next_ack_id();
        let (tx, rx) = oneshot::channel();
        self.register_ack(id, AckSink::One(tx)).map_err(|()| AckError::TooManyPending)?;
        if let Err(e) = self.emit_packet(event, args, Some(id), false) {
            self.forget_ack(id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.forget_ack(id);
                if let Some(hub) = self.inner.namespace.hub() {
                    HubStats::add(&hub.stats().ack_timeouts, 1);
                }
                Err(AckError::Timeout)
            }
        }
    }

    /// The number of acks this socket awaits from its client.
    pub fn pending_acks(&self) -> usize {
        lock(&self.inner.acks).len()
    }

    pub(crate) fn register_ack(&self, id: u64, sink: AckSink) -> Result<(), ()> {
        if !self.connected() {
            return Err(());
        }
        lock(&self.inner.acks).insert(id, sink).map_err(|_| ())
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        lock(&self.inner.acks).resolve(id);
    }

    pub(crate) fn resolve_ack(&self, id: u64, payload: Payload) {
        let sink = lock(&self.inner.acks).resolve(id);
        match sink {
            Some(AckSink::One(tx)) => {
                let _ = tx.send(payload);
            }
            Some(AckSink::Broadcast(tx)) => {
                let _ = tx.send((self.inner.id.clone(), Some(payload)));
            }
            None => tracing::trace!(socket = self.id(), id, "ack for nothing pending"),
        }
    }

    // --- broadcasts from this socket ------------------------------------------

    /// A broadcast to every socket of the namespace but this one
    /// (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.namespace.clone(), Target::all()).except(self.id_arc())
    }

    /// A broadcast to the members of `room`, this socket excluded.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to everyone but the members of `room` and this socket.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    // --- leaving -------------------------------------------------------------

    /// Disconnects the socket from its namespace (socket.io's
    /// `socket.disconnect(close)`): the client gets a DISCONNECT packet; with
    /// `close`, the whole connection (every namespace) is closed too.
    pub fn disconnect(&self, close: bool) {
        if close {
            // Like socket.io's `client._disconnect()`: every namespace of
            // the connection gets its DISCONNECT, then the connection closes
            // once they are written.
            match self.inner.client.upgrade() {
                Some(client) => client.disconnect_all(),
                None => self.disconnect(false),
            }
            self.inner.session.close_after_flush(CloseReason::ForcedClose);
            return;
        }
        self.disconnect_for(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Sends DISCONNECT and marks the socket closed with `reason`.
    fn disconnect_for(&self, reason: DisconnectReason) {
        if self.connected() {
            let frames = self.inner.namespace.parser().encode(&Packet::disconnect(self.namespace()));
            let _ = self.send_answer(&frames);
        }
        if let Some(client) = self.inner.client.upgrade() {
            client.server_left(self.namespace());
        }
        self.closed(reason);
    }

    /// Keeps the session for recovery after an unclean disconnect (the
    /// client may come back); a clean one (either side said goodbye) is not
    /// kept, as in socket.io. A server shutting down (a drain) is not a
    /// goodbye: its clients come back, to another node of a cluster, and
    /// resume there (socket.io keeps these too).
    fn persist(&self, reason: DisconnectReason) {
        let (Some(mine), Some(rec)) = (&self.inner.recovery, self.inner.namespace.recovery()) else { return };
        let unclean = matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerShutdown
                // Cut for lagging: what it could not take is in the log.
                | DisconnectReason::SlowConsumer
        );
        if !unclean {
            return;
        }
        let session = StoredSession {
            id: self.id_arc(),
            rooms: self.rooms(),
            data: self.data(),
            user_id: self.inner.user_id.clone(),
            base: mine.base,
        };
        let mut rooms = session.rooms.clone();
        if !rooms.contains(&session.id) {
            rooms.push(session.id.clone());
        }
        super::namespace::lock(&rec.store).persist(&mine.pid, session, crate::time::now());
        // In a cluster, the client may come back to another node: this one
        // keeps hearing what the session's rooms get meanwhile.
        if let Some(hub) = self.inner.namespace.hub()
            && let Some(config) = &hub.config().recovery
        {
            hub.adapter().retain_session(self.namespace(), &mine.pid, rooms, config.max_disconnection_duration);
        }
    }

    /// Marks the socket disconnected, once: `disconnecting` handlers (which
    /// still see the rooms), then every index is cleaned, then `disconnect`
    /// handlers.
    pub(crate) fn closed(&self, reason: DisconnectReason) {
        if !self.inner.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        let handlers = self.inner.namespace.handlers();
        for h in &handlers.on_disconnecting {
            run_now_or_spawn(
                h.call(self.clone(), reason),
                panic_logger("disconnecting", self.namespace(), Some(self.id_arc())),
            );
        }
        self.persist(reason);
        self.inner.namespace.remove(self.inner.key);
        // Pending acks fail: single emits with `Disconnected`, broadcasts
        // count the socket as gone.
        let pending: Vec<AckSink> = lock(&self.inner.acks).drain().map(|(_, s)| s).collect();
        for sink in pending {
            if let AckSink::Broadcast(tx) = sink {
                let _ = tx.send((self.inner.id.clone(), None));
            }
        }
        for h in &handlers.on_disconnect {
            run_now_or_spawn(
                h.call(self.clone(), reason),
                panic_logger("disconnect", self.namespace(), Some(self.id_arc())),
            );
        }
    }
}

/// A socket with an ack timeout of its own, made by [`Socket::timeout`].
#[derive(Debug, Clone)]
#[must_use = "does nothing until emit_with_ack"]
pub struct SocketWithTimeout {
    socket: Socket,
    timeout: Duration,
}

impl SocketWithTimeout {
    /// Sends `event` and waits for the client's acknowledgement, at most
    /// the timeout; see [`Socket::emit_with_ack`].
    ///
    /// # Errors
    /// As [`Socket::emit_with_ack`].
    pub async fn emit_with_ack(&self, event: &str, args: impl IntoPayload) -> Result<Payload, AckError> {
        self.socket.ask(event, args.into_payload()?, self.timeout).await
    }
}

/// How often a cut or a drain looks again for answers still owed.
const ANSWER_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Waits until no connected socket of `sockets` owes its client an ack
/// (an event of the client's still being handled), or until `deadline`,
/// or until `stop` says so: what a cut or a drain does before its notice
/// and close, so that every event the server handled gets its answer.
pub(crate) async fn wait_for_answers(sockets: &[Socket], deadline: tokio::time::Instant, stop: impl Fn() -> bool) {
    while sockets.iter().any(|s| s.connected() && s.acks_in_flight() > 0)
        && tokio::time::Instant::now() < deadline
        && !stop()
    {
        tokio::time::sleep(ANSWER_POLL).await;
    }
}
