//! The native side of `tidewire/socket.io`'s `Engine`: Engine.IO sessions
//! carried by the app's own `http.Server` through core's host transport
//! (`tidewire::transport::host`), at the Engine.IO level. socket.io's
//! JavaScript `Server` speaks Socket.IO on top, exactly as it does over
//! npm `engine.io`.
//!
//! - Long-polling: JavaScript hands each request at the engine's path to
//!   [`EngineHost::handle`] (method, URL, raw headers, peer address, body)
//!   and writes the answer it resolves to.
//! - WebSocket: [`EngineHost::accept_websocket`] decides before the `101`;
//!   npm `ws` completes the handshake and reads the frames: JavaScript
//!   pushes what it reads into [`HostWebSocket::receive`]. What the
//!   sessions send is framed here (WebSocket wire bytes, one buffer per
//!   batch of a session) and queued for every WebSocket together; one weak
//!   callback tells JavaScript when that queue stops being empty, and it
//!   writes the whole batch to the sockets ([`EngineHost::take_writes`]):
//!   a broadcast to many sessions costs one crossing, not one per session.
//! - WebSocket handed over (the default on a plain `http.Server`):
//!   [`HostWebSocket::adopt`] instead of `ws`: the connection's descriptor
//!   is duplicated and the core answers the `101` and runs the session on
//!   it with its own WebSocket code; JavaScript destroys its socket (which
//!   closes only Node's descriptor) and sees the session's events only.
//! - Sessions: every open, message and close is queued in order; one weak
//!   callback tells JavaScript when the queue stops being empty, and it
//!   takes the whole batch (see [`EngineHost::take_events`]); JavaScript
//!   sends and closes through the [`EngineSocket`] handed over at open.
//!
//! Which JavaScript request opened a session: each call carries a
//! `request` number, and the session's `open` carries it back (a task
//! local for long-polling, whose handshake opens the session inside
//! `handle`; a thread local for WebSocket, whose session opens inside
//! `start` on the JavaScript thread).

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake as TaskWake, Waker};
use std::time::Duration;

use bytes::Bytes;
use napi::Either;
use napi::Status;
use napi::bindgen_prelude::{Buffer, within_runtime_if_available};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;
use tidewire::embed;
use tidewire::engine::{
    CloseReason, Connection, Engine, EngineConfig, EngineHandler, RequestInfo, Session, TransportKind,
};
use tidewire::limits::{ConnectionLimits, LimitsSpec, RateLimits};
use tidewire::protocol::engine::{Encoded, Frame, Packet};
use tidewire::transport::host::{self, Inbound, Outbound, RequestBody, WebSocket, WebSocketAccept};
use tokio::sync::oneshot;

tokio::task_local! {
    /// The JavaScript request a long-polling `handle` call serves.
    static REQUEST: u32;
}

thread_local! {
    /// The JavaScript request a WebSocket `start` serves.
    static WS_REQUEST: Cell<u32> = const { Cell::new(0) };
}

/// The JavaScript request being served on this task or thread (0: none).
fn current_request() -> u32 {
    REQUEST.try_with(|r| *r).unwrap_or_else(|_| WS_REQUEST.with(Cell::get))
}

/// What an [`EngineEvent`] reports.
const OPEN: u32 = 0;
const TEXT: u32 = 1;
const BINARY: u32 = 2;
const CLOSE: u32 = 3;
/// A polling session's upgrade started on a WebSocket the core owns.
const UPGRADING: u32 = 4;
/// ... and completed.
const UPGRADED: u32 = 5;

/// One session event for JavaScript (see [`EngineHost::take_events`]).
#[napi(object, object_from_js = false)]
pub struct EngineEvent {
    /// 0 `open`, 1 a text message, 2 a binary message, 3 `close`, 4 the
    /// session's upgrade started (`upgrading`), 5 it completed (`upgrade`):
    /// these two for a WebSocket handed over to the core only.
    pub kind: u32,
    /// The session id.
    pub sid: String,
    /// For `open`: the `request` number of the call that opened it.
    pub request: u32,
    /// For `open`: the session's handle.
    pub socket: Option<EngineSocket>,
    /// For `open`: the transport's name; for a message: the message; for
    /// `close`: the reason.
    pub data: Option<Either<String, Buffer>>,
}

/// The weak callback that tells JavaScript events are waiting: it never
/// keeps Node alive.
pub(crate) type Wake = ThreadsafeFunction<(), UnknownReturnValue, (), Status, false, true>;

/// What the engine's threads hand to JavaScript, in order, taken in
/// batches (core's `embed::Batch`): `wake` is called when the queue stops
/// being empty, so a burst costs one crossing, and JavaScript may also
/// take at once (after handing a WebSocket message in, on its own thread).
pub(crate) struct Queue<T> {
    batch: embed::Batch<T>,
    wake: Wake,
}

impl<T> Queue<T> {
    pub(crate) fn new(wake: Wake) -> Queue<T> {
        Queue { batch: embed::Batch::default(), wake }
    }

    pub(crate) fn push(&self, item: T) {
        if self.batch.push(item) && self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
            // Node is shutting down: nobody will take them, and the next
            // push must wake again.
            drop(self.batch.take());
        }
    }

    pub(crate) fn take(&self) -> Vec<T> {
        self.batch.take()
    }
}

/// Every session's events.
type Events = Queue<EngineEvent>;

/// Opens sessions for JavaScript and forwards their traffic.
struct JsHandler(Arc<Events>);

/// One session's messages and close, forwarded in order.
struct JsConnection {
    sid: String,
    events: Arc<Events>,
}

fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Polling => "polling",
        TransportKind::WebSocket => "websocket",
    }
}

impl EngineHandler for JsHandler {
    fn on_open(&self, session: &Session, _: &RequestInfo) -> Box<dyn Connection> {
        let sid = session.sid().to_owned();
        self.0.push(EngineEvent {
            kind: OPEN,
            sid: sid.clone(),
            request: current_request(),
            socket: Some(EngineSocket { session: session.clone() }),
            data: Some(Either::A(transport_name(session.transport()).to_owned())),
        });
        Box::new(JsConnection { sid, events: self.0.clone() })
    }
}

impl JsConnection {
    fn push(&self, kind: u32, data: Either<String, Buffer>) {
        self.events.push(EngineEvent { kind, sid: self.sid.clone(), request: 0, socket: None, data: Some(data) });
    }
}

impl Connection for JsConnection {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        match frame {
            Frame::Text(text) => self.push(TEXT, Either::A(String::from(text))),
            Frame::Binary(data) => self.push(BINARY, Either::B(Buffer::from(data.to_vec()))),
        }
        Ok(())
    }

    fn on_close(&mut self, reason: CloseReason) {
        self.push(CLOSE, Either::A(reason.to_string()));
    }
}

/// engine.io's options, checked by `socket.io.js` (times in ms).
#[napi(object)]
pub struct EngineOptions {
    /// `pingInterval`.
    pub ping_interval: u32,
    /// `pingTimeout`.
    pub ping_timeout: u32,
    /// `upgradeTimeout`.
    pub upgrade_timeout: u32,
    /// `maxHttpBufferSize`: the largest polling body or WebSocket message.
    pub max_payload: u32,
    /// Whether long-polling is offered (`transports`).
    pub polling: bool,
    /// Whether WebSocket is offered (`transports`).
    pub websocket: bool,
    /// `allowUpgrades`.
    pub allow_upgrades: bool,
    /// Connection limits, as the core's limits spec (JSON) with only its
    /// connection fields; the core's defaults when absent.
    pub limits: Option<String>,
}

/// An HTTP request as Node parsed it.
#[napi(object)]
pub struct HttpRequest {
    /// `req.method`.
    pub method: String,
    /// `req.url` (path and query).
    pub url: String,
    /// `req.rawHeaders`: names and values, alternating.
    pub headers: Vec<String>,
    /// `req.socket.remoteAddress` (empty when unknown).
    pub remote_address: String,
    /// `req.socket.remotePort` (0 when unknown).
    pub remote_port: u32,
    /// The number the session's `open` carries back (and `cancel` takes).
    pub request: u32,
    /// Whether it came over TLS (`req.socket.encrypted`).
    pub secure: Option<bool>,
}

/// The complete answer to write.
#[napi(object)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u32,
    /// Names and values, alternating.
    pub headers: Vec<String>,
    /// The body.
    pub body: Buffer,
}

/// Bytes to write on a WebSocket, or its close (see [`EngineHost::take_writes`]).
#[napi(object, object_from_js = false)]
pub struct Written {
    /// The `request` number its `start` was given.
    pub socket: u32,
    /// WebSocket frames, ready for the wire.
    pub data: Option<Buffer>,
    /// Whether to close the WebSocket now (after `data`); the last one.
    pub close: bool,
    /// The close code, when the close has one (e.g. 1009).
    pub code: Option<u32>,
    /// The close reason.
    pub reason: Option<String>,
}

/// A WebSocket's outgoing side, polled on the JavaScript thread: its
/// `next_outgoing` future is polled by [`EngineHost::take_writes`], and
/// woken (by a send on any thread, a timer, a close) it queues itself on
/// the engine's ready list. No task and no thread hop per session: a
/// broadcast's sends, made on the JavaScript thread, wake sessions there,
/// and the whole batch is framed and written in one crossing.
struct Writer {
    /// The `request` number its `start` was given.
    socket: u32,
    next: Mutex<Option<Outgoing>>,
    ws: Arc<WebSocket>,
    writes: Arc<Writes>,
    /// On the ready list (or about to be polled).
    queued: AtomicBool,
    /// JavaScript wants no more bytes for now (the socket's buffer is full).
    paused: AtomicBool,
}

type Outgoing = Pin<Box<dyn Future<Output = Outbound> + Send>>;

impl TaskWake for Writer {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.writes.ready(self.clone());
        }
    }
}

impl Writer {
    fn outgoing(ws: &Arc<WebSocket>) -> Outgoing {
        let ws = ws.clone();
        Box::pin(async move { ws.next_outgoing().await })
    }

    /// Polls until the session has nothing more to send now (or it closed,
    /// or JavaScript paused it), adding what it sends to `out`.
    fn poll_into(self: &Arc<Self>, out: &mut Vec<Written>) {
        self.queued.store(false, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.paused.load(Ordering::Acquire) {
            let Some(future) = next.as_mut() else { return };
            let Poll::Ready(outbound) = future.as_mut().poll(&mut cx) else { return };
            let socket = self.socket;
            match outbound {
                Outbound::Frames(frames) => {
                    let data = Buffer::from(embed::host::websocket_frames(frames));
                    out.push(Written { socket, data: Some(data), close: false, code: None, reason: None });
                    *next = Some(Writer::outgoing(&self.ws));
                }
                Outbound::Close(frame) => {
                    let (code, reason) = frame.map_or((None, None), |f| (Some(u32::from(f.code)), Some(f.reason)));
                    out.push(Written { socket, data: None, close: true, code, reason });
                    *next = None;
                }
                _ => {
                    out.push(Written { socket, data: None, close: true, code: None, reason: None });
                    *next = None;
                }
            }
        }
    }
}

/// The writers with something to write, for JavaScript to take in
/// batches: the callback is called when the list stops being empty.
struct Writes {
    ready: Mutex<Vec<Arc<Writer>>>,
    wake: Wake,
}

impl Writes {
    fn ready(&self, writer: Arc<Writer>) {
        let first = {
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            ready.push(writer);
            ready.len() == 1
        };
        if first {
            // An error here means Node is shutting down: nobody is listening.
            let _ = self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn take(&self) -> Vec<Written> {
        let ready = std::mem::take(&mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner));
        let mut out = Vec::with_capacity(ready.len());
        for writer in ready {
            writer.poll_into(&mut out);
        }
        out
    }
}

fn peer(address: &str, port: u32) -> SocketAddr {
    let ip = address.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // An IPv4 client on a dual-stack socket is `::ffff:a.b.c.d`: the
    // connection caps count it as the IPv4 address it is.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    SocketAddr::new(ip, u16::try_from(port).unwrap_or(0))
}

fn request<B>(req: &HttpRequest, body: B) -> Result<http::Request<B>, http::Error> {
    let uri = embed::host::request_uri(&req.url, req.secure.unwrap_or(false));
    let mut builder = http::Request::builder().method(req.method.as_str()).uri(uri);
    for pair in req.headers.chunks_exact(2) {
        builder = builder.header(pair[0].as_str(), pair[1].as_str());
    }
    builder.body(body)
}

fn answer(res: http::Response<Bytes>) -> HttpAnswer {
    let headers = res
        .headers()
        .iter()
        .flat_map(|(name, value)| [name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()])
        .collect();
    HttpAnswer { status: u32::from(res.status().as_u16()), headers, body: Buffer::from(res.body().to_vec()) }
}

fn bad_request() -> HttpAnswer {
    let body = br#"{"code":3,"message":"Bad request"}"#.to_vec();
    HttpAnswer {
        status: 400,
        headers: vec!["content-type".to_owned(), "application/json".to_owned()],
        body: Buffer::from(body),
    }
}

/// An Engine.IO server without a listener of its own.
#[napi]
pub struct EngineHost {
    inner: Engine,
    events: Arc<Events>,
    writes: Arc<Writes>,
    /// WebSocket connections handed over to the core (`HostWebSocket::adopt`).
    handed_over: Arc<AtomicU32>,
    /// Pending `handle` calls JavaScript may cancel (the client went away).
    pending: Arc<Mutex<HashMap<u32, oneshot::Sender<()>>>>,
}

#[napi]
impl EngineHost {
    /// An engine with `options`. Every session's `open`, messages and
    /// `close` are queued in order for `takeEvents`; `wake()` is called
    /// when the queue stops being empty. What WebSockets send is queued
    /// for `takeWrites`; `wakeWrites()` is called when that queue stops
    /// being empty.
    #[napi(constructor)]
    pub fn new(
        options: EngineOptions,
        wake: ThreadsafeFunction<(), UnknownReturnValue, (), Status, false, true>,
        wake_writes: ThreadsafeFunction<(), UnknownReturnValue, (), Status, false, true>,
    ) -> napi::Result<EngineHost> {
        let ms = |n: u32| Duration::from_millis(u64::from(n));
        let mut config = EngineConfig::default()
            .ping_interval(ms(options.ping_interval))
            .ping_timeout(ms(options.ping_timeout))
            .upgrade_timeout(ms(options.upgrade_timeout))
            .max_payload(options.max_payload as usize)
            .transports(options.polling, options.websocket)
            .allow_upgrades(options.allow_upgrades);
        if let Some(json) = &options.limits {
            let invalid =
                |m: String| napi::Error::new(Status::InvalidArg, format!("tidewire Engine: option \"limits\": {m}"));
            let spec: LimitsSpec = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
            let (_, conns) = spec.apply(RateLimits::default(), ConnectionLimits::default()).map_err(invalid)?;
            config = config.connection_limits(Some(conns));
        }
        let events = Arc::new(Events::new(wake));
        Ok(EngineHost::with(Engine::new(config, Arc::new(JsHandler(events.clone()))), events, wake_writes))
    }

    fn with(inner: Engine, events: Arc<Events>, wake_writes: Wake) -> EngineHost {
        EngineHost {
            inner,
            events,
            writes: Arc::new(Writes { ready: Mutex::default(), wake: wake_writes }),
            handed_over: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// The requests and WebSockets of `engine`, whose sessions its own
    /// handler serves (tidewire's `Server`, attached to an `http.Server`):
    /// no session event is queued but a handed-over WebSocket's upgrade
    /// notices, which name sessions JavaScript does not hold.
    pub(crate) fn over(engine: Engine, wake: Wake, wake_writes: Wake) -> EngineHost {
        EngineHost::with(engine, Arc::new(Events::new(wake)), wake_writes)
    }

    /// Takes the queued session events, oldest first.
    #[napi]
    pub fn take_events(&self) -> Vec<EngineEvent> {
        self.events.take()
    }

    /// Takes what the WebSockets have to write now (each WebSocket's in
    /// order), framed.
    #[napi]
    pub fn take_writes(&self) -> Vec<Written> {
        within_runtime_if_available(|| self.writes.take())
    }

    /// Answers one plain HTTP request at the engine's path (a long-polling
    /// handshake, `GET` or `POST`): resolves to the complete answer. A
    /// `GET` waits for packets (a long poll) unless `cancel(request)` is
    /// called (the client went away), which resolves it with status 0.
    #[napi]
    pub async fn handle(&self, req: HttpRequest, body: Option<Buffer>) -> napi::Result<HttpAnswer> {
        let token = req.request;
        let body = body.map_or_else(RequestBody::empty, |b| RequestBody::from(Bytes::copy_from_slice(&b)));
        let Ok(http_req) = request(&req, body) else { return Ok(bad_request()) };
        let addr = peer(&req.remote_address, req.remote_port);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(token, tx);
        let served = REQUEST.scope(token, host::handle(&self.inner, http_req, addr));
        let result = tokio::select! {
            res = served => answer(res),
            _ = rx => HttpAnswer { status: 0, headers: Vec::new(), body: Buffer::from(Vec::new()) },
        };
        self.lock_pending().remove(&token);
        Ok(result)
    }

    /// Releases the pending `handle` call for `request`, if any.
    #[napi]
    pub fn cancel(&self, request: u32) {
        if let Some(tx) = self.lock_pending().remove(&request) {
            let _ = tx.send(());
        }
    }

    /// Decides on a WebSocket request before the `101`: a `HostWebSocket`
    /// to complete, or the answer to send instead.
    #[napi]
    pub fn accept_websocket(&self, req: HttpRequest) -> Either<HostWebSocket, HttpAnswer> {
        let Ok(http_req) = request(&req, ()) else { return Either::B(bad_request()) };
        let addr = peer(&req.remote_address, req.remote_port);
        match host::accept_websocket(&self.inner, &http_req, addr) {
            Err(res) => Either::B(answer(res)),
            Ok(accept) => {
                let upgrading = accept.sid().and_then(|sid| self.inner.session(sid));
                Either::A(HostWebSocket {
                    accept: Mutex::new(Some(accept)),
                    ws: OnceLock::new(),
                    writes: self.writes.clone(),
                    events: self.events.clone(),
                    handed_over: self.handed_over.clone(),
                    writer: OnceLock::new(),
                    upgrading,
                    reported: AtomicU8::new(0),
                })
            }
        }
    }

    /// The number of open sessions.
    #[napi(getter)]
    pub fn session_count(&self) -> u32 {
        u32::try_from(self.inner.session_count()).unwrap_or(u32::MAX)
    }

    /// How many WebSocket connections were handed over to the core
    /// (`HostWebSocket.adopt`) since the engine was made.
    #[napi(getter)]
    pub fn handed_over(&self) -> u32 {
        self.handed_over.load(Ordering::Relaxed)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<()>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A WebSocket request the engine accepted: complete the handshake, then
/// `start`, push what is read with `receive`, write what the engine's
/// `takeWrites` gives for it until it says `close`.
#[napi]
pub struct HostWebSocket {
    accept: Mutex<Option<WebSocketAccept>>,
    ws: OnceLock<Arc<WebSocket>>,
    writes: Arc<Writes>,
    events: Arc<Events>,
    handed_over: Arc<AtomicU32>,
    writer: OnceLock<Arc<Writer>>,
    /// The polling session this WebSocket upgrades.
    upgrading: Option<Session>,
    /// What `receive` has reported of the upgrade: 0 nothing, 1 started,
    /// 2 done.
    reported: AtomicU8,
}

/// What `receive` reports of an upgrade.
const UPGRADE_STARTED: u32 = 1;
const UPGRADE_DONE: u32 = 2;

#[napi]
impl HostWebSocket {
    /// The polling session it upgrades, if any.
    #[napi(getter)]
    pub fn sid(&self) -> Option<String> {
        self.upgrading.as_ref().map(|s| s.sid().to_owned())
    }

    /// Starts the session's traffic once the `101` is sent: a new session
    /// opens now (its `open` carries `request`); an upgrade waits for the
    /// probe. What it sends comes out of the engine's `takeWrites` with
    /// `socket: request`. Calling it again does nothing.
    #[napi]
    pub fn start(&self, request: u32) {
        let Some(accept) = self.accept.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let previous = WS_REQUEST.with(|r| r.replace(request));
        let ws = Arc::new(within_runtime_if_available(|| accept.start()));
        WS_REQUEST.with(|r| r.set(previous));
        let _ = self.ws.set(ws.clone());
        let writer = Arc::new(Writer {
            socket: request,
            next: Mutex::new(Some(Writer::outgoing(&ws))),
            ws,
            writes: self.writes.clone(),
            queued: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        });
        // Polled first by the next `takeWrites` (the OPEN packet of a new session).
        writer.wake_by_ref();
        let _ = self.writer.set(writer);
    }

    /// Hands the connection over to the core instead of `start`: `fd` is
    /// the connection's file descriptor (Node's `socket._handle.fd`, a TCP
    /// socket), `head` what Node read past the request, `headers` the
    /// response headers to add to the `101` (names and values,
    /// alternating). The descriptor is duplicated: the core answers the
    /// upgrade and owns the connection (its copy closes when the session
    /// ends); JavaScript then destroys its socket in the same run, which
    /// closes only its own descriptor. A new session opens now (its `open`
    /// carries `request`). False when nothing was handed over (the
    /// handshake is one the core does not answer, the descriptor is not a
    /// TCP socket, or it could not be duplicated): JavaScript completes
    /// the handshake itself as before.
    ///
    /// # Errors
    /// A response header that is not valid HTTP (nothing is handed over).
    #[napi]
    pub fn adopt(&self, fd: i32, head: Buffer, headers: Vec<String>, request: u32) -> napi::Result<bool> {
        let mut response = http::HeaderMap::new();
        for pair in headers.chunks_exact(2) {
            let name = http::HeaderName::from_bytes(pair[0].as_bytes());
            let value = http::HeaderValue::from_str(&pair[1]);
            let (Ok(name), Ok(value)) = (name, value) else {
                return Err(napi::Error::new(
                    Status::InvalidArg,
                    format!("tidewire Engine: invalid response header {:?}", pair[0]),
                ));
            };
            response.append(name, value);
        }
        let mut slot = self.accept.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(accept) = slot.take() else { return Ok(false) };
        if !accept.can_adopt() {
            *slot = Some(accept);
            return Ok(false);
        }
        let Some(stream) = duplicate_tcp(fd) else {
            *slot = Some(accept);
            return Ok(false);
        };
        let events = self.events.clone();
        let sid = self.upgrading.as_ref().map(|s| s.sid().to_owned());
        let watch: host::UpgradeWatch = Box::new(move |step| {
            let kind = if step == host::UpgradeStep::Started { UPGRADING } else { UPGRADED };
            let sid = sid.clone().unwrap_or_default();
            events.push(EngineEvent { kind, sid, request: 0, socket: None, data: None });
        });
        let Some(stream) = within_runtime_if_available(|| tokio::net::TcpStream::from_std(stream).ok()) else {
            *slot = Some(accept);
            return Ok(false);
        };
        let adopted = within_runtime_if_available(|| {
            let previous = WS_REQUEST.with(|r| r.replace(request));
            let adopted = accept.adopt(stream, &head, &response, Some(watch));
            WS_REQUEST.with(|r| r.set(previous));
            adopted
        });
        match adopted {
            Ok(()) => {
                self.handed_over.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(accept) => {
                *slot = Some(accept);
                Ok(false)
            }
        }
    }

    /// Stops framing what the session sends until `resume` (the socket's
    /// buffer is full): a client that does not read then fills the
    /// session's bounded queue, which closes it as a slow consumer.
    #[napi]
    pub fn pause(&self) {
        if let Some(writer) = self.writer.get() {
            writer.paused.store(true, Ordering::Release);
        }
    }

    /// Frames what the session sends again.
    #[napi]
    pub fn resume(&self) {
        if let Some(writer) = self.writer.get() {
            writer.paused.store(false, Ordering::Release);
            writer.wake_by_ref();
        }
    }

    /// Gives the admission back when the WebSocket handshake failed.
    #[napi]
    pub fn abandon(&self) {
        drop(self.accept.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    /// Hands a message read from the WebSocket to the session. Returns 1
    /// when it started the upgrade of a polling session, 2 when it
    /// completed it (each once), 0 otherwise.
    #[napi]
    pub fn receive(&self, data: Buffer, binary: bool) -> u32 {
        let Some(ws) = self.ws.get() else { return 0 };
        let data = Bytes::copy_from_slice(&data);
        within_runtime_if_available(|| ws.receive(if binary { Inbound::Binary(data) } else { Inbound::Text(data) }));
        self.upgrade_progress()
    }

    /// The WebSocket closed (`error`: it failed).
    #[napi]
    pub fn receive_close(&self, error: bool) {
        if let Some(ws) = self.ws.get() {
            within_runtime_if_available(|| ws.receive(if error { Inbound::Error } else { Inbound::Close }));
        }
    }

    fn upgrade_progress(&self) -> u32 {
        let Some(session) = &self.upgrading else { return 0 };
        let reported = self.reported.load(Ordering::Acquire);
        if reported < 2 && session.transport() == TransportKind::WebSocket {
            self.reported.store(2, Ordering::Release);
            UPGRADE_DONE
        } else if reported < 1 && session.is_upgrading() {
            self.reported.store(1, Ordering::Release);
            UPGRADE_STARTED
        } else {
            0
        }
    }
}

/// One Engine.IO session, for JavaScript to send on and close.
#[napi]
pub struct EngineSocket {
    pub(crate) session: Session,
}

#[napi]
impl EngineSocket {
    /// The session id.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.session.sid().to_owned()
    }

    /// The transport in use: `polling` or `websocket`.
    #[napi(getter)]
    pub fn transport(&self) -> String {
        transport_name(self.session.transport()).to_owned()
    }

    /// Whether a message written now goes out at once (engine.io's
    /// `transport.writable`): a long-polling GET is waiting, or the
    /// WebSocket has nothing queued.
    #[napi(getter)]
    pub fn writable(&self) -> bool {
        self.session.is_writable()
    }

    /// Queues messages as one unit (a Socket.IO packet and its binary
    /// attachments stay together): strings as text, Buffers as binary.
    /// False when they were not queued: the session closed, a volatile
    /// unit dropped (the client lags), or the queue overflowed, which
    /// closes the session as a slow consumer.
    #[napi]
    pub fn send(&self, messages: Vec<Either<String, Buffer>>, volatile: bool) -> bool {
        let packets: Vec<Encoded> = messages
            .into_iter()
            .map(|m| {
                let frame = match m {
                    Either::A(text) => Frame::Text(text.into()),
                    Either::B(data) => Frame::Binary(Bytes::copy_from_slice(&data)),
                };
                Packet::Message(frame).encode()
            })
            .collect();
        within_runtime_if_available(|| {
            if volatile { self.session.send_volatile(packets).is_ok() } else { self.session.send(packets).is_ok() }
        })
    }

    /// Closes the session once what is queued is written (engine.io's
    /// `close()`): its `close` follows with `forced close`.
    #[napi]
    pub fn close(&self) {
        within_runtime_if_available(|| self.session.close_after_flush(CloseReason::ForcedClose));
    }
}

/// A duplicate of the TCP socket `fd`, non-blocking, or `None` when `fd` is
/// not a TCP socket (a Unix domain socket, a pipe) or cannot be duplicated.
#[cfg(unix)]
fn duplicate_tcp(fd: i32) -> Option<std::net::TcpStream> {
    use std::os::fd::BorrowedFd;
    if fd < 0 {
        return None;
    }
    // SAFETY: JavaScript passes the descriptor of a socket it holds open
    // for the whole call; it is only borrowed to duplicate it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    // Close-on-exec, as every descriptor Node and Rust open: a child process
    // the app spawns must not hold the connection open.
    let stream = std::net::TcpStream::from(rustix::io::fcntl_dupfd_cloexec(borrowed, 0).ok()?);
    // A Unix domain socket has no IP address: not ours to take.
    stream.local_addr().ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// No descriptors to hand over on this platform.
#[cfg(not(unix))]
fn duplicate_tcp(_fd: i32) -> Option<std::net::TcpStream> {
    None
}
