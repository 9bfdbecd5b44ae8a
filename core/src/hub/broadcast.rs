//! Broadcasts: one packet to the sockets a target reaches, encoded once.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::socket::AckSink;
use super::{Handshake, Namespace, Socket};
use crate::ack::{AckCollector, AckReport};
use crate::protocol::socketio::{Packet, Payload};
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
/// use tidewire::protocol::socketio::Payload;
/// let hub = Hub::default();
/// let reached = hub.of("/").to("room:1").to("room:2").except("user:42").volatile().emit("news", Payload::json(vec!["hi".into()]));
/// assert_eq!(reached, 0, "nobody is connected");
/// ```
#[derive(Debug, Clone)]
#[must_use = "a broadcast does nothing until emitted"]
pub struct BroadcastOperator {
    ns: Namespace,
    target: Target,
    flags: BroadcastFlags,
}

/// Why a broadcast with ack could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// A recipient has too many acks pending.
    #[error("a recipient has too many pending acknowledgements")]
    TooManyPending,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Namespace, target: Target) -> BroadcastOperator {
        BroadcastOperator { ns, target, flags: BroadcastFlags { compress: true, ..BroadcastFlags::default() } }
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

    /// Sends `event` with `args` to every socket the target reaches. The
    /// packet is encoded once; each recipient gets a shared copy. Returns
    /// how many sockets it was queued for.
    pub fn emit(&self, event: &str, args: Payload) -> usize {
        let sent = self.emit_inner(event, args);
        if let Some(hub) = self.ns.hub() {
            super::HubStats::add(&hub.stats().events_out, sent as u64);
        }
        sent
    }

    fn emit_inner(&self, event: &str, args: Payload) -> usize {
        if let Some(rec) = self.ns.recorder(!self.flags.volatile) {
            let ((sent, recipients), args) = self.ns.send_recorded(rec, &self.target, event, args, |frames| {
                let recipients = self.ns.resolve(&self.target);
                (recipients.iter().filter(|s| s.send_shared(frames, false).is_ok()).count(), recipients)
            });
            self.notify_outgoing(&recipients, event, &args);
            return sent;
        }
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
    /// encoded once.
    ///
    /// # Examples
    /// ```
    /// # async fn example() {
    /// use std::time::Duration;
    /// use tidewire::hub::Hub;
    /// use tidewire::protocol::socketio::Payload;
    /// let hub = Hub::default();
    /// let report = hub.to("voters").timeout(Duration::from_secs(2))
    ///     .emit_with_ack("vote?", Payload::default()).await.unwrap();
    /// for (socket, answer) in &report.responses {
    ///     println!("{socket} voted {:?}", answer.data);
    /// }
    /// println!("no answer from {:?}, gone: {:?}", report.timed_out, report.disconnected);
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`BroadcastError::TooManyPending`] when a recipient's ack table is
    /// full (nothing is sent then).
    pub async fn emit_with_ack(&self, event: &str, args: Payload) -> Result<AckReport<Payload>, BroadcastError> {
        let recipients = self.ns.resolve(&self.target);
        let id = self.ns.next_ack_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
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
        let timeout =
            self.flags.timeout.unwrap_or(self.ns.hub().map_or(Duration::from_secs(30), |h| h.config().ack_timeout));
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while !collector.is_complete() {
            tokio::select! {
                () = &mut deadline => break,
                answer = rx.recv() => match answer {
                    Some((socket, Some(payload))) => { collector.respond(&socket, payload); }
                    Some((socket, None)) => { collector.disconnected(&socket); }
                    None => break,
                },
            }
        }
        for s in &recipients {
            s.forget_ack(id);
        }
        Ok(collector.finish())
    }

    /// The sockets the target reaches, as snapshots that can still act on
    /// them (socket.io's `fetchSockets`). Asynchronous because in a cluster
    /// it asks the other nodes.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        self.ns.resolve(&self.target).iter().map(RemoteSocket::of).collect()
    }

    /// Makes every socket the target reaches join `rooms`.
    pub fn sockets_join<R: Into<Room>>(&self, rooms: impl IntoIterator<Item = R>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        for s in self.ns.resolve(&self.target) {
            if let Err(e) = s.join_many(rooms.iter().cloned()) {
                tracing::debug!(socket = s.id(), error = %e, "sockets_join skipped a socket");
            }
        }
    }

    /// Makes every socket the target reaches leave `room`.
    pub fn sockets_leave(&self, room: &str) {
        for s in self.ns.resolve(&self.target) {
            s.leave(room);
        }
    }

    /// Disconnects every socket the target reaches; with `close`, their
    /// whole connections too.
    pub fn disconnect_sockets(&self, close: bool) {
        for s in self.ns.resolve(&self.target) {
            s.disconnect(close);
        }
    }
}

/// A snapshot of a socket that may live on another node (socket.io's
/// `RemoteSocket`): what [`BroadcastOperator::fetch_sockets`] returns.
#[derive(Debug, Clone, Serialize)]
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
        }
    }

    /// The live socket, when it is on this node.
    pub fn local(&self) -> Option<&Socket> {
        self.local.as_ref()
    }

    /// Sends `event` to this socket. Returns whether it was queued.
    pub fn emit(&self, event: &str, args: Payload) -> bool {
        self.local.as_ref().is_some_and(|s| s.emit(event, args).is_ok())
    }

    /// Makes the socket join `room`.
    ///
    /// # Errors
    /// [`TooManyRooms`](super::TooManyRooms) when the socket is at its limit.
    pub fn join(&self, room: impl Into<Room>) -> Result<(), super::TooManyRooms> {
        match &self.local {
            Some(s) => s.join(room),
            None => Ok(()),
        }
    }

    /// Makes the socket leave `room`.
    pub fn leave(&self, room: &str) {
        if let Some(s) = &self.local {
            s.leave(room);
        }
    }

    /// Disconnects the socket; with `close`, its whole connection.
    pub fn disconnect(&self, close: bool) {
        if let Some(s) = &self.local {
            s.disconnect(close);
        }
    }
}
