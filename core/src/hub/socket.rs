//! Sockets: one client's presence in one namespace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::client::ClientShared;
use super::handler::run_now_or_spawn;
use super::{DisconnectReason, Event, Handshake, Namespace};
use crate::engine::{CloseReason, SendError, Session};
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::{Packet, Payload};

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
    /// The event could not be sent.
    #[error("send failed: {0}")]
    Send(#[from] SendError),
}

/// A client's presence in one namespace (socket.io's `Socket`). Cheap to
/// clone; every clone is the same socket.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    namespace: Namespace,
    session: Session,
    handshake: Arc<Handshake>,
    user_id: Option<String>,
    data: Mutex<Value>,
    connected: AtomicBool,
    next_ack: AtomicU64,
    acks: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
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

/// Answers one event's acknowledgement. Dropping it unanswered leaves the
/// client's callback pending (until its own timeout, if any).
#[derive(Debug)]
pub struct AckResponder {
    socket: Socket,
    id: u64,
}

impl AckResponder {
    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the acknowledgement with `args` (a BINARY_ACK when `args` has
    /// attachments).
    ///
    /// # Errors
    /// [`SendError`] when the connection is closed or its queue is full.
    pub fn send(self, args: Payload) -> Result<(), SendError> {
        let s = &self.socket;
        let frames = s.inner.namespace.parser().encode(&Packet::ack(s.namespace().to_owned(), self.id, args));
        s.send_encoded(frames)
    }
}

impl Socket {
    pub(crate) fn new(
        id: String,
        namespace: Namespace,
        session: Session,
        handshake: Arc<Handshake>,
        admission: super::Admission,
        client: Weak<ClientShared>,
        ack_timeout: Duration,
    ) -> Socket {
        Socket {
            inner: Arc::new(Inner {
                id,
                namespace,
                session,
                handshake,
                user_id: admission.user_id,
                data: Mutex::new(admission.data.unwrap_or(Value::Null)),
                connected: AtomicBool::new(true),
                next_ack: AtomicU64::new(0),
                acks: Mutex::new(HashMap::new()),
                client,
                ack_timeout,
            }),
        }
    }

    /// The socket id (distinct from the Engine.IO session id).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        self.inner.namespace.name()
    }

    /// The handshake the socket connected with.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The user the connect middleware authenticated, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }

    /// The data the middlewares attached (`socket.data`).
    pub fn data(&self) -> Value {
        self.inner.data.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        *self.inner.data.lock().unwrap_or_else(PoisonError::into_inner) = data;
    }

    /// The Engine.IO session carrying this socket.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Whether the socket is still connected to its namespace.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    pub(crate) fn send_encoded(&self, frames: impl IntoIterator<Item = Encoded>) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        self.inner.session.send(frames)
    }

    /// Sends `event` with `args` to this client.
    ///
    /// # Errors
    /// [`SendError`] when the connection is closed or its queue is full.
    pub fn emit(&self, event: &str, args: Payload) -> Result<(), SendError> {
        let packet = Packet::event(self.namespace().to_owned(), event, args, None);
        self.send_encoded(self.inner.namespace.parser().encode(&packet))
    }

    /// Sends `event` and waits for the client's acknowledgement, at most
    /// `timeout` (the hub's default `ack_timeout` when `None`).
    ///
    /// # Errors
    /// [`AckError::Timeout`], [`AckError::Disconnected`] or [`AckError::Send`].
    pub async fn emit_with_ack(&self, event: &str, args: Payload, timeout: Option<Duration>) -> Result<Payload, AckError> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks().insert(id, tx);
        let packet = Packet::event(self.namespace().to_owned(), event, args, Some(id));
        if let Err(e) = self.send_encoded(self.inner.namespace.parser().encode(&packet)) {
            self.acks().remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout.unwrap_or(self.inner.ack_timeout), rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.acks().remove(&id);
                Err(AckError::Timeout)
            }
        }
    }

    fn acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Payload>>> {
        self.inner.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn resolve_ack(&self, id: u64, payload: Payload) {
        if let Some(tx) = self.acks().remove(&id) {
            let _ = tx.send(payload);
        }
    }

    /// Dispatches an event from the client to the namespace's handler.
    pub(crate) fn dispatch(&self, mut payload: Payload, id: Option<u64>) {
        let name = match payload.data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let handlers = self.inner.namespace.handlers();
        let Some(handler) = handlers.events.get(&name).or(handlers.any.as_ref()).cloned() else {
            tracing::trace!(socket = self.id(), event = %name, "no handler");
            return;
        };
        let ack = id.map(|id| AckResponder { socket: self.clone(), id });
        run_now_or_spawn(handler.call(self.clone(), Event { name, args: payload, ack }));
    }

    /// Disconnects the socket from its namespace (socket.io's
    /// `socket.disconnect(close)`): the client gets a DISCONNECT packet; with
    /// `close`, the whole connection (every namespace) is closed too.
    pub fn disconnect(&self, close: bool) {
        if self.connected() {
            let _ = self.send_encoded(
                self.inner.namespace.parser().encode(&Packet::disconnect(self.namespace().to_owned())),
            );
        }
        if let Some(client) = self.inner.client.upgrade() {
            client.remove_socket(self.namespace());
        }
        self.closed(DisconnectReason::ServerNamespaceDisconnect);
        if close {
            self.inner.session.close(CloseReason::ForcedClose);
        }
    }

    /// Marks the socket disconnected, once, and runs the disconnect handlers.
    pub(crate) fn closed(&self, reason: DisconnectReason) {
        if !self.inner.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        self.inner.namespace.remove(self.id());
        // Pending acks fail with `Disconnected`.
        self.acks().clear();
        for h in self.inner.namespace.handlers().on_disconnect.iter() {
            run_now_or_spawn(h.call(self.clone(), reason));
        }
    }
}
