//! Namespaces: handler registries, connected sockets and their rooms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use super::adapter::Adapter;
use super::broadcast::BroadcastOperator;
use super::handler::{
    Admission, ConnectError, ConnectHandler, ConnectMiddleware, DisconnectHandler, EventHandler, EventListener,
    EventMiddleware, RoomListener,
};
use super::presence::{PresenceListener, Tracker};
use super::{Handshake, HubInner, Parser, RoomChange, Socket};
use crate::ack::next_ack_id;
use crate::limits::EventRule;
use crate::protocol::args::IntoPayload;
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::Packet;
use crate::protocol::socketio::Payload;
use crate::recovery::{Origin, PacketLog, SessionStore};
use crate::rooms::{Room, RoomIndex, Target};

mod membership;
mod tracking;

use tracking::{Tracked, track};

/// A socket would exceed [`HubConfig::max_rooms_per_socket`](super::HubConfig::max_rooms_per_socket);
/// none of the rooms was joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a socket may be in at most {max} rooms")]
pub struct TooManyRooms {
    /// The limit.
    pub max: usize,
}

/// A namespace (socket.io's `io.of(name)`): its handlers, its connected
/// sockets and their rooms. Cheap to clone; handlers may be added at any
/// time and apply to sockets already connected.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    parser: Parser,
    /// Replaced as a whole on every registration (a dynamic namespace's
    /// child starts with a copy of its parent's).
    handlers: RwLock<Arc<Handlers>>,
    state: RwLock<State>,
    ack_ids: AtomicU64,
    hub: Weak<HubInner>,
    /// A child of a dynamic namespace (removed from the hub when empty):
    /// its parent's name.
    parent: Option<String>,
    /// Removed from the hub; re-registered if a socket joins again.
    detached: AtomicBool,
    /// Connection-state recovery, when on.
    recovery: Option<Recovery>,
}

/// A namespace's recovery state: the log of sent packets and the sessions
/// of sockets that went away. Lock order: `log`, then `store`, then the
/// namespace's `state`; nothing that runs user code is called with `log`
/// held.
pub(crate) struct Recovery {
    pub(crate) log: Mutex<PacketLog<Arc<[Encoded]>>>,
    pub(crate) store: Mutex<SessionStore>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct State {
    rooms: RoomIndex<u64>,
    sockets: rustc_hash::FxHashMap<u64, Socket>,
    by_id: HashMap<Arc<str>, u64>,
    next_key: u64,
    /// CONNECTs whose middlewares are still running.
    connecting: usize,
    /// Presence, when enabled.
    presence: Option<Box<Tracker>>,
}

/// Notifications of a change made under the namespace's lock, run once it
/// is released (room listeners and presence events run user code and send
/// packets).
#[must_use = "run the notifications"]
pub(crate) struct Deferred {
    changes: Vec<RoomChange>,
    presence: Tracked,
}

impl Deferred {
    pub(crate) fn run(self, ns: &Namespace) {
        ns.notify(&self.changes);
        ns.publish_tracked(self.presence);
    }
}

/// A dynamic namespace's hook run with each child it makes.
pub(crate) type ChildHook = dyn Fn(&Namespace) + Send + Sync;

#[derive(Default, Clone)]
pub(crate) struct Handlers {
    pub(crate) middlewares: Vec<Arc<dyn ConnectMiddleware>>,
    pub(crate) on_connect: Vec<Arc<dyn ConnectHandler>>,
    pub(crate) on_disconnecting: Vec<Arc<dyn DisconnectHandler>>,
    pub(crate) on_disconnect: Vec<Arc<dyn DisconnectHandler>>,
    pub(crate) event_middlewares: Vec<Arc<dyn EventMiddleware>>,
    pub(crate) events: HashMap<String, Arc<dyn EventHandler>>,
    pub(crate) fallback: Option<Arc<dyn EventHandler>>,
    pub(crate) incoming: Vec<Arc<dyn EventListener>>,
    pub(crate) outgoing: Vec<Arc<dyn EventListener>>,
    pub(crate) room_listeners: Vec<Arc<dyn RoomListener>>,
    pub(crate) event_rules: HashMap<String, EventRule>,
    pub(crate) presence_listeners: Vec<Arc<dyn PresenceListener>>,
    pub(crate) server_events: HashMap<String, Arc<dyn super::ServerEventHandler>>,
    pub(crate) room_guard: Option<Arc<dyn super::handler::RoomGuard>>,
    /// A dynamic namespace's hooks run with each child it makes.
    pub(crate) new_child: Vec<Arc<ChildHook>>,
}

impl Handlers {
    pub(crate) fn handler_for(&self, event: &str) -> Option<Arc<dyn EventHandler>> {
        self.events.get(event).or(self.fallback.as_ref()).cloned()
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.inner.name).field("sockets", &self.socket_count()).finish()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Namespace {
    pub(crate) fn new(name: String, parser: Parser, hub: Weak<HubInner>) -> Namespace {
        Namespace::with_handlers(name, parser, hub, Arc::default(), None)
    }

    /// A child of this dynamic namespace, with a copy of its handlers (as
    /// socket.io's `createChild`); the [`on_new_child`](Self::on_new_child)
    /// hooks run before anything can reach it.
    pub(crate) fn child(&self, name: String) -> Namespace {
        let handlers = self.handlers();
        let child = Namespace::with_handlers(
            name,
            self.inner.parser,
            self.inner.hub.clone(),
            handlers.clone(),
            Some(self.inner.name.clone()),
        );
        for hook in &handlers.new_child {
            hook(&child);
        }
        child
    }

    fn with_handlers(
        name: String,
        parser: Parser,
        hub: Weak<HubInner>,
        handlers: Arc<Handlers>,
        parent: Option<String>,
    ) -> Namespace {
        let recovery = hub
            .upgrade()
            .and_then(|h| h.config.recovery.clone())
            .map(|c| Recovery { log: Mutex::new(PacketLog::new(&c)), store: Mutex::new(SessionStore::new(&c)) });
        Namespace {
            inner: Arc::new(Inner {
                name,
                parser,
                handlers: RwLock::new(handlers),
                state: RwLock::default(),
                ack_ids: AtomicU64::new(0),
                hub,
                parent,
                detached: AtomicBool::new(false),
                recovery,
            }),
        }
    }

    pub(crate) fn same(&self, other: &Namespace) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The namespace's name (`/` for the main one).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The name of the dynamic namespace this one is a child of.
    pub fn parent_name(&self) -> Option<&str> {
        self.inner.parent.as_deref()
    }

    pub(crate) fn parser(&self) -> Parser {
        self.inner.parser
    }

    /// The recovery state, when recovery is on.
    pub(crate) fn recovery(&self) -> Option<&Recovery> {
        self.inner.recovery.as_ref()
    }

    /// The recovery state an event is recorded in, when recovery is on and
    /// the event is `recordable` (sent without ack and not volatile).
    pub(crate) fn recorder(&self, recordable: bool) -> Option<&Recovery> {
        self.inner.recovery.as_ref().filter(|_| recordable)
    }

    /// Sends an event recorded for recovery: under the log's lock, the
    /// event is handed to `publish` (to the other nodes, without offset),
    /// the next offset is appended to `args`, the packet is encoded once,
    /// handed to `deliver` (which resolves the recipients and queues to
    /// them: no user code), and logged with `target`. Holding the lock
    /// through delivery keeps offsets in delivery order, and lets a restore
    /// see every packet either in the log or delivered after it. Returns
    /// what `deliver` returned and the arguments as sent (offset included).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_recorded<R>(
        &self,
        rec: &Recovery,
        origin: Origin,
        target: &Target,
        event: &str,
        mut args: Payload,
        publish: impl FnOnce(&Payload),
        deliver: impl FnOnce(&[Encoded]) -> R,
    ) -> (R, Payload) {
        let mut log = lock(&rec.log);
        publish(&args);
        let (offset, text) = log.next_offset();
        args.data.push(serde_json::Value::String(text));
        let frames: Arc<[Encoded]> =
            self.parser().encode(&Packet::event(self.name(), event, args.clone(), None)).into();
        let result = deliver(&frames);
        let size = frames.iter().map(Encoded::len).sum();
        log.append_from(origin, offset, frames, target.clone(), size, crate::time::now());
        (result, args)
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        next_ack_id(&self.inner.ack_ids)
    }

    pub(crate) fn hub(&self) -> Option<super::Hub> {
        self.inner.hub.upgrade().map(super::Hub::from_inner)
    }

    /// The hub's adapter ([`LOCAL`](super::adapter::LOCAL) once the hub is gone).
    pub(crate) fn adapter(&self) -> Arc<dyn Adapter> {
        self.hub().map_or_else(|| super::adapter::LOCAL.clone(), |h| h.adapter().clone())
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Handlers)) {
        let mut guard = write(&self.inner.handlers);
        let mut handlers = Handlers::clone(&guard);
        f(&mut handlers);
        *guard = Arc::new(handlers);
    }

    pub(crate) fn handlers(&self) -> Arc<Handlers> {
        read(&self.inner.handlers).clone()
    }

    // --- registration ------------------------------------------------------

    /// Adds a connect middleware (socket.io's `namespace.use`). Middlewares
    /// run in the order added; the first refusal wins and the client gets
    /// CONNECT_ERROR with its message and data.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use tidewire::hub::{Admission, ConnectError, Handshake, Hub};
    /// let hub = Hub::default();
    /// hub.of("/").use_middleware(|handshake: Arc<Handshake>| async move {
    ///     match handshake.auth["token"].as_str() {
    ///         Some("letmein") => Ok(Admission::user("alice").with_data(serde_json::json!({"plan": "pro"}))),
    ///         _ => Err(ConnectError::new("invalid token").with_data(serde_json::json!({"retry": false}))),
    ///     }
    /// });
    /// ```
    pub fn use_middleware(&self, middleware: impl ConnectMiddleware) -> &Self {
        self.use_middleware_dyn(Arc::new(middleware))
    }

    /// [`use_middleware`](Self::use_middleware) for a shared handler.
    pub fn use_middleware_dyn(&self, middleware: Arc<dyn ConnectMiddleware>) -> &Self {
        self.update(|h| h.middlewares.push(middleware));
        self
    }

    /// Adds an event middleware (socket.io's `socket.use`), run before every
    /// event handler of this namespace.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Event, EventRejection, Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").use_event_middleware(|socket: Socket, event: Event| async move {
    ///     if event.name.starts_with("admin:") && socket.user_id() != Some("root") {
    ///         return Err(EventRejection::new("forbidden", "admins only"));
    ///     }
    ///     Ok(event)
    /// });
    /// ```
    pub fn use_event_middleware(&self, middleware: impl EventMiddleware) -> &Self {
        self.use_event_middleware_dyn(Arc::new(middleware))
    }

    /// [`use_event_middleware`](Self::use_event_middleware) for a shared handler.
    pub fn use_event_middleware_dyn(&self, middleware: Arc<dyn EventMiddleware>) -> &Self {
        self.update(|h| h.event_middlewares.push(middleware));
        self
    }

    /// Limits `event`'s size and checks its arguments before any handler,
    /// listener or middleware sees it. A refused event is dropped; if the
    /// client asked for an ack it gets `{status: "error", code:
    /// "payload_too_large" | "invalid_payload", message}`.
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tidewire::hub::Hub;
    /// use tidewire::limits::{EventRule, JsonSchema};
    /// let hub = Hub::default();
    /// let schema = JsonSchema::first_arg(&json!({"type": "object", "required": ["text"]})).unwrap();
    /// hub.of("/").limit_event("chat:message", EventRule::new().max_bytes(4096).validator(schema));
    /// ```
    pub fn limit_event(&self, event: impl Into<String>, rule: EventRule) -> &Self {
        let event = event.into();
        self.update(|h| {
            h.event_rules.insert(event, rule);
        });
        self
    }

    /// On a dynamic namespace: runs `hook` with each child it makes, before
    /// any socket reaches the child (socket.io's `new_namespace`). The
    /// child already has a copy of the parent's handlers; what `hook`
    /// registers on it is the child's own.
    pub fn on_new_child(&self, hook: impl Fn(&Namespace) + Send + Sync + 'static) -> &Self {
        let hook: Arc<ChildHook> = Arc::new(hook);
        self.update(|h| h.new_child.push(hook));
        self
    }

    /// Adds a handler run for each connected socket (`connection`).
    pub fn on_connect(&self, handler: impl ConnectHandler) -> &Self {
        self.on_connect_dyn(Arc::new(handler))
    }

    /// Checks every room a recovered session would rejoin (connection-state
    /// recovery): a room `guard` refuses is not rejoined. The socket's own
    /// id room and its user's `user:<id>` room are always kept. Without a
    /// guard every room comes back, as in socket.io.
    ///
    /// The guard sees the data the connect middlewares gave the socket this
    /// time: a recovered socket keeps that fresh data (the stored data only
    /// when the middlewares gave none), so a right withdrawn since the
    /// client joined is not given back.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::Hub;
    /// let hub = Hub::default();
    /// hub.of("/").restore_room_guard(|data: &serde_json::Value, _user: Option<&str>, room: &str| {
    ///     !room.starts_with("room:staff-") || data["role"] == "staff"
    /// });
    /// ```
    pub fn restore_room_guard(&self, guard: impl super::handler::RoomGuard) -> &Self {
        let guard: Arc<dyn super::handler::RoomGuard> = Arc::new(guard);
        self.update(|h| h.room_guard = Some(guard));
        self
    }

    /// [`on_connect`](Self::on_connect) for a shared handler.
    pub fn on_connect_dyn(&self, handler: Arc<dyn ConnectHandler>) -> &Self {
        self.update(|hs| hs.on_connect.push(handler));
        self
    }

    /// Adds a handler run when a socket is about to leave (`disconnecting`):
    /// up to its first `.await` it still sees the socket's rooms.
    pub fn on_disconnecting(&self, handler: impl DisconnectHandler) -> &Self {
        self.on_disconnecting_dyn(Arc::new(handler))
    }

    /// [`on_disconnecting`](Self::on_disconnecting) for a shared handler.
    pub fn on_disconnecting_dyn(&self, handler: Arc<dyn DisconnectHandler>) -> &Self {
        self.update(|hs| hs.on_disconnecting.push(handler));
        self
    }

    /// Adds a handler run after a socket left the namespace (`disconnect`).
    pub fn on_disconnect(&self, handler: impl DisconnectHandler) -> &Self {
        self.on_disconnect_dyn(Arc::new(handler))
    }

    /// [`on_disconnect`](Self::on_disconnect) for a shared handler.
    pub fn on_disconnect_dyn(&self, handler: Arc<dyn DisconnectHandler>) -> &Self {
        self.update(|hs| hs.on_disconnect.push(handler));
        self
    }

    /// Sets the handler of `event` (replacing a previous one).
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Event, Hub, Socket};
    /// let hub = Hub::default();
    /// hub.of("/").on("ping", |socket: Socket, mut event: Event| async move {
    ///     if event.ack.is_some() {
    ///         let _ = event.reply("pong");
    ///     } else {
    ///         let _ = socket.emit("pong", ());
    ///     }
    /// });
    /// ```
    pub fn on(&self, event: impl Into<String>, handler: impl EventHandler) -> &Self {
        self.on_dyn(event, Arc::new(handler))
    }

    /// [`on`](Self::on) for a shared handler.
    pub fn on_dyn(&self, event: impl Into<String>, handler: Arc<dyn EventHandler>) -> &Self {
        let event = event.into();
        self.update(|hs| {
            hs.events.insert(event, handler);
        });
        self
    }

    /// Removes the handler of `event`.
    pub fn off(&self, event: &str) -> &Self {
        self.update(|hs| {
            hs.events.remove(event);
        });
        self
    }

    /// Sets the handler of events that have no handler of their own.
    pub fn on_fallback(&self, handler: impl EventHandler) -> &Self {
        let h: Arc<dyn EventHandler> = Arc::new(handler);
        self.update(|hs| hs.fallback = Some(h));
        self
    }

    /// Adds a listener called for every event received (socket.io's `onAny`),
    /// before its handler.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Hub, Socket};
    /// use tidewire::protocol::socketio::Payload;
    /// let hub = Hub::default();
    /// hub.of("/").on_any(|socket: &Socket, event: &str, _args: &Payload| {
    ///     tracing::debug!(socket = socket.id(), event, "received");
    /// });
    /// ```
    pub fn on_any(&self, listener: impl EventListener) -> &Self {
        let l: Arc<dyn EventListener> = Arc::new(listener);
        self.update(|hs| hs.incoming.push(l));
        self
    }

    /// Adds a listener called for every event sent to a socket of this
    /// namespace, broadcasts included (socket.io's `onAnyOutgoing`).
    pub fn on_any_outgoing(&self, listener: impl EventListener) -> &Self {
        let l: Arc<dyn EventListener> = Arc::new(listener);
        self.update(|hs| hs.outgoing.push(l));
        self
    }

    /// Adds a listener of room changes: created, deleted, joined, left.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Hub, RoomChange};
    /// let hub = Hub::default();
    /// hub.of("/").on_room_change(|nsp: &str, change: &RoomChange| {
    ///     if let RoomChange::Created(room) = change {
    ///         tracing::info!(nsp, %room, "first member");
    ///     }
    /// });
    /// ```
    pub fn on_room_change(&self, listener: impl RoomListener) -> &Self {
        let l: Arc<dyn RoomListener> = Arc::new(listener);
        self.update(|hs| hs.room_listeners.push(l));
        self
    }

    // --- connection lifecycle ------------------------------------------------

    /// Runs the middlewares for a connecting client.
    pub(crate) async fn admit(&self, handshake: Arc<Handshake>) -> Result<Admission, ConnectError> {
        use futures_util::FutureExt as _;
        let mut admission = Admission::default();
        for m in self.handlers().middlewares.iter() {
            // A middleware that panics refuses the connection with a clear
            // error instead of leaving the client without an answer.
            match std::panic::AssertUnwindSafe(m.call(handshake.clone())).catch_unwind().await {
                Ok(decision) => admission.merge(decision?),
                Err(_) => {
                    tracing::error!(
                        namespace = self.name(),
                        "a connect middleware panicked; the connection is refused"
                    );
                    return Err(ConnectError::new("internal server error")
                        .with_data(serde_json::json!({ "code": "internal_error" })));
                }
            }
        }
        Ok(admission)
    }

    /// A CONNECT started (keeps an empty dynamic child alive meanwhile).
    pub(crate) fn begin_connect(&self) {
        write(&self.inner.state).connecting += 1;
    }

    /// A CONNECT ended without a socket (refused or the client left).
    pub(crate) fn abort_connect(&self) {
        let mut st = write(&self.inner.state);
        st.connecting = st.connecting.saturating_sub(1);
        drop(st);
        self.cleanup_if_empty();
    }

    /// Registers a connected socket: its key, its own room and, when it
    /// belongs to a user, the room `user:<id>`. The notifications (room
    /// listeners, presence) are left to the caller.
    pub(crate) fn add_deferred(&self, make: impl FnOnce(u64) -> Socket) -> (Socket, Deferred) {
        let (socket, events) = {
            let mut st = write(&self.inner.state);
            st.connecting = st.connecting.saturating_sub(1);
            let key = st.next_key;
            st.next_key += 1;
            let socket = make(key);
            let id = socket.id_arc();
            let mut rooms: Vec<Room> = vec![id.clone()];
            if let Some(user) = socket.user_id() {
                rooms.push(format!("user:{user}").into());
            }
            st.sockets.insert(key, socket.clone());
            st.by_id.insert(id, key);
            let events = st.rooms.join(key, rooms);
            let diffs = track(&mut st, &events);
            (socket, (self.changes(&st, events), diffs))
        };
        let (changes, presence) = events;
        if self.inner.detached.swap(false, Ordering::AcqRel)
            && let Some(hub) = self.hub()
        {
            hub.reattach(self);
        }
        (socket, Deferred { changes, presence })
    }

    /// Removes a socket from every room and index.
    pub(crate) fn remove(&self, key: u64) {
        let events = {
            let mut st = write(&self.inner.state);
            // Room events name the socket, so build them before forgetting it.
            let events = st.rooms.remove_member(key);
            let diffs = track(&mut st, &events);
            let changes = self.changes(&st, events);
            if let Some(socket) = st.sockets.remove(&key) {
                st.by_id.remove(socket.id());
            }
            (changes, diffs)
        };
        let (events, tracked) = events;
        self.notify(&events);
        self.publish_tracked(tracked);
        self.cleanup_if_empty();
    }

    fn cleanup_if_empty(&self) {
        if self.inner.parent.is_none() {
            return;
        }
        let Some(hub) = self.hub() else { return };
        if hub.config().cleanup_empty_children {
            hub.detach_if_empty(self);
        }
    }

    /// Whether no socket is connected or connecting.
    pub(crate) fn is_idle(&self) -> bool {
        let st = read(&self.inner.state);
        st.sockets.is_empty() && st.connecting == 0
    }

    pub(crate) fn mark_detached(&self) {
        self.inner.detached.store(true, Ordering::Release);
    }

    // --- queries and broadcasts ---------------------------------------------

    /// The sockets `target` reaches on this node.
    pub(crate) fn resolve(&self, target: &Target) -> Vec<Socket> {
        let st = read(&self.inner.state);
        let mut out = Vec::new();
        st.rooms.resolve(target, |k| {
            if let Some(s) = st.sockets.get(k) {
                out.push(s.clone());
            }
        });
        out
    }

    /// The number of sockets connected to this namespace on this node.
    pub fn socket_count(&self) -> usize {
        read(&self.inner.state).sockets.len()
    }

    /// The connected socket with id `id`.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        let st = read(&self.inner.state);
        st.by_id.get(id).and_then(|k| st.sockets.get(k)).cloned()
    }

    /// Every connected socket on this node.
    pub fn sockets(&self) -> Vec<Socket> {
        read(&self.inner.state).sockets.values().cloned().collect()
    }

    /// A broadcast to every socket of the namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.clone(), Target::all())
    }

    /// A broadcast to the members of `room` (chain more with
    /// [`BroadcastOperator::to`]).
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to everyone except the members of `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// Sends `event` to every socket of the namespace; see
    /// [`BroadcastOperator::emit`].
    pub fn emit(&self, event: &str, args: impl IntoPayload) -> usize {
        self.broadcast().emit(event, args)
    }
}
