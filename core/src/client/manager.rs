//! The Manager: one Engine.IO connection shared by several namespaces,
//! opened over the preferred transport (polling upgraded to WebSocket by
//! default), watched with the server's heartbeat, and reopened with
//! exponential backoff when it drops.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::link::{self, Dial, Link, Opened};
use super::listeners::ListenerId;
use super::options::{ManagerOptions, SocketOptions, TransportKind};
use super::proxy::Route;
use super::socket::{ServerLimit, Socket, SocketInner, Wiring};
use super::state::{StateCell, StateListener};
use super::url::Endpoint;
use super::{ClientError, lock, tls};
use crate::protocol::engine::{self, Encoded, Frame};
use crate::protocol::socketio::{Decoder, Limits, Packet, PacketKind};

/// Where a manager stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagerState {
    /// Not connected and not trying (no socket wants a connection).
    Idle,
    /// Opening the connection; `attempt` is 0 for the first, then the
    /// reconnection attempt's number.
    Opening {
        /// The reconnection attempt (0: first connection).
        attempt: u32,
    },
    /// Connected over `transport`.
    Open {
        /// The transport in use.
        transport: TransportKind,
    },
    /// Waiting `delay` before reconnection attempt `attempt`, after `error`.
    Waiting {
        /// The attempt to come.
        attempt: u32,
        /// The backoff delay.
        delay: Duration,
        /// Why the last connection ended or failed.
        error: String,
    },
    /// Stopped: closed by the app (`io client disconnect`), reconnection
    /// off after a loss, or every attempt failed (`reconnect failed`).
    Closed {
        /// Why.
        reason: String,
    },
}

/// A hint from the app's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    Background,
    Foreground,
    PathChanged,
}

pub(crate) enum Cmd {
    Open,
    Close,
    Connect(ByteString),
    Leave(ByteString),
    Hint(Hint),
    Shutdown,
}

pub(crate) struct Shared {
    opts: ManagerOptions,
    dial: Dial,
    pub(crate) rt: tokio::runtime::Handle,
    cmd: mpsc::UnboundedSender<Cmd>,
    notify: Arc<Notify>,
    sockets: Mutex<HashMap<ByteString, Arc<SocketInner>>>,
    state: StateCell<ManagerState>,
    /// The server's `maxPayload`, from the last handshake.
    limit: Arc<ServerLimit>,
}

impl Shared {
    fn sockets(&self) -> Vec<Arc<SocketInner>> {
        lock(&self.sockets).values().cloned().collect()
    }

    fn socket(&self, nsp: &str) -> Option<Arc<SocketInner>> {
        lock(&self.sockets).get(nsp).cloned()
    }

    fn any_active(&self) -> bool {
        self.sockets().iter().any(|s| s.is_active())
    }
}

/// What the app holds; the last one dropped closes the connection.
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shared.cmd.send(Cmd::Shutdown);
    }
}

/// Several namespaces over one connection (socket.io-client's `Manager`);
/// clones share it.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), tidewire::client::ClientError> {
/// use tidewire::client::{Manager, ManagerOptions, SocketOptions};
/// use tidewire::protocol::socketio::Payload;
/// let manager = Manager::new("https://chat.example.com", ManagerOptions::default())?;
/// let socket = manager.socket("/", SocketOptions::default()); // connects (auto_connect)
/// socket.on("news", |_event: &str, args: &Payload| {
///     println!("{:?}", args.data);
///     None
/// });
/// socket.emit("hello", Payload::json(vec!["world".into()]))?; // buffered until connected
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    pub(crate) handle: Arc<Handle>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("state", &self.state()).finish()
    }
}

impl Manager {
    /// A manager of `url` (`http(s)://` or `ws(s)://`; its path is not
    /// used, `opts.path` is). Must be called within a tokio runtime, which
    /// runs the connection. Nothing connects until a socket does.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`], [`ClientError::InvalidOption`], or
    /// [`ClientError::Connect`] when no TLS configuration can be made.
    pub fn new(url: &str, opts: ManagerOptions) -> Result<Manager, ClientError> {
        opts.validate()?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::InvalidOption("a Manager must be created within a tokio runtime".into()))?;
        let endpoint = Endpoint::parse(url, &opts.path, &opts.query)?;
        let tls =
            if endpoint.secure { Some(tls::client_config(&opts.pinned_keys, &opts.root_certificates)?) } else { None };
        let mut headers = http::HeaderMap::new();
        for (k, v) in &opts.extra_headers {
            if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str())) {
                headers.insert(k, v);
            }
        }
        let route = Route::new(&opts.proxy)?;
        let dial = Dial { endpoint: Arc::new(endpoint), tls, headers, max_payload: opts.max_payload, route };
        let (cmd, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            opts,
            dial,
            cmd,
            notify: Arc::new(Notify::new()),
            sockets: Mutex::default(),
            state: StateCell::new(ManagerState::Idle, &rt),
            limit: Arc::default(),
            rt: rt.clone(),
        });
        rt.spawn(run(shared.clone(), rx));
        Ok(Manager { handle: Arc::new(Handle { shared }) })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The socket of namespace `nsp` (the same one for the same name);
    /// it connects now when `auto_connect` is on.
    pub fn socket(&self, nsp: &str, opts: SocketOptions) -> Socket {
        let nsp: ByteString = if nsp.is_empty() {
            "/".into()
        } else if nsp.starts_with('/') {
            nsp.into()
        } else {
            format!("/{nsp}").into()
        };
        let s = self.shared();
        let inner = lock(&s.sockets)
            .entry(nsp.clone())
            .or_insert_with(|| {
                Arc::new(SocketInner::new(
                    nsp,
                    opts.auth,
                    Wiring {
                        cmd: s.cmd.clone(),
                        notify: s.notify.clone(),
                        rt: s.rt.clone(),
                        ack_timeout: s.opts.ack_timeout,
                        retries: s.opts.retries,
                        capacity: s.opts.send_buffer_capacity,
                        listener_capacity: s.opts.listener_queue_capacity,
                        limit: s.limit.clone(),
                    },
                ))
            })
            .clone();
        let socket = Socket { inner, manager: self.handle.clone() };
        if s.opts.auto_connect {
            socket.connect();
        }
        socket
    }

    /// Opens the connection (sockets that want to connect then do).
    pub fn open(&self) {
        let _ = self.shared().cmd.send(Cmd::Open);
    }

    /// Closes the connection: every socket disconnects (`io client
    /// disconnect`), no reconnection.
    pub fn close(&self) {
        for s in self.shared().sockets() {
            Socket { inner: s, manager: self.handle.clone() }.disconnect();
        }
        let _ = self.shared().cmd.send(Cmd::Close);
    }

    /// The current state.
    pub fn state(&self) -> ManagerState {
        self.shared().state.get()
    }

    /// A receiver of the current state.
    pub fn watch_state(&self) -> watch::Receiver<ManagerState> {
        self.shared().state.subscribe()
    }

    /// Calls `listener` with every state change from now on, in order.
    pub fn on_state(&self, listener: impl StateListener<ManagerState>) -> ListenerId {
        self.shared().state.listen(Arc::new(listener))
    }

    /// Removes a state listener.
    pub fn off_state(&self, id: ListenerId) -> bool {
        self.shared().state.unlisten(id)
    }

    /// The app went to the background: reconnection attempts pause until
    /// it comes back (the OS suspends the app's sockets anyway).
    pub fn app_did_enter_background(&self) {
        let _ = self.shared().cmd.send(Cmd::Hint(Hint::Background));
    }

    /// The app comes back: a pending reconnection starts at once, and a
    /// connection whose heartbeat went silent meanwhile is replaced now.
    pub fn app_will_enter_foreground(&self) {
        let _ = self.shared().cmd.send(Cmd::Hint(Hint::Foreground));
    }

    /// The network path changed (Wi-Fi to cellular, VPN up...): the
    /// connection, bound to the old path, is replaced at once (with
    /// connection state recovery, nothing is missed).
    pub fn network_path_changed(&self) {
        let _ = self.shared().cmd.send(Cmd::Hint(Hint::PathChanged));
    }
}

/// How a session ended, and what comes next.
struct End {
    reason: String,
    next: Next,
}

#[derive(PartialEq)]
enum Next {
    Reconnect,
    ReconnectNow,
    Idle,
    Shutdown,
}

impl End {
    fn lost(reason: impl Into<String>) -> End {
        End { reason: reason.into(), next: Next::Reconnect }
    }
}

enum Interrupt {
    Close,
    Shutdown,
}

/// Runs `fut` while handling commands that need no connection.
async fn race<T>(
    fut: impl Future<Output = T>,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    background: &mut bool,
) -> Result<T, Interrupt> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Ok(r),
            c = cmds.recv() => match c {
                None | Some(Cmd::Shutdown) => return Err(Interrupt::Shutdown),
                Some(Cmd::Close) => return Err(Interrupt::Close),
                Some(Cmd::Hint(h)) => *background = h == Hint::Background,
                Some(_) => {}
            },
        }
    }
}

/// Opens a session over the first transport that works.
async fn open_any(shared: &Shared) -> Result<Opened, String> {
    let mut last = String::new();
    for kind in &shared.opts.transports {
        match link::open(&shared.dial, *kind).await {
            Ok(o) => return Ok(o),
            Err(e) => last = format!("{}: {e}", kind.as_str()),
        }
    }
    Err(last)
}

async fn run(shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let o = &shared.opts;
    let mut backoff = Backoff::new(o.reconnection_delay, o.reconnection_delay_max, o.randomization_factor);
    let mut want = false;
    let mut background = false;
    let mut gave_up = false;
    loop {
        if !want {
            match cmds.recv().await {
                None | Some(Cmd::Shutdown) => break,
                Some(Cmd::Open) => want = true,
                Some(Cmd::Connect(_)) => want = shared.any_active(),
                Some(Cmd::Hint(h)) => {
                    background = h == Hint::Background;
                    // After giving up, a better network is worth a new round.
                    if gave_up && !background && shared.any_active() {
                        want = true;
                    }
                }
                Some(_) => {}
            }
            if want {
                gave_up = false;
                backoff.reset();
            }
            continue;
        }
        if background {
            shared.state.set(ManagerState::Waiting {
                attempt: backoff.attempts(),
                delay: Duration::ZERO,
                error: "in the background".into(),
            });
            match race(std::future::pending::<()>(), &mut cmds, &mut background).await {
                Err(Interrupt::Shutdown) => break,
                Err(Interrupt::Close) => {
                    want = false;
                    shared.state.set(ManagerState::Closed { reason: "io client disconnect".into() });
                    continue;
                }
                Ok(()) => {}
            }
        }
        shared.state.set(ManagerState::Opening { attempt: backoff.attempts() });
        let opening = Box::pin(tokio::time::timeout(o.timeout, open_any(&shared)));
        let opened = race(opening, &mut cmds, &mut background).await;
        let end = match opened {
            Err(Interrupt::Shutdown) => break,
            Err(Interrupt::Close) => {
                want = false;
                shared.state.set(ManagerState::Closed { reason: "io client disconnect".into() });
                continue;
            }
            Ok(Ok(Ok(opened))) => {
                backoff.reset();
                let end = session(&shared, opened, &mut cmds, &mut background).await;
                let reconnecting = matches!(end.next, Next::Reconnect | Next::ReconnectNow) && o.reconnection;
                for s in shared.sockets() {
                    s.on_closed(&end.reason, reconnecting, false);
                }
                end
            }
            Ok(result) => {
                let error = match result {
                    Ok(Err(e)) => e,
                    _ => "timeout".to_owned(),
                };
                let reason = format!("connect error: {error}");
                let reconnecting = o.reconnection && o.reconnection_attempts.is_none_or(|n| backoff.attempts() < n);
                for s in shared.sockets() {
                    s.on_closed(&reason, reconnecting, false);
                }
                End { reason, next: Next::Reconnect }
            }
        };
        match end.next {
            Next::Shutdown => break,
            Next::Idle => {
                want = false;
                shared.state.set(ManagerState::Closed { reason: end.reason });
                continue;
            }
            Next::Reconnect | Next::ReconnectNow => {}
        }
        if !o.reconnection || !shared.any_active() {
            want = false;
            shared.state.set(ManagerState::Closed { reason: end.reason });
            continue;
        }
        if o.reconnection_attempts.is_some_and(|n| backoff.attempts() >= n) {
            want = false;
            gave_up = true;
            for s in shared.sockets() {
                s.on_closed("reconnect failed", false, false);
            }
            shared.state.set(ManagerState::Closed { reason: "reconnect failed".into() });
            continue;
        }
        let delay = backoff.next_delay(rand::random::<f64>());
        let delay = if end.next == Next::ReconnectNow { Duration::ZERO } else { delay };
        shared.state.set(ManagerState::Waiting { attempt: backoff.attempts(), delay, error: end.reason });
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                c = cmds.recv() => match c {
                    None | Some(Cmd::Shutdown) => return,
                    Some(Cmd::Close) => {
                        want = false;
                        shared.state.set(ManagerState::Closed { reason: "io client disconnect".into() });
                        break;
                    }
                    Some(Cmd::Hint(Hint::Background)) => background = true,
                    Some(Cmd::Hint(_) | Cmd::Open) => {
                        background = false;
                        break;
                    }
                    Some(_) => {}
                },
            }
        }
    }
    for s in shared.sockets() {
        s.on_closed("io client disconnect", false, false);
    }
}

type Probe = Pin<Box<dyn Future<Output = Result<Link, String>> + Send>>;

/// One Engine.IO session: CONNECTs, heartbeat, upgrade, dispatch.
async fn session(
    shared: &Arc<Shared>,
    opened: Opened,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    background: &mut bool,
) -> End {
    let Opened { mut link, handshake } = opened;
    let window = Duration::from_millis(handshake.ping_interval.saturating_add(handshake.ping_timeout));
    let max = usize::try_from(handshake.max_payload).unwrap_or(usize::MAX);
    shared.limit.set(max, link.kind == TransportKind::Polling);
    let mut s = Session {
        shared: shared.clone(),
        decoder: Decoder::for_client(Limits::default()),
        joined: HashSet::new(),
        deadline: Instant::now() + window,
        window,
        max,
    };
    shared.state.set(ManagerState::Open { transport: link.kind });
    let mut out = Vec::new();
    for socket in shared.sockets() {
        if socket.is_active() {
            out.extend(socket.connect_packet());
            s.joined.insert(socket.nsp.clone());
        }
    }
    link.send(std::mem::take(&mut out));
    if s.joined.is_empty() && !shared.any_active() && !shared.sockets().is_empty() {
        // Every socket left while the connection was being opened.
        link.close(Some(engine::Packet::Close.encode())).await;
        return End { reason: "io client disconnect".into(), next: Next::Idle };
    }
    let o = &shared.opts;
    let mut upgrade: Option<Probe> = None;
    if link.kind == TransportKind::Polling
        && o.upgrade
        && o.transports.contains(&TransportKind::WebSocket)
        && handshake.upgrades.iter().any(|u| u == "websocket")
    {
        let (dial, sid) = (shared.dial.clone(), handshake.sid.clone());
        upgrade = Some(Box::pin(async move { link::probe(&dial, &sid).await }));
    }
    loop {
        tokio::select! {
            p = link.rx.recv() => {
                let end = match p {
                    Some(Ok(packet)) => s.on_engine(packet, &mut out),
                    Some(Err(reason)) => Some(End::lost(reason)),
                    None => Some(End::lost("transport close")),
                };
                link.send(std::mem::take(&mut out));
                if let Some(end) = end {
                    return end;
                }
                s.drain(&link);
            }
            () = shared.notify.notified() => s.drain(&link),
            () = tokio::time::sleep_until(s.deadline) => return End::lost("ping timeout"),
            r = async { upgrade.as_mut().expect("guarded").await }, if upgrade.is_some() => {
                upgrade = None;
                let Ok(ws) = r else { continue };
                let polling = std::mem::replace(&mut link, ws);
                let mut end = None;
                let paused = tokio::time::timeout(window, polling.pause(|p| {
                    if end.is_none() {
                        end = s.on_engine(p, &mut out);
                    }
                })).await;
                if let Some(end) = end {
                    return end;
                }
                match paused {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => return End::lost(reason),
                    Err(_) => return End::lost("transport error: upgrade stalled"),
                }
                let mut frames = vec![engine::Packet::Upgrade.encode()];
                frames.append(&mut out);
                link.send(frames);
                shared.limit.set(s.max, false);
                shared.state.set(ManagerState::Open { transport: link.kind });
                s.drain(&link);
            }
            c = cmds.recv() => match c {
                Some(Cmd::Connect(nsp)) => {
                    if let Some(socket) = shared.socket(&nsp)
                        && socket.is_active()
                        && s.joined.insert(nsp)
                    {
                        link.send(socket.connect_packet());
                    }
                }
                Some(Cmd::Leave(nsp)) => {
                    if s.joined.remove(&nsp) {
                        link.send(Packet::disconnect(nsp).encode());
                    }
                    if !shared.any_active() {
                        link.close(Some(engine::Packet::Close.encode())).await;
                        return End { reason: "io client disconnect".into(), next: Next::Idle };
                    }
                }
                Some(Cmd::Close) => {
                    link.close(Some(engine::Packet::Close.encode())).await;
                    return End { reason: "io client disconnect".into(), next: Next::Idle };
                }
                None | Some(Cmd::Shutdown) => {
                    for nsp in s.joined.drain() {
                        link.send(Packet::disconnect(nsp).encode());
                    }
                    link.close(Some(engine::Packet::Close.encode())).await;
                    return End { reason: "io client disconnect".into(), next: Next::Shutdown };
                }
                Some(Cmd::Hint(Hint::PathChanged)) => {
                    return End { reason: "network change".into(), next: Next::ReconnectNow };
                }
                Some(Cmd::Hint(Hint::Foreground)) => {
                    *background = false;
                    if Instant::now() >= s.deadline {
                        return End { reason: "ping timeout".into(), next: Next::ReconnectNow };
                    }
                }
                Some(Cmd::Hint(Hint::Background)) => *background = true,
                Some(Cmd::Open) => {}
            },
        }
    }
}

struct Session {
    shared: Arc<Shared>,
    decoder: Decoder,
    joined: HashSet<ByteString>,
    deadline: Instant,
    window: Duration,
    /// The server's `maxPayload`.
    max: usize,
}

impl Session {
    /// Writes what the connected sockets have queued.
    fn drain(&self, link: &Link) {
        let mut frames = Vec::new();
        for socket in self.shared.sockets() {
            frames.extend(socket.drain(self.max, link.kind == TransportKind::Polling));
        }
        link.send(frames);
    }

    /// One Engine.IO packet; what to send goes to `out`.
    fn on_engine(&mut self, packet: engine::Packet, out: &mut Vec<Encoded>) -> Option<End> {
        let decoded = match packet {
            engine::Packet::Ping(data) => {
                self.deadline = Instant::now() + self.window;
                out.push(engine::Packet::Pong(data).encode());
                return None;
            }
            engine::Packet::Close => return Some(End::lost("transport close")),
            engine::Packet::Message(Frame::Text(t)) => self.decoder.decode_text(t),
            engine::Packet::Message(Frame::Binary(b)) => self.decoder.decode_binary(b),
            engine::Packet::Open(_) => return Some(End::lost("parse error: a second handshake")),
            engine::Packet::Pong(_) | engine::Packet::Noop | engine::Packet::Upgrade => return None,
        };
        match decoded {
            Ok(Some(p)) => self.dispatch(p),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "bad packet from the server");
                Some(End::lost("parse error"))
            }
        }
    }

    /// As socket.io-client: the connection closes when no socket wants it.
    fn idle_unless_active(&self, reason: &str) -> Option<End> {
        (!self.shared.any_active()).then(|| End { reason: reason.into(), next: Next::Idle })
    }

    fn dispatch(&mut self, packet: Packet) -> Option<End> {
        let socket = self.shared.socket(&packet.nsp)?;
        match packet.kind {
            PacketKind::Connect(Some(reply)) => {
                // What it queued goes out after this packet (`drain`).
                for (payload, id) in socket.on_connected(&reply) {
                    socket.deliver(payload, id);
                }
            }
            PacketKind::Connect(None) => return Some(End::lost("parse error: CONNECT without sid")),
            PacketKind::ConnectError(body) => {
                self.joined.remove(&packet.nsp);
                socket.on_refused(&body);
                return self.idle_unless_active("io client disconnect");
            }
            PacketKind::Disconnect => {
                self.joined.remove(&packet.nsp);
                socket.on_closed("io server disconnect", false, true);
                return self.idle_unless_active("io server disconnect");
            }
            PacketKind::Event { payload, id } => socket.on_event(payload, id),
            PacketKind::Ack { payload, id } => socket.on_ack(id, payload),
        }
        None
    }
}
