//! Broadcasts: one packet to the sockets a target reaches, encoded once.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::adapter::{Gathered, RemoteAck, RemoteAcks, RemoteOp, Replies};
use super::socket::AckSink;
use super::{EmitError, Handshake, Namespace, Socket};
use crate::ack::{AckCollector, AckReport};
use crate::engine::SendError;
use crate::protocol::args::{EncodeError, IntoPayload};
use crate::protocol::socketio::{Packet, Payload};
use crate::recovery::Origin;
use crate::rooms::{Room, Target};

/// Modifiers of a broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastFlags {
    /// Only this node's sockets, even in a cluster.
    pub local: bool,
    /// Dropped for a recipient that cannot take it right now (full queue)
    /// instead of disconnecting it.
    pub volatile: bool,
    /// Whether the packet may be compressed. Accepted for compatibility;
    /// the WebSocket transport does not negotiate compression yet.
    pub compress: bool,
    /// How long [`BroadcastOperator::emit_with_ack`] waits (the hub's
    /// `ack_timeout` when unset).
    pub timeout: Option<Duration>,
}

/// Builds and sends a broadcast (socket.io's `BroadcastOperator`): chain
/// [`to`](Self::to), [`except`](Self::except) and the flags, then
/// [`emit`](Self::emit). A broadcast made from a socket excludes that socket.
///
/// # Examples
/// ```
/// use tidewire::hub::Hub;
/// let hub = Hub::default();
/// let reached = hub.of("/").to("room:1").to("room:2").except("user:42").volatile().emit("news", "hi");
/// assert_eq!(reached, 0, "nobody is connected");
/// ```
#[derive(Debug, Clone)]
#[must_use = "a broadcast does nothing until emitted"]
pub struct BroadcastOperator {
    ns: Namespace,
    target: Target,
    flags: BroadcastFlags,
    /// Sent from this node, or delivering another node's broadcast.
    origin: Origin,
}

/// Why a broadcast with ack could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// A recipient has too many acks pending.
    #[error("a recipient has too many pending acknowledgements")]
    TooManyPending,
    /// The arguments could not be serialized (nothing was sent).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Namespace, target: Target) -> BroadcastOperator {
        BroadcastOperator {
            ns,
            target,
            flags: BroadcastFlags { compress: true, ..BroadcastFlags::default() },
            origin: Origin::Here,
        }
    }

    /// Delivers node `uid`'s broadcast here (only here: it was published
    /// by that node).
    pub(crate) fn sent_elsewhere(mut self, uid: &str) -> Self {
        self.flags.local = true;
        self.origin = Origin::Elsewhere(crate::recovery::NodeTag::of(uid));
        self
    }

    /// Also reaches the members of `room` (socket.io's `to` / `in`).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.target.rooms.contains(&room) {
            self.target.rooms.push(room);
        }
        self
    }

    /// Also reaches the members of each of `rooms`.
    pub fn to_many<R: Into<Room>>(mut self, rooms: impl IntoIterator<Item = R>) -> Self {
        for r in rooms {
            self = self.to(r);
        }
        self
    }

    /// Skips the members of `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.target.except.contains(&room) {
            self.target.except.push(room);
        }
        self
    }

    /// Only this node's sockets.
    pub fn local(mut self) -> Self {
        self.flags.local = true;
        self
    }

    /// Dropped for recipients whose queue is full, instead of
    /// disconnecting them.
    pub fn volatile(mut self) -> Self {
        self.flags.volatile = true;
        self
    }

    /// Sets whether the packet may be compressed.
    pub fn compress(mut self, yes: bool) -> Self {
        self.flags.compress = yes;
        self
    }

    /// How long [`emit_with_ack`](Self::emit_with_ack) waits for answers.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.flags.timeout = Some(timeout);
        self
    }

    /// The target rooms and exceptions.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The flags.
    pub fn flags(&self) -> BroadcastFlags {
        self.flags
    }

    /// Sends `event` with `args` to every socket the target reaches (`()`
    /// for no argument, a tuple for several, any other serializable value
    /// for one, or a [`Payload`]; see [`crate::protocol::args`]). The
    /// packet is encoded once; each recipient gets a shared copy.
    ///
    /// Returns how many sockets of this node it was queued for: in a
    /// cluster, the other nodes' recipients are not counted. Arguments
    /// that cannot be serialized are a bug of the caller: they are logged
    /// (`tracing::error!`) and nothing is sent (0).
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tidewire::hub::Hub;
    /// let hub = Hub::default();
    /// hub.to("room:1").emit("chat:new_message", json!({ "text": "hi" }));
    /// hub.to("room:1").emit("typing", ("ada", true)); // (user, typing) => ..
    /// ```
    pub fn emit(&self, event: &str, args: impl IntoPayload) -> usize {
        match args.into_payload() {
            Ok(args) => self.emit_payload(event, args),
            Err(e) => {
                tracing::error!(namespace = self.ns.name(), event, error = %e, "broadcast not sent");
                0
            }
        }
    }

    fn emit_payload(&self, event: &str, args: Payload) -> usize {
        // One look at the hub per broadcast: its adapter (borrowed, not
        // cloned) and its counters.
        let hub = self.ns.hub();
        let publish = |args: &Payload| {
            if !self.flags.local
                && let Some(hub) = &hub
            {
                hub.adapter().broadcast(&self.ns, &self.target, self.flags.volatile, event, args);
            }
        };
        let sent = if let Some(rec) = self.ns.recorder(!self.flags.volatile) {
            // Published under the log's lock, with the log's order: a
            // session handed to this node tells this node's packets
            // published after its marker by where they are in the log
            // (`cluster::recovery`).
            let ((sent, recipients), args) =
                self.ns.send_recorded(rec, self.origin, &self.target, event, args, publish, |frames| {
                    let recipients = self.ns.resolve(&self.target);
                    (recipients.iter().filter(|s| s.send_shared(frames, false).is_ok()).count(), recipients)
                });
            self.notify_outgoing(&recipients, event, &args);
            sent
        } else {
            publish(&args);
            self.emit_unrecorded(event, args)
        };
        if let Some(hub) = hub {
            super::HubStats::add(&hub.stats().events_out, sent as u64);
        }
        sent
    }

    fn emit_unrecorded(&self, event: &str, args: Payload) -> usize {
        let recipients = self.ns.resolve(&self.target);
        if recipients.is_empty() {
            return 0;
        }
        self.notify_outgoing(&recipients, event, &args);
        let frames = self.ns.parser().encode(&Packet::event(self.ns.name(), event, args, None));
        recipients.iter().filter(|s| s.send_shared(&frames, self.flags.volatile).is_ok()).count()
    }

    fn notify_outgoing(&self, recipients: &[Socket], event: &str, args: &Payload) {
        let handlers = self.ns.handlers();
        if handlers.outgoing.is_empty() {
            return;
        }
        for s in recipients {
            for l in &handlers.outgoing {
                l.on_event(s, event, args);
            }
        }
    }

    /// Sends `event` to every socket the target reaches and collects each
    /// one's acknowledgement, until all have answered or the timeout
    /// passes. One ack id serves every recipient, so the packet is still
    /// encoded once. In a cluster the other nodes deliver it too, report
    /// how many sockets they reached and forward each answer (which carries
    /// no socket id: its entry in [`AckReport::responses`] has an empty
    /// one); nodes that do not report are counted in
    /// [`AckReport::missing_nodes`].
    ///
    /// # Examples
    /// ```
    /// # async fn example() {
    /// use std::time::Duration;
    /// use tidewire::hub::Hub;
    /// let hub = Hub::default();
    /// let report = hub.to("voters").timeout(Duration::from_secs(2))
    ///     .emit_with_ack("vote?", ()).await.unwrap();
    /// for (socket, answer) in &report.responses {
    ///     println!("{socket} voted {:?}", answer.arg::<String>(0));
    /// }
    /// println!("no answer from {:?}, gone: {:?}", report.timed_out, report.disconnected);
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`BroadcastError::TooManyPending`] when a recipient's ack table is
    /// full, [`BroadcastError::Encode`] when `args` cannot be serialized
    /// (nothing is sent then).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: impl IntoPayload,
    ) -> Result<AckReport<Payload>, BroadcastError> {
        let args = args.into_payload()?;
        let timeout =
            self.flags.timeout.unwrap_or(self.ns.hub().map_or(Duration::from_secs(30), |h| h.config().ack_timeout));
        let adapter = self.ns.adapter();
        let remote_args = (!self.flags.local && adapter.clustered()).then(|| args.clone());
        let mut round = self.start_ack_round(event, args)?;
        let mut remote = match remote_args {
            Some(args) => adapter
                .broadcast_with_acks(&self.ns, &self.target, self.flags.volatile, timeout, event, &args)
                .await
                .map(|acks| Remote { acks, counted: 0 }),
            None => None,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut local_open = true;
        loop {
            // Remote answers are counted by the collector too, so it is
            // complete only once every reported recipient answered.
            let remote_done = remote.as_ref().is_none_or(|r| r.counted >= r.acks.nodes);
            if remote_done && round.collector.is_complete() || !local_open && remote.is_none() {
                break;
            }
            tokio::select! {
                () = &mut deadline => break,
                answer = round.next(), if local_open => {
                    local_open = answer.is_some();
                }
                answer = recv_remote(&mut remote) => match (answer, remote.as_mut()) {
                    (Some(answer), Some(r)) => r.take(answer, &mut round.collector),
                    _ => remote = None,
                },
            }
        }
        let missing_nodes = remote.as_ref().map_or(0, |r| r.acks.nodes.saturating_sub(r.counted));
        let mut report = round.finish();
        report.missing_nodes = missing_nodes;
        Ok(report)
    }

    /// Registers one ack id on every socket the target reaches on this node
    /// and sends them the event.
    pub(crate) fn start_ack_round(&self, event: &str, args: Payload) -> Result<AckRound, BroadcastError> {
        let recipients = self.ns.resolve(&self.target);
        let id = self.ns.next_ack_id();
        let (tx, rx) = mpsc::unbounded_channel();
        for (i, s) in recipients.iter().enumerate() {
            if s.register_ack(id, AckSink::Broadcast(tx.clone())).is_err() {
                for s in &recipients[..i] {
                    s.forget_ack(id);
                }
                return Err(BroadcastError::TooManyPending);
            }
        }
        drop(tx);
        self.notify_outgoing(&recipients, event, &args);
        let frames = self.ns.parser().encode(&Packet::event(self.ns.name(), event, args, Some(id)));
        let mut collector = AckCollector::new(recipients.iter().map(|s| s.id().to_owned()));
        for s in &recipients {
            if s.send_shared(&frames, self.flags.volatile).is_err() {
                s.forget_ack(id);
                collector.disconnected(s.id());
            }
        }
        Ok(AckRound { recipients, id, rx, collector })
    }

    /// The sockets the target reaches, as snapshots that can still act on
    /// them (socket.io's `fetchSockets`). In a cluster the other nodes are
    /// asked too; see [`Replies`] for who answered.
    pub async fn fetch_sockets(&self) -> Gathered<Vec<RemoteSocket>> {
        let mut sockets: Vec<RemoteSocket> = self.local_sockets().iter().map(RemoteSocket::of).collect();
        let mut replies = Replies::default();
        if !self.flags.local {
            let adapter = self.ns.adapter();
            let remote = adapter.fetch_sockets(&self.ns, &self.target).await;
            sockets.extend(remote.value);
            replies = remote.replies;
        }
        Gathered { value: sockets, replies }
    }

    /// The sockets the target reaches on this node.
    pub(crate) fn local_sockets(&self) -> Vec<Socket> {
        self.ns.resolve(&self.target)
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// Makes every socket the target reaches join `rooms` (on every node,
    /// unless [`local`](Self::local)).
    pub fn sockets_join<R: Into<Room>>(&self, rooms: impl IntoIterator<Item = R>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        for s in self.local_sockets() {
            if let Err(e) = s.join_many(rooms.iter().cloned()) {
                tracing::debug!(socket = s.id(), error = %e, "sockets_join skipped a socket");
            }
        }
        self.apply_remote(RemoteOp::Join(rooms));
    }

    /// Makes every socket the target reaches leave `room` (on every node,
    /// unless [`local`](Self::local)).
    pub fn sockets_leave(&self, room: &str) {
        for s in self.local_sockets() {
            s.leave(room);
        }
        self.apply_remote(RemoteOp::Leave(Room::from(room)));
    }

    /// Disconnects every socket the target reaches (on every node, unless
    /// [`local`](Self::local)); with `close`, their whole connections too.
    pub fn disconnect_sockets(&self, close: bool) {
        for s in self.local_sockets() {
            s.disconnect(close);
        }
        self.apply_remote(RemoteOp::Disconnect { close });
    }

    /// Applies `op` on the other nodes too, unless [`local`](Self::local).
    fn apply_remote(&self, op: RemoteOp) {
        if !self.flags.local {
            self.ns.adapter().apply(&self.ns, &self.target, op);
        }
    }
}

/// One ack id registered on this node's recipients of a broadcast.
pub(crate) struct AckRound {
    recipients: Vec<Socket>,
    id: u64,
    rx: mpsc::UnboundedReceiver<(Arc<str>, Option<Payload>)>,
    pub(crate) collector: AckCollector<Payload>,
}

impl AckRound {
    /// How many sockets got the event.
    pub(crate) fn expected(&self) -> usize {
        self.recipients.len()
    }

    /// Whether every recipient answered or left.
    pub(crate) fn is_complete(&self) -> bool {
        self.collector.is_complete()
    }

    /// The next answer (`Some(None)` for a recipient that left), recorded;
    /// `None` once nothing more can come.
    pub(crate) async fn next(&mut self) -> Option<Option<Payload>> {
        let (socket, answer) = self.rx.recv().await?;
        match &answer {
            Some(payload) => {
                self.collector.respond(&socket, payload.clone());
            }
            None => {
                self.collector.disconnected(&socket);
            }
        }
        Some(answer)
    }

    /// Forgets the ack id and reports.
    pub(crate) fn finish(self) -> AckReport<Payload> {
        for s in &self.recipients {
            s.forget_ack(self.id);
        }
        self.collector.finish()
    }
}

/// The other nodes' side of a broadcast with acks.
struct Remote {
    acks: RemoteAcks,
    /// Nodes that reported their client count.
    counted: usize,
}

impl Remote {
    fn take(&mut self, answer: RemoteAck, collector: &mut AckCollector<Payload>) {
        match answer {
            RemoteAck::Count(n) => {
                self.counted += 1;
                collector.expect_remote(n);
            }
            RemoteAck::Answer(payload) => {
                collector.respond_remote(String::new(), payload);
            }
        }
    }
}

async fn recv_remote(remote: &mut Option<Remote>) -> Option<RemoteAck> {
    match remote {
        Some(r) => r.acks.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A snapshot of a socket that may live on another node (socket.io's
/// `RemoteSocket`): what [`BroadcastOperator::fetch_sockets`] returns.
#[derive(Clone, Serialize)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// The namespace.
    #[serde(skip)]
    pub namespace: String,
    /// The handshake it connected with.
    pub handshake: Arc<Handshake>,
    /// Its rooms (its own id included).
    pub rooms: Vec<String>,
    /// Its data.
    pub data: Value,
    #[serde(skip)]
    local: Option<Socket>,
    #[serde(skip)]
    ns: Namespace,
}

impl std::fmt::Debug for RemoteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSocket")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("rooms", &self.rooms)
            .field("data", &self.data)
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl RemoteSocket {
    fn of(socket: &Socket) -> RemoteSocket {
        RemoteSocket {
            id: socket.id().to_owned(),
            namespace: socket.namespace().to_owned(),
            handshake: socket.handshake_arc(),
            rooms: socket.rooms().iter().map(|r| r.to_string()).collect(),
            data: socket.data(),
            local: Some(socket.clone()),
            ns: socket.nsp().clone(),
        }
    }

    /// A socket of another node.
    pub(crate) fn remote(
        ns: Namespace,
        id: String,
        handshake: Arc<Handshake>,
        rooms: Vec<String>,
        data: Value,
    ) -> RemoteSocket {
        RemoteSocket { id, namespace: ns.name().to_owned(), handshake, rooms, data, local: None, ns }
    }

    /// The live socket, when it is on this node.
    pub fn local(&self) -> Option<&Socket> {
        self.local.as_ref()
    }

    /// Only this socket, wherever it is (its own room).
    fn only(&self) -> BroadcastOperator {
        self.ns.to(self.id.as_str())
    }

    /// Sends `event` to this socket: queued here, or handed to the bus for
    /// its node (whose answer is not awaited).
    ///
    /// # Errors
    /// As [`Socket::emit`]; for a socket of another node,
    /// [`SendError::Closed`] when this hub has left the cluster.
    pub fn emit(&self, event: &str, args: impl IntoPayload) -> Result<(), EmitError> {
        match &self.local {
            Some(s) => s.emit(event, args),
            None => {
                let args = args.into_payload()?;
                if !self.ns.adapter().clustered() {
                    return Err(SendError::Closed.into());
                }
                self.only().emit_payload(event, args);
                Ok(())
            }
        }
    }

    /// Makes the socket join `room`. A socket of another node joins when
    /// its node gets the request.
    ///
    /// # Errors
    /// [`TooManyRooms`](super::TooManyRooms) when a socket of this node is at
    /// its limit.
    pub fn join(&self, room: impl Into<Room>) -> Result<(), super::TooManyRooms> {
        match &self.local {
            Some(s) => s.join(room),
            None => {
                self.only().sockets_join([room]);
                Ok(())
            }
        }
    }

    /// Makes the socket leave `room`.
    pub fn leave(&self, room: &str) {
        match &self.local {
            Some(s) => s.leave(room),
            None => self.only().sockets_leave(room),
        }
    }

    /// Disconnects the socket; with `close`, its whole connection.
    pub fn disconnect(&self, close: bool) {
        match &self.local {
            Some(s) => s.disconnect(close),
            None => self.only().disconnect_sockets(close),
        }
    }
}
