//! Engine.IO sessions carried by somebody else's HTTP server: Node's
//! `http.Server`, an ASGI server, or any server a binding lives in, so
//! Socket.IO shares the application's own port.
//!
//! The host parses HTTP and WebSocket frames; the engine decides
//! everything else exactly as on the built-in listener ([`super::Server`]),
//! through the same code: routing by query, the error answers of the
//! table in [`super`], admission, the limits, the long-polling `GET` that
//! waits for packets, and the WebSocket upgrade dance.
//!
//! # Long-polling
//! Every plain HTTP request at the engine's path goes to [`handle`]: the
//! request (method, URI with its query, headers, and a [`RequestBody`])
//! in, the complete answer (status, headers including `Content-Type` and
//! CORS, body) out. A pending `GET` is a long poll: the future completes
//! when there are packets to send, the session upgrades or closes. A
//! `POST` body is read as it arrives and cut off at
//! [`max_payload`](crate::engine::EngineConfig::max_payload) (`413`), or
//! when it takes longer than the session may stay silent.
//!
//! # WebSocket
//! A WebSocket request goes to [`accept_websocket`] before the host answers
//! it: an `Err` is the HTTP answer to send instead of the `101`. On `Ok`
//! the host completes the handshake with its own WebSocket implementation
//! (that is where `Sec-WebSocket-Key` and the version are checked), then
//! calls [`WebSocketAccept::start`] and moves frames: every message it
//! reads goes to [`WebSocket::receive`], and it writes what
//! [`WebSocket::next_outgoing`] returns until that says
//! [`Outbound::Close`]. The upgrade of a polling session (`2probe`,
//! `3probe`, `5`, and the noop that releases the pending `GET`), the
//! heartbeat and the session's bounded queue are the engine's.
//!
//! The host's WebSocket implementation handles the framing: control
//! frames (ping, pong), fragments, and invalid UTF-8 in text frames (close
//! with 1007 and report [`Inbound::Error`]). A text message that reaches
//! [`WebSocket::receive`] and is not UTF-8 closes the session as a parse
//! error. It should cap frames and messages at `max_payload` before it
//! buffers them; a larger message that still arrives closes the session
//! with 1009.
//!
//! # Handing the connection over
//! A host that can give the connection itself away (Node: the socket's
//! file descriptor, duplicated) calls [`WebSocketAccept::adopt`] instead of
//! completing the handshake: the core answers the `101` (with the host's
//! own response headers) and runs the session on the connection with the
//! same WebSocket code as the built-in listener, so no frame passes
//! through the host; [`UpgradeStep`]s report a polling session's upgrade.
//!
//! # Examples
//! A long-polling handshake and a message, with no HTTP server at all:
//! ```
//! use std::sync::Arc;
//! use tidewire::engine::{Engine, EngineConfig};
//! use tidewire::hub::Hub;
//! use tidewire::transport::host::{self, RequestBody};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let hub = Hub::default();
//! hub.of("/");
//! let engine = hub.engine(EngineConfig::default());
//! let addr = "127.0.0.1:50000".parse().unwrap();
//!
//! let open = http::Request::get("/socket.io/?EIO=4&transport=polling").body(RequestBody::empty()).unwrap();
//! let res = host::handle(&engine, open, addr).await;
//! assert_eq!(res.status(), 200);
//! let handshake: serde_json::Value = serde_json::from_slice(&res.body()[1..]).unwrap();
//! let sid = handshake["sid"].as_str().unwrap();
//!
//! let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
//! let post = http::Request::post(&uri).body(RequestBody::from("40")).unwrap();
//! assert_eq!(host::handle(&engine, post, addr).await.body().as_ref(), b"ok");
//! let get = http::Request::get(&uri).body(RequestBody::empty()).unwrap();
//! assert!(host::handle(&engine, get, addr).await.body().starts_with(b"40{\"sid\":"));
//! # });
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Request, Response, Uri, header};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use super::adopt::{UpgradeStep, UpgradeWatch};
use super::polling::Chunks;
use super::routing::{self, Head, HttpError, Routed};
use super::websocket::{self, Probe, Target};
use crate::engine::{CloseReason, Engine, Session, TransportKind};
use crate::protocol::engine::Encoded;

/// The body of a request handed to [`handle`]: complete, or a stream of
/// chunks read as they arrive (so a body over `max_payload` is refused
/// without being held, and a body that stalls is cut off).
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::transport::host::RequestBody;
///
/// let whole = RequestBody::from("4hello");
/// let chunks = RequestBody::from_stream(futures_util::stream::iter([
///     Ok::<_, std::io::Error>(Bytes::from_static(b"4hel")),
///     Ok(Bytes::from_static(b"lo")),
/// ]));
/// let none = RequestBody::empty();
/// # let _ = (whole, chunks, none);
/// ```
pub struct RequestBody(BodyInner);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, ()>> + Send>>;

enum BodyInner {
    Whole(Option<Bytes>),
    Stream(ChunkStream),
}

impl RequestBody {
    /// No body (a `GET`).
    pub fn empty() -> RequestBody {
        RequestBody(BodyInner::Whole(None))
    }

    /// A body read chunk by chunk from `chunks`; an `Err` item means the
    /// body broke off (the client went away): answered `400` and the
    /// session closed, as on the built-in listener.
    pub fn from_stream<S, E>(chunks: S) -> RequestBody
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    {
        RequestBody(BodyInner::Stream(Box::pin(chunks.map(|c| c.map_err(drop)))))
    }
}

impl Default for RequestBody {
    fn default() -> RequestBody {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> RequestBody {
        RequestBody(BodyInner::Whole(Some(bytes)))
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> RequestBody {
        Bytes::from(bytes).into()
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(bytes: &'static [u8]) -> RequestBody {
        Bytes::from_static(bytes).into()
    }
}

impl From<String> for RequestBody {
    fn from(text: String) -> RequestBody {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for RequestBody {
    fn from(text: &'static str) -> RequestBody {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            BodyInner::Whole(bytes) => {
                f.debug_tuple("RequestBody").field(&bytes.as_ref().map_or(0, Bytes::len)).finish()
            }
            BodyInner::Stream(_) => f.write_str("RequestBody(stream)"),
        }
    }
}

impl Chunks for RequestBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ()>> {
        match &mut self.0 {
            BodyInner::Whole(bytes) => bytes.take().map(Ok),
            BodyInner::Stream(chunks) => chunks.next().await,
        }
    }
}

/// Whether the request came over TLS, as far as its URI tells (a host
/// behind TLS may give an absolute `https://` URI).
fn is_secure(uri: &Uri) -> bool {
    matches!(uri.scheme_str(), Some("https" | "wss"))
}

/// Answers one plain HTTP request at the engine's path: the long-polling
/// handshake (after [`Engine::admit`]), `GET`, `POST`, CORS preflight, and
/// every error of the table in [`crate::transport`], with the status,
/// headers and body the built-in listener sends. A `GET` waits for packets
/// as long as the built-in listener would (a long poll). WebSocket
/// requests go to [`accept_websocket`]; one that arrives here is answered
/// `400 {"code":3,"message":"Bad request"}`. When the client goes away
/// before the answer, drop the future: a pending poll is released.
///
/// `remote_addr` is the client's address (used by the connection caps,
/// which read `X-Forwarded-For` from trusted proxies). The request's URI
/// holds the query; an absolute `https://` URI marks the session
/// [`secure`](crate::engine::RequestInfo::secure).
///
/// # Examples
/// ```
/// use tidewire::engine::{Engine, EngineConfig};
/// use tidewire::hub::Hub;
/// use tidewire::transport::host::{self, RequestBody};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let engine = Hub::default().engine(EngineConfig::default());
/// let req = http::Request::get("/socket.io/?EIO=3&transport=polling").body(RequestBody::empty()).unwrap();
/// let res = host::handle(&engine, req, "127.0.0.1:50000".parse().unwrap()).await;
/// assert_eq!(res.status(), 400);
/// assert_eq!(res.headers()["content-type"], "application/json");
/// assert_eq!(res.body().as_ref(), br#"{"code":5,"message":"Unsupported protocol version"}"#);
/// # });
/// ```
pub async fn handle(engine: &Engine, request: Request<RequestBody>, remote_addr: SocketAddr) -> Response<Bytes> {
    let secure = is_secure(request.uri());
    routing::answer(engine, request, remote_addr, secure, false, |_, _| HttpError::BadRequest.answer()).await
}

/// Decides whether a WebSocket request may proceed, before the host
/// answers it with `101`: for a new session (admitted by
/// [`Engine::admit`]) or for the upgrade of the polling session named by
/// its `sid`, with the rules of the built-in listener (`EIO` must be 4, the
/// transport offered, the session known; a session that has a WebSocket
/// already gets its second one accepted and closed at once).
///
/// # Errors
/// The HTTP answer to send instead of the `101` (status, headers with
/// CORS, body), e.g. `400 {"code":1,"message":"Session ID unknown"}` or a
/// `429` refusal with `Retry-After`. A request for long-polling
/// (`transport=polling`) is answered `400 {"code":3,"message":"Bad request"}`.
///
/// # Examples
/// ```
/// use tidewire::engine::{Engine, EngineConfig};
/// use tidewire::hub::Hub;
/// use tidewire::protocol::engine::Encoded;
/// use tidewire::transport::host::{self, Outbound};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let engine = Hub::default().engine(EngineConfig::default());
/// let req = http::Request::get("/socket.io/?EIO=4&transport=websocket").body(()).unwrap();
/// let accept = host::accept_websocket(&engine, &req, "127.0.0.1:50000".parse().unwrap()).unwrap();
/// assert_eq!(accept.sid(), None); // a new session
/// // ... the host answers 101 and switches to WebSocket frames ...
/// let ws = accept.start();
/// let Outbound::Frames(open) = ws.next_outgoing().await else { panic!() };
/// let Encoded::Text(open) = &open[0] else { panic!() };
/// assert!(open.starts_with("0{\"sid\":"));
/// # });
/// ```
#[allow(clippy::result_large_err, reason = "the error is the answer to send, built once per refused request")]
pub fn accept_websocket<B>(
    engine: &Engine,
    request: &Request<B>,
    remote_addr: SocketAddr,
) -> Result<WebSocketAccept, Response<Bytes>> {
    let head = Head::of(request, remote_addr, is_secure(request.uri()));
    let target = match routing::route(engine, head, true) {
        Routed::Answer(answer) => Err(answer),
        Routed::Upgrade(session) => Ok(Target::upgrade(session)),
        Routed::Handshake(TransportKind::WebSocket, info) => match engine.admit(&info) {
            Ok(admitted) => Ok(Target::New(Box::new((*info, admitted)))),
            Err(refusal) => Err(routing::refusal_answer(&refusal)),
        },
        Routed::Handshake(TransportKind::Polling, _) | Routed::Polling(_) | Routed::Forward(..) => {
            Err(HttpError::BadRequest.answer())
        }
        // A host's WebSocket is not relayed to another node: the client
        // keeps long-polling, which is forwarded.
        Routed::Relay(..) => Err(HttpError::BadRequest.answer()),
    };
    let accept_key = super::adopt::accept_key(request);
    target.map(|target| WebSocketAccept { engine: engine.clone(), target, accept_key }).map_err(|mut answer| {
        routing::cors_headers(engine, request.headers().get(header::ORIGIN), answer.headers_mut());
        answer
    })
}

/// A WebSocket request the engine accepted (see [`accept_websocket`]):
/// the host completes the handshake, then calls [`start`](Self::start).
/// Dropping it instead gives the admission back.
pub struct WebSocketAccept {
    pub(super) engine: Engine,
    pub(super) target: Target,
    /// The `Sec-WebSocket-Accept` of a valid handshake, for
    /// [`adopt`](Self::adopt).
    pub(super) accept_key: Option<String>,
}

impl fmt::Debug for WebSocketAccept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketAccept").field("sid", &self.sid()).finish_non_exhaustive()
    }
}

impl WebSocketAccept {
    /// The polling session this WebSocket upgrades, `None` for a new
    /// session (or a refused second WebSocket).
    ///
    /// # Examples
    /// ```
    /// use tidewire::engine::{Engine, EngineConfig};
    /// use tidewire::hub::Hub;
    /// use tidewire::transport::host::{self, RequestBody};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Hub::default().engine(EngineConfig::default());
    /// let addr = "127.0.0.1:50000".parse().unwrap();
    /// let open = http::Request::get("/socket.io/?EIO=4&transport=polling").body(RequestBody::empty()).unwrap();
    /// let res = host::handle(&engine, open, addr).await;
    /// let sid = serde_json::from_slice::<serde_json::Value>(&res.body()[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    ///
    /// let uri = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    /// let req = http::Request::get(uri).body(()).unwrap();
    /// let accept = host::accept_websocket(&engine, &req, addr).unwrap();
    /// assert_eq!(accept.sid(), Some(sid.as_str())); // the upgrade of that session
    /// # });
    /// ```
    pub fn sid(&self) -> Option<&str> {
        match &self.target {
            Target::Upgrade(session) => Some(session.sid()),
            Target::New(_) | Target::Opened(_) | Target::Refused | Target::Relay(_) => None,
        }
    }

    /// Starts the session's traffic on the WebSocket the host has just
    /// opened: a new session is opened now (its OPEN packet is the first
    /// outgoing frame); an upgrade waits for the probe dance within
    /// `upgrade_timeout`.
    ///
    /// # Panics
    /// Outside a tokio runtime (a new session starts its heartbeat).
    ///
    /// # Examples
    /// See [`accept_websocket`].
    pub fn start(self) -> WebSocket {
        let max_payload = self.engine.config().max_payload;
        let deadline = Instant::now() + self.engine.config().upgrade_timeout;
        let (session, phase, replies) = match self.target {
            Target::Refused | Target::Relay(_) => (None, Phase::Closing, Vec::new()),
            Target::Upgrade(session) => (Some(session), Phase::Probing { probed: false }, Vec::new()),
            Target::New(info) => {
                let (info, admitted) = *info;
                let (session, open) = websocket::open(&self.engine, &info, admitted);
                (Some(session), Phase::Open, vec![open])
            }
            Target::Opened(opened) => {
                let (session, open) = *opened;
                (Some(session), Phase::Open, vec![open])
            }
        };
        WebSocket {
            session,
            max_payload,
            deadline,
            state: Mutex::new(State { phase, replies, close: None }),
            wake: Notify::new(),
        }
    }
}

/// A message the host read from the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A text message (UTF-8, validated by the host).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// The client closed the WebSocket, or the connection went away.
    Close,
    /// The WebSocket failed (a protocol error, invalid UTF-8, a message
    /// too large for the host): the session closes with a transport error.
    Error,
}

/// What the host writes next on the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outbound {
    /// Frames to write in order, then flush: [`Encoded::Text`] as text
    /// frames, [`Encoded::Binary`] as binary frames.
    Frames(Vec<Encoded>),
    /// Close the WebSocket, with this close frame if any. The last item:
    /// later calls return `Close(None)` at once.
    Close(Option<CloseFrame>),
}

/// The status of a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code (e.g. 1009: message too big).
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

/// One session's traffic on a WebSocket the host owns: push what it reads
/// with [`receive`](Self::receive), write what
/// [`next_outgoing`](Self::next_outgoing) returns. Both take `&self`: the
/// reading and the writing may run on different tasks (one writer at a
/// time). Dropping it closes the session (or abandons its upgrade).
///
/// The host should bound its own writes (a stuck write is a slow client:
/// the session's queue fills and closes it as a slow consumer).
///
/// # Examples
/// A host's two loops, with channels standing in for its socket:
/// ```
/// use std::sync::Arc;
/// use tidewire::engine::{Engine, EngineConfig};
/// use tidewire::hub::Hub;
/// use tidewire::protocol::engine::Encoded;
/// use tidewire::transport::host::{self, Inbound, Outbound};
/// use tokio::sync::mpsc;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let hub = Hub::default();
/// hub.of("/");
/// let engine = hub.engine(EngineConfig::default());
/// let req = http::Request::get("/socket.io/?EIO=4&transport=websocket").body(()).unwrap();
/// let accept = host::accept_websocket(&engine, &req, "127.0.0.1:50000".parse().unwrap()).unwrap();
/// let ws = Arc::new(accept.start());
/// let (to_server, mut from_client) = mpsc::unbounded_channel::<Inbound>();
/// let (to_client, mut wire) = mpsc::unbounded_channel::<String>();
///
/// // The reading side: every message read goes in.
/// let reader = tokio::spawn({
///     let ws = ws.clone();
///     async move {
///         while let Some(message) = from_client.recv().await {
///             ws.receive(message);
///         }
///     }
/// });
/// // The writing side: write each batch, then close when told.
/// let writer = tokio::spawn(async move {
///     loop {
///         match ws.next_outgoing().await {
///             Outbound::Frames(frames) => {
///                 for frame in frames {
///                     if let Encoded::Text(text) = frame {
///                         let _ = to_client.send(text.to_string());
///                     }
///                 }
///             }
///             Outbound::Close(_) => break,
///             _ => {}
///         }
///     }
/// });
///
/// assert!(wire.recv().await.unwrap().starts_with("0{")); // OPEN
/// to_server.send(Inbound::Text("40".into())).unwrap();
/// assert!(wire.recv().await.unwrap().starts_with("40{\"sid\":")); // CONNECT
/// to_server.send(Inbound::Close).unwrap();
/// writer.await.unwrap();
/// drop(to_server);
/// reader.await.unwrap();
/// # });
/// ```
pub struct WebSocket {
    /// `None` for a refused second WebSocket.
    session: Option<Session>,
    max_payload: usize,
    /// When an unfinished probe dance is abandoned.
    deadline: Instant,
    state: Mutex<State>,
    /// Wakes the writer when the probe dance moves on.
    wake: Notify,
}

struct State {
    phase: Phase,
    /// Frames of our own to write before anything else (the OPEN packet,
    /// `3probe`).
    replies: Vec<Encoded>,
    /// The close frame of a protocol error.
    close: Option<CloseFrame>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Upgrading a polling session; `probed` once `2probe` was answered.
    Probing { probed: bool },
    /// The session runs on this WebSocket.
    Open,
    /// The WebSocket is to be closed (once what is left is written).
    Closing,
    /// The close was handed to the host.
    Closed,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket").field("sid", &self.sid()).field("phase", &self.lock().phase).finish()
    }
}

impl WebSocket {
    /// The session's id (`None` for a refused second WebSocket).
    pub fn sid(&self) -> Option<&str> {
        self.session.as_ref().map(Session::sid)
    }

    /// Hands a message the host read to the session (or to the probe
    /// dance while upgrading). A message over `max_payload` closes the
    /// session with close code 1009.
    ///
    /// # Examples
    /// ```
    /// use tidewire::engine::{Engine, EngineConfig};
    /// use tidewire::hub::Hub;
    /// use tidewire::protocol::engine::Encoded;
    /// use tidewire::transport::host::{self, Inbound, Outbound};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = Hub::default();
    /// hub.of("/");
    /// let engine = hub.engine(EngineConfig::default());
    /// let req = http::Request::get("/socket.io/?EIO=4&transport=websocket").body(()).unwrap();
    /// let ws = host::accept_websocket(&engine, &req, "127.0.0.1:50000".parse().unwrap()).unwrap().start();
    /// ws.next_outgoing().await; // the OPEN packet
    /// ws.receive(Inbound::Text("40".into()));
    /// let Outbound::Frames(connect) = ws.next_outgoing().await else { panic!() };
    /// let Encoded::Text(connect) = &connect[0] else { panic!() };
    /// assert!(connect.starts_with("40{\"sid\":"));
    /// ws.receive(Inbound::Close);
    /// assert_eq!(ws.next_outgoing().await, Outbound::Close(None));
    /// # });
    /// ```
    pub fn receive(&self, message: Inbound) {
        let Some(session) = &self.session else { return };
        let mut state = self.lock();
        match state.phase {
            Phase::Probing { mut probed } => {
                let step = match &message {
                    Inbound::Text(text) => std::str::from_utf8(text)
                        .map_or(Probe::Failed, |text| websocket::probe(session, &mut probed, text)),
                    Inbound::Binary(_) | Inbound::Close | Inbound::Error => Probe::Failed,
                };
                state.phase = match step {
                    Probe::Reply(reply) => {
                        state.replies.push(reply);
                        Phase::Probing { probed }
                    }
                    Probe::Upgraded => Phase::Open,
                    Probe::Failed => {
                        websocket::abort_probe(session, probed);
                        Phase::Closing
                    }
                };
                drop(state);
                self.wake.notify_one();
            }
            Phase::Open => {
                let too_large = match &message {
                    Inbound::Text(data) | Inbound::Binary(data) => data.len() > self.max_payload,
                    Inbound::Close | Inbound::Error => false,
                };
                if too_large {
                    state.close = Some(CloseFrame { code: 1009, reason: "Message too big".to_owned() });
                }
                // The session's handler runs without our lock held.
                drop(state);
                match message {
                    _ if too_large => {
                        tracing::debug!(sid = session.sid(), "websocket message over max_payload");
                        session.close(CloseReason::TransportError);
                    }
                    Inbound::Text(text) => websocket::receive_text(session, text),
                    Inbound::Binary(data) => websocket::receive_binary(session, data),
                    Inbound::Close => session.close(CloseReason::TransportClose),
                    Inbound::Error => session.close(CloseReason::TransportError),
                }
            }
            Phase::Closing | Phase::Closed => {}
        }
    }

    /// The next frames to write, waiting for them: a batch of frames, or
    /// the close that ends the WebSocket (the session closed, by either
    /// side, or an upgrade that did not complete in time). Cancel-safe;
    /// one caller at a time.
    ///
    /// # Examples
    /// See [`receive`](Self::receive).
    pub async fn next_outgoing(&self) -> Outbound {
        loop {
            let phase = {
                let mut state = self.lock();
                if !state.replies.is_empty() {
                    return Outbound::Frames(std::mem::take(&mut state.replies));
                }
                match state.phase {
                    Phase::Closing => {
                        state.phase = Phase::Closed;
                        return Outbound::Close(state.close.take());
                    }
                    Phase::Closed => return Outbound::Close(None),
                    phase => phase,
                }
            };
            let Some(session) = &self.session else { return Outbound::Close(None) };
            if phase == Phase::Open {
                if let Some(batch) = websocket::next_batch(session).await {
                    return Outbound::Frames(batch);
                }
                let mut state = self.lock();
                let rest = websocket::last_frames(session, state.close.is_some());
                state.phase = Phase::Closing;
                if !rest.is_empty() {
                    return Outbound::Frames(rest);
                }
                continue;
            }
            // Probing: the dance moves on, times out, or the session ends.
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(self.deadline) => self.abandon_probe(session),
                () = session.closed() => self.abandon_probe(session),
            }
        }
    }

    fn abandon_probe(&self, session: &Session) {
        let mut state = self.lock();
        if let Phase::Probing { probed } = state.phase {
            websocket::abort_probe(session, probed);
            state.phase = Phase::Closing;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        let Some(session) = &self.session else { return };
        match self.lock().phase {
            Phase::Probing { probed } => websocket::abort_probe(session, probed),
            Phase::Open => session.close(CloseReason::TransportClose),
            Phase::Closing | Phase::Closed => {}
        }
    }
}
