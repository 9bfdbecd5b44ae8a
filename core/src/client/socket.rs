//! A socket: one namespace over the Manager's connection, with its
//! listeners, its outbound queue (the offline buffer), its acks and its
//! recovery state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::buffer::{Queued, SendBuffer};
use super::listeners::{ListenerId, Registry};
use super::manager::{Cmd, Handle};
use super::options::{Auth, EmitOptions};
use super::state::{StateCell, StateListener};
use super::{ClientError, guarded, lock};
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::{MAX_ACK_ID, Packet, Payload, RESERVED_EVENTS};

/// Where a socket stands.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketState {
    /// Waiting for the connection and the server's CONNECT answer.
    Connecting,
    /// Joined the namespace as socket `sid`; `recovered` when the server
    /// restored the previous session (rooms kept, missed events replayed).
    Connected {
        /// The socket id.
        sid: String,
        /// Whether connection state recovery restored the session.
        recovered: bool,
    },
    /// Not connected, for this reason (socket.io's: `io client
    /// disconnect`, `io server disconnect`, `transport close`, `transport
    /// error`, `ping timeout`, `parse error`, `network change`; `connect
    /// error: ...` when the connection could not be made, `reconnect
    /// failed` when the manager gave up).
    Disconnected {
        /// Why.
        reason: String,
        /// Whether the manager is reconnecting.
        will_reconnect: bool,
    },
    /// The server refused the namespace (its middleware's CONNECT_ERROR):
    /// not retried until [`Socket::connect`].
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, if any.
        data: Option<Value>,
    },
}

/// Receives events. The return value of the first listener that returns
/// `Some` answers a server's ack request (after every listener ran); with
/// none, the ack is answered with no arguments.
pub trait Listener: Send + Sync + 'static {
    /// `event` arrived with `args`.
    fn on_event(&self, event: &str, args: &Payload) -> Option<Payload>;
}

impl<F: Fn(&str, &Payload) -> Option<Payload> + Send + Sync + 'static> Listener for F {
    fn on_event(&self, event: &str, args: &Payload) -> Option<Payload> {
        self(event, args)
    }
}

type AckSender = oneshot::Sender<Result<Payload, ClientError>>;
type AckReceiver = oneshot::Receiver<Result<Payload, ClientError>>;

struct Core {
    /// The app wants this socket connected.
    active: bool,
    /// A CONNECT was sent and not answered yet.
    joining: bool,
    /// Events that came before the CONNECT answer (a recovering server
    /// replays missed events first), delivered once connected.
    received: Vec<(Payload, Option<u64>)>,
    connected: bool,
    pid: Option<String>,
    offset: Option<String>,
    sent_pid: Option<String>,
    queue: SendBuffer,
    acks: HashMap<u64, AckSender>,
    next_ack: u64,
}

pub(crate) struct SocketInner {
    pub(crate) nsp: ByteString,
    auth: Auth,
    core: Mutex<Core>,
    listeners: Mutex<Registry<dyn Listener>>,
    pub(crate) state: StateCell<SocketState>,
    cmd: mpsc::UnboundedSender<Cmd>,
    notify: Arc<Notify>,
    ack_timeout: Option<Duration>,
    retries: u32,
}

/// The settings a socket takes from its manager.
pub(crate) struct Wiring {
    pub(crate) cmd: mpsc::UnboundedSender<Cmd>,
    pub(crate) notify: Arc<Notify>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) ack_timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) capacity: usize,
}

impl SocketInner {
    pub(crate) fn new(nsp: ByteString, auth: Auth, w: Wiring) -> SocketInner {
        SocketInner {
            nsp,
            auth,
            core: Mutex::new(Core {
                active: false,
                joining: false,
                received: Vec::new(),
                connected: false,
                pid: None,
                offset: None,
                sent_pid: None,
                queue: SendBuffer::new(w.capacity),
                acks: HashMap::new(),
                next_ack: 0,
            }),
            listeners: Mutex::default(),
            state: StateCell::new(
                SocketState::Disconnected { reason: "not connected".into(), will_reconnect: false },
                &w.rt,
            ),
            cmd: w.cmd,
            notify: w.notify,
            ack_timeout: w.ack_timeout,
            retries: w.retries,
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        lock(&self.core).active
    }

    /// The CONNECT packet for a new session: the auth payload (a provider
    /// is asked now) with the recovery `pid` and `offset`.
    pub(crate) fn connect_packet(&self) -> Vec<Encoded> {
        let mut auth = self.auth.resolve();
        let mut core = lock(&self.core);
        core.sent_pid = core.pid.clone();
        core.joining = true;
        core.received.clear();
        if let Some(pid) = &core.pid {
            let mut obj = match auth.take() {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            obj.insert("pid".into(), Value::String(pid.clone()));
            if let Some(offset) = &core.offset {
                obj.insert("offset".into(), Value::String(offset.clone()));
            }
            auth = Some(Value::Object(obj));
        }
        drop(core);
        self.state.set(SocketState::Connecting);
        Packet { nsp: self.nsp.clone(), kind: crate::protocol::socketio::PacketKind::Connect(auth) }.encode()
    }

    /// The server accepted the CONNECT. Returns the events that came
    /// before the answer, for [`deliver`](Self::deliver).
    pub(crate) fn on_connected(&self, reply: &Value) -> Vec<(Payload, Option<u64>)> {
        let sid = reply.get("sid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let pid = reply.get("pid").and_then(Value::as_str).map(str::to_owned);
        let mut core = lock(&self.core);
        let recovered = pid.is_some() && core.sent_pid == pid;
        if !recovered {
            core.offset = None;
        }
        core.pid = pid;
        core.connected = true;
        core.joining = false;
        let early = std::mem::take(&mut core.received);
        drop(core);
        self.state.set(SocketState::Connected { sid, recovered });
        self.notify.notify_one();
        early
    }

    /// The server refused the CONNECT.
    pub(crate) fn on_refused(&self, body: &Value) {
        let message = body.get("message").and_then(Value::as_str).unwrap_or("refused").to_owned();
        let data = body.get("data").cloned();
        {
            let mut core = lock(&self.core);
            core.active = false;
            core.connected = false;
            core.joining = false;
        }
        self.state.set(SocketState::Refused { message, data });
    }

    /// The connection ended or could not be made.
    pub(crate) fn on_closed(&self, reason: &str, will_reconnect: bool, server: bool) {
        let failed = {
            let mut core = lock(&self.core);
            if !core.active && !core.connected {
                return;
            }
            if server {
                core.active = false;
            }
            core.connected = false;
            fail_sent_acks(&mut core)
        };
        for tx in failed {
            let _ = tx.send(Err(ClientError::Disconnected));
        }
        self.state
            .set(SocketState::Disconnected { reason: reason.to_owned(), will_reconnect: will_reconnect && !server });
    }

    /// What is queued, when connected.
    pub(crate) fn drain(&self) -> Vec<Encoded> {
        let mut core = lock(&self.core);
        if !core.connected {
            return Vec::new();
        }
        core.queue.take().into_iter().flat_map(|q| q.frames).collect()
    }

    /// An event from the server: delivered now when connected, kept for
    /// later while joining, dropped otherwise.
    pub(crate) fn on_event(&self, payload: Payload, id: Option<u64>) -> Vec<Encoded> {
        {
            let mut core = lock(&self.core);
            if !core.connected {
                if core.joining && core.received.len() < core.queue.capacity() {
                    core.received.push((payload, id));
                }
                return Vec::new();
            }
        }
        self.deliver(payload, id)
    }

    /// Listeners run, then the ack (if asked) is answered with the first
    /// listener's answer.
    pub(crate) fn deliver(&self, mut payload: Payload, id: Option<u64>) -> Vec<Encoded> {
        let name = match payload.data.first().and_then(Value::as_str) {
            Some(n) => n.to_owned(),
            None => return Vec::new(),
        };
        payload.data.remove(0);
        {
            let mut core = lock(&self.core);
            // With recovery on, the server appends the event's offset to
            // every event it records (those without ack id).
            if core.pid.is_some()
                && id.is_none()
                && let Some(Value::String(_)) = payload.data.last()
                && let Some(Value::String(offset)) = payload.data.pop()
            {
                core.offset = Some(offset);
            }
        }
        let listeners = lock(&self.listeners).take_matching(&name);
        let mut answer = None;
        for l in listeners {
            let reply = guarded(|| l.on_event(&name, &payload)).flatten();
            if answer.is_none() {
                answer = reply;
            }
        }
        match id {
            Some(id) => Packet::ack(self.nsp.clone(), id, answer.unwrap_or_default()).encode(),
            None => Vec::new(),
        }
    }

    /// The server's answer to one of our acks.
    pub(crate) fn on_ack(&self, id: u64, payload: Payload) {
        let tx = lock(&self.core).acks.remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(Ok(payload));
        }
    }

    fn push(&self, frames: Vec<Encoded>, ack: Option<u64>, volatile: bool) -> Result<(), ClientError> {
        {
            let mut core = lock(&self.core);
            if volatile && !core.connected {
                return Ok(());
            }
            core.queue.push(Queued { frames, ack }).map_err(|e| ClientError::BufferFull { capacity: e.capacity })?;
        }
        self.notify.notify_one();
        Ok(())
    }
}

/// The acks of packets already sent fail on a disconnection; those of
/// packets still queued wait for the next connection.
fn fail_sent_acks(core: &mut Core) -> Vec<AckSender> {
    let ids: Vec<u64> = core.acks.keys().copied().filter(|id| !core.queue.holds_ack(*id)).collect();
    ids.into_iter().filter_map(|id| core.acks.remove(&id)).collect()
}

fn check_event(event: &str) -> Result<(), ClientError> {
    if RESERVED_EVENTS.contains(&event) {
        return Err(ClientError::InvalidArgument(format!("{event:?} is a reserved event name")));
    }
    Ok(())
}

/// One namespace of a [`Manager`](super::Manager); clones share it. The
/// manager's connection stays open while any of its sockets or the manager
/// itself is held.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
    pub(crate) manager: Arc<Handle>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("nsp", &self.inner.nsp).field("state", &self.state()).finish()
    }
}

impl Socket {
    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.nsp
    }

    /// Connects (the manager opens its connection if needed). Also after a
    /// refusal or [`disconnect`](Self::disconnect).
    pub fn connect(&self) {
        {
            let mut core = lock(&self.inner.core);
            if core.active {
                return;
            }
            core.active = true;
        }
        self.inner.state.set(SocketState::Connecting);
        let _ = self.inner.cmd.send(Cmd::Connect(self.inner.nsp.clone()));
    }

    /// Leaves the namespace; no reconnection. The manager closes its
    /// connection when no socket remains connected. Pending acks fail with
    /// [`ClientError::Disconnected`].
    pub fn disconnect(&self) {
        let failed = {
            let mut core = lock(&self.inner.core);
            let was = core.active || core.connected;
            core.active = false;
            core.connected = false;
            core.joining = false;
            if !was {
                return;
            }
            fail_sent_acks(&mut core)
        };
        for tx in failed {
            let _ = tx.send(Err(ClientError::Disconnected));
        }
        self.inner
            .state
            .set(SocketState::Disconnected { reason: "io client disconnect".into(), will_reconnect: false });
        let _ = self.inner.cmd.send(Cmd::Leave(self.inner.nsp.clone()));
    }

    /// The current state.
    pub fn state(&self) -> SocketState {
        self.inner.state.get()
    }

    /// A receiver of the current state.
    pub fn watch_state(&self) -> watch::Receiver<SocketState> {
        self.inner.state.subscribe()
    }

    /// Calls `listener` with every state change from now on, in order.
    pub fn on_state(&self, listener: impl StateListener<SocketState>) -> ListenerId {
        self.inner.state.listen(Arc::new(listener))
    }

    /// The socket id, while connected.
    pub fn id(&self) -> Option<String> {
        match self.state() {
            SocketState::Connected { sid, .. } => Some(sid),
            _ => None,
        }
    }

    /// Whether the socket is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.state(), SocketState::Connected { .. })
    }

    /// Whether the last connection restored the previous session.
    pub fn recovered(&self) -> bool {
        matches!(self.state(), SocketState::Connected { recovered: true, .. })
    }

    /// Calls `listener` for each `event`.
    pub fn on(&self, event: &str, listener: impl Listener) -> ListenerId {
        lock(&self.inner.listeners).on(event, Arc::new(listener), false)
    }

    /// Calls `listener` for the next `event` only.
    pub fn once(&self, event: &str, listener: impl Listener) -> ListenerId {
        lock(&self.inner.listeners).on(event, Arc::new(listener), true)
    }

    /// Calls `listener` for every event (before the event's own listeners).
    pub fn on_any(&self, listener: impl Listener) -> ListenerId {
        lock(&self.inner.listeners).on_any(Arc::new(listener))
    }

    /// Removes one listener (event, catch-all or state). Returns whether
    /// it was registered.
    pub fn off(&self, id: ListenerId) -> bool {
        lock(&self.inner.listeners).remove(id) || self.inner.state.unlisten(id)
    }

    /// Removes every listener of `event`.
    pub fn off_event(&self, event: &str) {
        lock(&self.inner.listeners).remove_event(event);
    }

    /// Removes every catch-all listener.
    pub fn off_any(&self) {
        lock(&self.inner.listeners).remove_any();
    }

    /// Removes every event listener.
    pub fn off_all(&self) {
        lock(&self.inner.listeners).clear();
    }

    /// Sends `event` with `args`; while offline it waits in the send buffer
    /// and goes out, in order, once connected.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a reserved event name,
    /// [`ClientError::BufferFull`] when the buffer is full.
    pub fn emit(&self, event: &str, args: Payload) -> Result<(), ClientError> {
        self.emit_with(event, args, EmitOptions::default())
    }

    /// [`emit`](Self::emit) with options: `volatile` drops the event
    /// instead of buffering it while offline. With the manager's `retries`,
    /// the event is sent with an ack id and sent again until the server
    /// acknowledges it.
    ///
    /// # Errors
    /// As [`emit`](Self::emit).
    pub fn emit_with(&self, event: &str, args: Payload, opts: EmitOptions) -> Result<(), ClientError> {
        check_event(event)?;
        if self.inner.retries > 0 && !opts.volatile {
            let (socket, event) = (self.clone(), event.to_owned());
            let (frames, id, rx) = self.prepare_ack(&event, args)?;
            self.manager.shared.rt.spawn(async move {
                let _ = socket.await_ack(frames, id, rx, opts.timeout).await;
            });
            return Ok(());
        }
        let frames = Packet::event(self.inner.nsp.clone(), event, args, None).encode();
        self.inner.push(frames, None, opts.volatile)
    }

    fn prepare_ack(&self, event: &str, args: Payload) -> Result<(Vec<Encoded>, u64, AckReceiver), ClientError> {
        check_event(event)?;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut core = lock(&self.inner.core);
            let id = core.next_ack;
            core.next_ack = (id + 1) % (MAX_ACK_ID + 1);
            core.acks.insert(id, tx);
            id
        };
        let frames = Packet::event(self.inner.nsp.clone(), event, args, Some(id)).encode();
        if let Err(e) = self.inner.push(frames.clone(), Some(id), false) {
            lock(&self.inner.core).acks.remove(&id);
            return Err(e);
        }
        Ok((frames, id, rx))
    }

    /// Sends `event` and waits for the server's acknowledgement, up to
    /// `timeout` (default: the manager's `ack_timeout`), sending it again
    /// up to the manager's `retries` times with the same ack id.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Disconnected`] (the socket
    /// disconnected after sending it), or as [`emit`](Self::emit).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, ClientError> {
        let (frames, id, rx) = self.prepare_ack(event, args)?;
        self.await_ack(frames, id, rx, timeout).await
    }

    async fn await_ack(
        &self,
        frames: Vec<Encoded>,
        id: u64,
        mut rx: AckReceiver,
        timeout: Option<Duration>,
    ) -> Result<Payload, ClientError> {
        let timeout = timeout.or(self.inner.ack_timeout);
        let mut tries_left = self.inner.retries;
        loop {
            let outcome = match timeout {
                Some(t) => tokio::time::timeout(t, &mut rx).await.ok(),
                None => Some((&mut rx).await),
            };
            let retry = match outcome {
                Some(Ok(Ok(payload))) => return Ok(payload),
                Some(Ok(Err(e))) if tries_left == 0 => return Err(e),
                Some(Ok(Err(_))) => true,
                Some(Err(_)) => return Err(ClientError::Disconnected),
                None => {
                    let mut core = lock(&self.inner.core);
                    core.queue.remove_ack(id);
                    core.acks.remove(&id);
                    if tries_left == 0 {
                        return Err(ClientError::Timeout);
                    }
                    true
                }
            };
            if retry {
                tries_left -= 1;
                let (tx, new_rx) = oneshot::channel();
                rx = new_rx;
                lock(&self.inner.core).acks.insert(id, tx);
                if let Err(e) = self.inner.push(frames.clone(), Some(id), false) {
                    lock(&self.inner.core).acks.remove(&id);
                    return Err(e);
                }
            }
        }
    }

    /// The manager this socket belongs to.
    pub fn manager(&self) -> super::Manager {
        super::Manager { handle: self.manager.clone() }
    }
}
