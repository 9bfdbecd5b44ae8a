//! A socket: one namespace over the Manager's connection, with its
//! listeners, its outbound queue (the offline buffer), its acks and its
//! recovery state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::buffer::{Queued, SendBuffer};
use super::dispatch::Dispatch;
use super::link::polling_len;
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

/// Receives the failures of emits that had already returned: a packet that
/// waited in the send buffer and turned out larger than the server's
/// `maxPayload` when the connection was made. (An emit with an ack fails
/// through its ack instead.)
pub trait EmitErrorListener: Send + Sync + 'static {
    /// The emit of `event` failed with `error`.
    fn on_emit_error(&self, event: &str, error: &ClientError);
}

impl<F: Fn(&str, &ClientError) + Send + Sync + 'static> EmitErrorListener for F {
    fn on_emit_error(&self, event: &str, error: &ClientError) {
        self(event, error);
    }
}

/// The largest packet the server takes, as its last handshake said, and
/// how packets are measured on the transport in use.
#[derive(Debug, Default)]
pub(crate) struct ServerLimit {
    /// The server's `maxPayload` (0: not known yet).
    max: AtomicUsize,
    /// Binary travels as base64 (long-polling).
    polling: AtomicBool,
}

impl ServerLimit {
    pub(crate) fn set(&self, max: usize, polling: bool) {
        self.max.store(max, Ordering::Relaxed);
        self.polling.store(polling, Ordering::Relaxed);
    }

    /// The size of the largest of `frames` and the limit, when it is over.
    fn exceeded(&self, frames: &[Encoded]) -> Option<ClientError> {
        let max = self.max.load(Ordering::Relaxed);
        let polling = self.polling.load(Ordering::Relaxed);
        oversized(frames, max, polling)
    }
}

/// [`ClientError::PayloadTooLarge`] when one of `frames` is larger than
/// `max` on the transport (`max` 0: no limit).
pub(crate) fn oversized(frames: &[Encoded], max: usize, polling: bool) -> Option<ClientError> {
    let size = frames.iter().map(|f| if polling { polling_len(f) } else { f.len() }).max()?;
    (max > 0 && size > max).then_some(ClientError::PayloadTooLarge { size, max })
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
    /// Counts the connections: a reply is sent only on the connection
    /// its request came on.
    epoch: u64,
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
    errors: Mutex<Registry<dyn EmitErrorListener>>,
    /// Runs the listeners, in order, off the connection's task.
    dispatch: Dispatch,
    limit: Arc<ServerLimit>,
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
    pub(crate) listener_capacity: usize,
    pub(crate) limit: Arc<ServerLimit>,
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
                epoch: 0,
                pid: None,
                offset: None,
                sent_pid: None,
                queue: SendBuffer::new(w.capacity),
                acks: HashMap::new(),
                next_ack: 0,
            }),
            listeners: Mutex::default(),
            errors: Mutex::default(),
            dispatch: Dispatch::new(w.listener_capacity, &w.rt),
            limit: w.limit,
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
        core.epoch += 1;
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

    /// What is queued, when connected. A packet larger than `max` bytes
    /// on the transport (`polling`: binary as base64) is not sent: its ack,
    /// or else the emit-error listeners, hear of it.
    pub(crate) fn drain(self: &Arc<Self>, max: usize, polling: bool) -> Vec<Encoded> {
        let mut failed = Vec::new();
        let mut out = Vec::new();
        {
            let mut core = lock(&self.core);
            if !core.connected {
                return Vec::new();
            }
            for q in core.queue.take() {
                match oversized(&q.frames, max, polling) {
                    None => out.extend(q.frames),
                    Some(e) => failed.push((q, e)),
                }
            }
            for (q, e) in failed {
                match (q.ack.and_then(|id| core.acks.remove(&id)), q.event) {
                    (Some(tx), _) => {
                        let _ = tx.send(Err(e));
                    }
                    (None, Some(event)) => self.emit_error(event, e),
                    (None, None) => tracing::warn!(nsp = %self.nsp, error = %e, "an ack's answer was not sent"),
                }
            }
        }
        out
    }

    /// Tells the emit-error listeners, on the listener queue.
    fn emit_error(self: &Arc<Self>, event: ByteString, error: ClientError) {
        tracing::warn!(nsp = %self.nsp, event = %event, error = %error, "an emit failed");
        let inner = self.clone();
        self.dispatch.push(Box::new(move || {
            let listeners = lock(&inner.errors).all();
            for l in listeners {
                guarded(|| l.on_emit_error(&event, &error));
            }
        }));
    }

    /// An event from the server: delivered now when connected, kept for
    /// later while joining, dropped otherwise.
    pub(crate) fn on_event(self: &Arc<Self>, payload: Payload, id: Option<u64>) {
        {
            let mut core = lock(&self.core);
            if !core.connected {
                if core.joining && core.received.len() < core.queue.capacity() {
                    core.received.push((payload, id));
                }
                return;
            }
        }
        self.deliver(payload, id);
    }

    /// Queues the event for its listeners (see [`Dispatch`]): they run
    /// off the connection's task, then the ack (if asked) is answered with
    /// the first listener's answer.
    pub(crate) fn deliver(self: &Arc<Self>, mut payload: Payload, id: Option<u64>) {
        let name = match payload.data.first().and_then(Value::as_str) {
            Some(n) => n.to_owned(),
            None => return,
        };
        payload.data.remove(0);
        let epoch = {
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
            core.epoch
        };
        let inner = self.clone();
        let queued = self.dispatch.push(Box::new(move || inner.run_listeners(&name, &payload, id, epoch)));
        if !queued {
            tracing::warn!(nsp = %self.nsp, dropped = self.dispatch.dropped(), "the listener queue is full: an event was dropped");
        }
    }

    /// On the listener queue: the listeners of one event, then its reply.
    fn run_listeners(&self, name: &str, payload: &Payload, id: Option<u64>, epoch: u64) {
        let listeners = lock(&self.listeners).take_matching(name);
        let mut answer = None;
        for l in listeners {
            let reply = guarded(|| l.on_event(name, payload)).flatten();
            if answer.is_none() {
                answer = reply;
            }
        }
        let Some(id) = id else { return };
        let frames = Packet::ack(self.nsp.clone(), id, answer.unwrap_or_default()).encode();
        {
            let mut core = lock(&self.core);
            // The request's connection is gone: so is the server's wait.
            if !core.connected || core.epoch != epoch {
                return;
            }
            core.queue.push_reply(frames);
        }
        self.notify.notify_one();
    }

    /// The server's answer to one of our acks.
    pub(crate) fn on_ack(&self, id: u64, payload: Payload) {
        let tx = lock(&self.core).acks.remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(Ok(payload));
        }
    }

    fn push(&self, event: &str, frames: Vec<Encoded>, ack: Option<u64>, volatile: bool) -> Result<(), ClientError> {
        if let Some(e) = self.limit.exceeded(&frames) {
            return Err(e);
        }
        {
            let mut core = lock(&self.core);
            if volatile && !core.connected {
                return Ok(());
            }
            core.queue
                .push(Queued { frames, ack, event: Some(event.into()) })
                .map_err(|e| ClientError::BufferFull { capacity: e.capacity })?;
        }
        self.notify.notify_one();
        Ok(())
    }
}

/// The acks of packets already sent fail on a disconnection; those of
/// packets still queued wait for the next connection.
fn fail_sent_acks(core: &mut Core) -> Vec<AckSender> {
    core.queue.drop_replies();
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

    /// Calls `listener` when an emit that had already returned fails: it
    /// waited in the send buffer and is larger than the server's
    /// `maxPayload` (an emit with an ack fails through its ack instead).
    pub fn on_emit_error(&self, listener: impl EmitErrorListener) -> ListenerId {
        lock(&self.inner.errors).on("", Arc::new(listener), false)
    }

    /// Removes one listener (event, catch-all, emit-error or state).
    /// Returns whether it was registered.
    pub fn off(&self, id: ListenerId) -> bool {
        lock(&self.inner.listeners).remove(id) || lock(&self.inner.errors).remove(id) || self.inner.state.unlisten(id)
    }

    /// Events dropped because the listener queue was full (listeners
    /// slower than the events coming in; see
    /// [`ManagerOptions::listener_queue_capacity`](super::ManagerOptions::listener_queue_capacity)).
    pub fn dropped_events(&self) -> u64 {
        self.inner.dispatch.dropped()
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
    /// [`ClientError::BufferFull`] when the buffer is full,
    /// [`ClientError::PayloadTooLarge`] when a packet is larger than the
    /// server's `maxPayload` (once a handshake told it; before, the
    /// failure goes to [`on_emit_error`](Self::on_emit_error)).
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
                let _ = socket.await_ack(&event, frames, id, rx, opts.timeout).await;
            });
            return Ok(());
        }
        let frames = Packet::event(self.inner.nsp.clone(), event, args, None).encode();
        self.inner.push(event, frames, None, opts.volatile)
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
        if let Err(e) = self.inner.push(event, frames.clone(), Some(id), false) {
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
    /// disconnected after sending it), [`ClientError::PayloadTooLarge`]
    /// (also when it waited offline and the first handshake's
    /// `maxPayload` is smaller), or as [`emit`](Self::emit).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, ClientError> {
        let (frames, id, rx) = self.prepare_ack(event, args)?;
        self.await_ack(event, frames, id, rx, timeout).await
    }

    async fn await_ack(
        &self,
        event: &str,
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
                if let Err(e) = self.inner.push(event, frames.clone(), Some(id), false) {
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
