//! The hub's one seam to the other nodes of a cluster.
//!
//! Everything the hub does beyond this node goes through an [`Adapter`]:
//! socket.io's adapter, in the hub's own terms (namespaces, targets,
//! payloads; no wire format, no bus). A hub alone uses [`Local`], which
//! has nobody to tell; [`Hub::join_cluster`](super::Hub::join_cluster)
//! installs the cluster's (see [`crate::cluster`]). The trait is
//! crate-private: the cluster is its only other implementation, and the
//! hooks it needs (room changes, admission, per-event checks, session
//! restore, presence) are part of it, so the hub never names the cluster.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::broadcast::RemoteSocket;
use super::presence::Delta;
use super::{Hub, Namespace, RoomChange};
use crate::limits::ConnectionRefused;
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::Payload;
use crate::recovery::StoredSession;
use crate::rooms::{Room, Target};

/// A future an adapter returns, borrowing its arguments.
pub(crate) type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a hub could not join a cluster, or the other nodes could not be
/// reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The hub already belongs to a cluster.
    #[error("the hub already belongs to a cluster")]
    AlreadyJoined,
    /// The bus refused or could not answer.
    #[error("the cluster bus: {0}")]
    Bus(String),
}

/// Who answered a request to the other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Replies {
    /// Other nodes asked (the bus's count of subscribers, minus this node).
    pub expected: usize,
    /// Nodes that answered in time.
    pub received: usize,
    /// The answering nodes that named themselves (Tidewire nodes do;
    /// official ones are only counted in [`received`](Self::received)).
    pub nodes: Vec<String>,
    /// Tidewire nodes known to be in the cluster that did not answer.
    pub silent: Vec<String>,
    /// Set when the bus could not be asked (the result is this node's only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Replies {
    /// Whether every node asked answered.
    pub fn complete(&self) -> bool {
        self.received >= self.expected && self.error.is_none()
    }

    /// Nobody could be asked, because of `error`.
    pub(crate) fn failed(error: impl std::fmt::Display) -> Replies {
        Replies { error: Some(error.to_string()), ..Replies::default() }
    }
}

/// A result gathered from every node, with who answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gathered<T> {
    /// The merged result.
    pub value: T,
    /// Who answered.
    pub replies: Replies,
}

impl<T> Gathered<T> {
    /// The merged result.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Gathered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Answers a [`Namespace::server_side_emit_with_ack`] of another node.
/// Dropping it without [`send`](Self::send) leaves that node waiting, as
/// with socket.io.
pub struct ServerAck {
    reply: Box<dyn FnOnce(&Value) + Send>,
}

impl std::fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAck").finish_non_exhaustive()
    }
}

impl ServerAck {
    pub(crate) fn new(reply: impl FnOnce(&Value) + Send + 'static) -> ServerAck {
        ServerAck { reply: Box::new(reply) }
    }

    /// Sends `value` as this node's answer.
    pub fn send(self, value: &Value) {
        (self.reply)(value);
    }
}

/// Handles an event sent by another node ([`Namespace::server_side_emit`]).
pub trait ServerEventHandler: Send + Sync + 'static {
    /// The event's arguments arrived; `ack` is present when the sender
    /// waits for an answer.
    fn call(&self, args: Payload, ack: Option<ServerAck>) -> super::BoxFuture<()>;
}

impl<F, Fut> ServerEventHandler for F
where
    F: Fn(Payload, Option<ServerAck>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, args: Payload, ack: Option<ServerAck>) -> super::BoxFuture<()> {
        Box::pin(self(args, ack))
    }
}

/// What the other nodes report of a broadcast with acks.
#[derive(Debug)]
pub(crate) enum RemoteAck {
    /// A node delivered it to this many sockets.
    Count(usize),
    /// One of their sockets answered.
    Answer(Payload),
}

/// The other nodes' side of a broadcast with acks: how many nodes should
/// report a count, and their reports (the adapter stops forwarding once
/// `rx` is dropped).
pub(crate) struct RemoteAcks {
    pub(crate) nodes: usize,
    pub(crate) rx: mpsc::UnboundedReceiver<RemoteAck>,
}

/// An operation on the sockets another node holds.
#[derive(Debug, Clone)]
pub(crate) enum RemoteOp {
    Join(Vec<Room>),
    Leave(Room),
    Disconnect { close: bool },
}

/// What the other nodes answer about a session this node does not hold.
#[derive(Debug)]
pub(crate) enum RemoteSession {
    /// No node holds it.
    Unknown,
    /// Its holder had it but cannot restore it (packets gone, bad offset).
    Gone,
    /// Restored: the session and the packets it missed.
    Found(Box<Taken>),
}

/// A session another node gave this one.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) session: StoredSession,
    /// The packets it missed, as its holder logged them.
    pub(crate) missed: Vec<Vec<Encoded>>,
    /// Set when the holder keeps logging for the session until this node
    /// says it listens ([`Adapter::finish_remote_session`]).
    pub(crate) handoff: Option<Handoff>,
    /// Set by [`Adapter::finish_remote_session`]: what this node's own log
    /// holds for the session after `missed`.
    pub(crate) marks: Option<crate::recovery::Split>,
}

/// Who to tell that this node listens for a session.
#[derive(Debug, Clone)]
pub(crate) struct Handoff {
    pub(crate) holder: String,
    pub(crate) pid: String,
}

/// socket.io's adapter, in the hub's terms. Every method has the behaviour
/// of a hub alone as its default ([`Local`]).
pub(crate) trait Adapter: Send + Sync + 'static {
    /// Whether there are other nodes to reach.
    fn clustered(&self) -> bool {
        false
    }

    // --- what the hub sends beyond this node ---------------------------------

    /// Hands a broadcast (already delivered here) to the other nodes.
    fn broadcast(&self, _ns: &Namespace, _target: &Target, _volatile: bool, _event: &str, _args: &Payload) {}

    /// Hands a broadcast with acks to the other nodes; `None` when there is
    /// nobody to wait for.
    fn broadcast_with_acks<'a>(
        &'a self,
        _ns: &'a Namespace,
        _target: &'a Target,
        _volatile: bool,
        _timeout: Duration,
        _event: &'a str,
        _args: &'a Payload,
    ) -> AdapterFuture<'a, Option<RemoteAcks>> {
        Box::pin(async { None })
    }

    /// The sockets `target` reaches on the other nodes.
    fn fetch_sockets<'a>(
        &'a self,
        _ns: &'a Namespace,
        _target: &'a Target,
    ) -> AdapterFuture<'a, Gathered<Vec<RemoteSocket>>> {
        Box::pin(async { Gathered::default() })
    }

    /// Applies `op` to the sockets `target` reaches on the other nodes.
    fn apply(&self, _ns: &Namespace, _target: &Target, _op: RemoteOp) {}

    /// Sends a server-side event to the other nodes.
    fn server_side_emit(&self, _ns: &Namespace, _event: &str, _args: &Payload) -> Result<(), ClusterError> {
        Ok(())
    }

    /// Sends a server-side event and gathers each node's answer.
    fn server_side_emit_with_ack<'a>(
        &'a self,
        _ns: &'a Namespace,
        _event: &'a str,
        _args: &'a Payload,
        _timeout: Option<Duration>,
    ) -> AdapterFuture<'a, Gathered<Vec<Value>>> {
        Box::pin(async { Gathered::default() })
    }

    /// How many nodes serve `ns`, this one included.
    fn server_count<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, Result<usize, ClusterError>> {
        Box::pin(async { Ok(1) })
    }

    /// The rooms of `ns` on the other nodes.
    fn remote_rooms<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, Gathered<Vec<String>>> {
        Box::pin(async { Gathered::default() })
    }

    // --- hooks ---------------------------------------------------------------

    /// A namespace appeared on this node.
    fn namespace_added(&self, _nsp: &str) {}

    /// A namespace went away from this node.
    fn namespace_removed(&self, _nsp: &str) {}

    /// Rooms of a namespace were created or deleted on this node.
    fn rooms_changed(&self, _nsp: &str, _changes: &[RoomChange]) {}

    /// Resolves once what other nodes send to `rooms` of `nsp` reaches
    /// this node (listened to and confirmed, for at most the cluster's
    /// request timeout): awaited before a client learns it is in them, so
    /// a broadcast another node sends after that is not lost.
    fn listen<'a>(&'a self, _nsp: &'a str, _rooms: &'a [Room]) -> AdapterFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Presence in `nsp` changed on this node.
    fn presence_changed(&self, _nsp: &str, _deltas: Vec<Delta>) {}

    /// Presence was turned on in a namespace: ask the others for theirs.
    fn presence_enabled(&self) {}

    /// Whether connections take cluster-wide units ([`acquire_caps`](Self::acquire_caps)).
    fn has_caps(&self) -> bool {
        false
    }

    /// Takes the cluster-wide units a connection needs, except those in
    /// `held`, which gets the new ones; `Err` names the cap that refused.
    fn acquire_caps<'a>(
        &'a self,
        _user: Option<&'a str>,
        _ip: IpAddr,
        _held: &'a mut Vec<String>,
    ) -> AdapterFuture<'a, Result<(), ConnectionRefused>> {
        Box::pin(async { Ok(()) })
    }

    /// Gives back a closed connection's units.
    fn release_caps(&self, _held: Vec<String>) {}

    /// Whether events are checked against a cluster-wide rate per user.
    fn has_user_rate(&self) -> bool {
        false
    }

    /// Counts one event of `user`: `None` when allowed, or how long until
    /// it would be.
    fn check_user_rate<'a>(&'a self, _user: &'a str) -> AdapterFuture<'a, Option<Duration>> {
        Box::pin(async { None })
    }

    /// A session of this node was kept for recovery, with `rooms`, for `window`.
    fn retain_session(&self, _nsp: &str, _pid: &str, _rooms: Vec<Room>, _window: Duration) {}

    /// A kept session was taken (or is gone) here.
    fn release_session(&self, _hub: &Hub, _pid: &str) {}

    /// Asks the other nodes for session `pid`, which this node does not hold.
    fn take_remote_session<'a>(
        &'a self,
        _nsp: &'a str,
        _pid: &'a str,
        _user: Option<&'a str>,
        _offset: Option<&'a str>,
    ) -> AdapterFuture<'a, RemoteSession> {
        Box::pin(async { RemoteSession::Unknown })
    }

    /// Completes a session taken from another node once this node listens
    /// to its rooms: the holder sends what it logged for it meanwhile
    /// (appended to `taken.missed`) and `taken.marks` says what this node's
    /// log adds. `false` when the holder did not answer: the session cannot
    /// be restored without a gap.
    fn finish_remote_session<'a>(&'a self, _ns: &'a Namespace, _taken: &'a mut Taken) -> AdapterFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// The concrete adapter (for the cluster's own calls on the hub).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// The adapter of a hub alone.
#[derive(Debug)]
pub(crate) struct Local;

impl Adapter for Local {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The adapter of every hub that joined no cluster.
pub(crate) static LOCAL: std::sync::LazyLock<std::sync::Arc<dyn Adapter>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(Local));

// --- the calls of the public API that go through the adapter ---------------

impl Namespace {
    /// Handles `event` when another node sends it with
    /// [`server_side_emit`](Self::server_side_emit) (socket.io's
    /// `io.on(event, ...)` for server-side events).
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Hub, ServerAck};
    /// use tidewire::protocol::socketio::Payload;
    /// let hub = Hub::default();
    /// hub.of("/").on_server_event("load?", |_args: Payload, ack: Option<ServerAck>| async move {
    ///     if let Some(ack) = ack {
    ///         ack.send(&serde_json::json!({ "sockets": 42 }));
    ///     }
    /// });
    /// ```
    pub fn on_server_event(&self, event: impl Into<String>, handler: impl ServerEventHandler) -> &Self {
        let handler: std::sync::Arc<dyn ServerEventHandler> = std::sync::Arc::new(handler);
        let event = event.into();
        self.update(|h| {
            h.server_events.insert(event, handler);
        });
        self
    }

    /// Sends `event` to the other nodes of the cluster (not to this one),
    /// socket.io's `serverSideEmit`. Without a cluster there is nobody to
    /// tell.
    ///
    /// # Errors
    /// [`ClusterError::Bus`] when the bus refuses the message.
    pub fn server_side_emit(&self, event: &str, args: &Payload) -> Result<(), ClusterError> {
        self.adapter().server_side_emit(self, event, args)
    }

    /// Sends `event` to the other nodes and gathers each one's answer (the
    /// value its handler acked with), for at most `timeout` (the cluster's
    /// request timeout when `None`).
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: &Payload,
        timeout: Option<Duration>,
    ) -> Gathered<Vec<Value>> {
        self.adapter().server_side_emit_with_ack(self, event, args, timeout).await
    }

    /// How many nodes serve this namespace, this one included (socket.io's
    /// `serverCount`): 1 outside a cluster.
    ///
    /// # Errors
    /// [`ClusterError::Bus`] when the bus cannot count.
    pub async fn server_count(&self) -> Result<usize, ClusterError> {
        self.adapter().server_count(self).await
    }

    /// Every room with a member on any node (each socket's own room
    /// included), sorted.
    pub async fn all_rooms(&self) -> Gathered<Vec<String>> {
        let Gathered { value: theirs, replies } = self.adapter().remote_rooms(self).await;
        let mut rooms: std::collections::HashSet<String> = self.rooms().iter().map(|r| r.to_string()).collect();
        rooms.extend(theirs);
        let mut value: Vec<String> = rooms.into_iter().collect();
        value.sort_unstable();
        Gathered { value, replies }
    }
}
