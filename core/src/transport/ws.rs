//! The WebSocket transport on tokio-tungstenite: a fresh session, or the
//! upgrade of a polling one (the decisions are in [`super::websocket`]).
//!
//! One task per connection reads frames and writes the session's queue in
//! batches (many frames, one flush). Frame and message sizes are capped at
//! `max_payload` before anything is allocated for them; invalid UTF-8 in a
//! text frame closes with 1007, an oversized message with 1009.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, handshake::derive_accept_key};

use super::adopt::{UpgradeStep, UpgradeWatch};
use super::lean_io::LeanIo;
use super::routing::{Answer, HttpError, plain};
use super::server::ConnectionSlot;
use super::websocket::{self, Probe, Target};
use crate::engine::{CloseReason, Engine, EngineConfig, Session};
use crate::protocol::engine::Encoded;
use crate::ws_message::to_message;

pub(super) type Ws<S> = WebSocketStream<LeanIo<S>>;

/// What the WebSocket task needs from the connection.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// How long the final flush of a closing session may take.
pub(super) const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Completes a WebSocket handshake with hyper for `target` (the `101`),
/// then runs the connection on a task of its own.
pub(super) fn upgrade(engine: &Engine, target: Target, mut req: Request<Incoming>) -> Answer {
    let Some(accept) = accept_key(req.headers()) else {
        return HttpError::BadRequest.answer();
    };
    // The listener's count of this connection lasts as long as the socket.
    let slot = req.extensions_mut().remove::<ConnectionSlot>();
    let on_upgrade = hyper::upgrade::on(&mut req);
    spawn_upgraded(on_upgrade, Job::Engine(engine.clone(), target), slot);
    switching_protocols(&accept)
}

/// What runs on a connection once hyper hands it over.
pub(super) enum Job {
    /// An Engine.IO session: a new one or the upgrade of a polling one.
    Engine(Engine, Target),
    /// The conformance echo of [`super::ws_echo`], with the engine's limits.
    Echo(WebSocketConfig),
}

/// Waits for hyper to hand the connection over, then runs `job` on it, on
/// a task of its own.
pub(super) fn spawn_upgraded(on_upgrade: OnUpgrade, job: Job, slot: Option<ConnectionSlot>) {
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        // Take the socket back from hyper so its request buffer (8 KiB)
        // is freed; other IO types (a custom server) are used as they are.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => job.run(LeanIo::new(parts.io.into_inner(), &parts.read_buf), slot).await,
            Err(upgraded) => job.run(LeanIo::new(TokioIo::new(upgraded), &[]), slot).await,
        }
    });
}

impl Job {
    async fn run<S: Io>(self, io: LeanIo<S>, slot: Option<ConnectionSlot>) {
        match self {
            Job::Engine(engine, target) => serve(engine, target, io, slot, None).await,
            Job::Echo(config) => super::ws_echo::serve(config, io, slot).await,
        }
    }
}

/// The `Sec-WebSocket-Accept` of an upgrade request whose key and version
/// are valid; `None` when it is to be refused.
pub(super) fn accept_key(headers: &HeaderMap) -> Option<String> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k.as_bytes()))
        .map(|k| derive_accept_key(k.as_bytes()));
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    key.filter(|_| version_ok)
}

/// The `101` that completes a WebSocket handshake.
pub(super) fn switching_protocols(accept: &str) -> Answer {
    let mut res = plain(StatusCode::SWITCHING_PROTOCOLS, Bytes::new(), "text/plain");
    res.headers_mut().remove(header::CONTENT_TYPE);
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// The tungstenite configuration of every accepted WebSocket: frames and
/// messages capped at `max_payload` before anything is allocated for them.
pub(super) fn ws_config(config: &EngineConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.websocket_read_buffer)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(config.max_payload))
        .max_frame_size(Some(config.max_payload))
}

/// The close frame answering a read error: 1007 for invalid UTF-8, 1009
/// for an oversized frame or message, 1002 for a protocol violation.
pub(super) fn close_frame(e: &WsError) -> Option<CloseFrame> {
    let code = match e {
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Protocol(_) => CloseCode::Protocol,
        _ => return None,
    };
    Some(CloseFrame { code, reason: e.to_string().into() })
}

/// Whether `key` is a `Sec-WebSocket-Key` as RFC 6455 defines it: 16 bytes
/// in base64 (the same check as the `ws` package under engine.io).
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Runs one upgraded connection. Everything large lives on the heap (the
/// WebSocket state, the request) so the task that waits on an idle
/// connection for hours is a few hundred bytes: async functions keep
/// their arguments' space for their whole life. `watch` hears the steps
/// of a polling session's upgrade (a host that handed its connection over).
pub(super) async fn serve<S: Io>(
    engine: Engine,
    target: Target,
    io: LeanIo<S>,
    slot: Option<ConnectionSlot>,
    watch: Option<UpgradeWatch>,
) {
    let ws_config = ws_config(engine.config());
    let mut ws = Box::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await);
    match target {
        Target::Refused => {
            close(&mut ws, None).await;
        }
        Target::Relay(relay) => {
            let (forward, owner, sid) = *relay;
            super::relay::run(&engine, forward, owner, sid, ws).await;
        }
        Target::Upgrade(session) => {
            if probe(&engine, &session, &mut ws, watch.as_deref()).await {
                // A task of its own: the setup state above is not kept alive.
                tokio::spawn(run(session, ws, slot));
            }
        }
        Target::New(info) => {
            let (info, admitted) = *info;
            let (session, open) = websocket::open(&engine, &info, admitted);
            drop(info);
            send_open(session, open, ws, slot).await;
        }
        Target::Opened(opened) => {
            let (session, open) = *opened;
            send_open(session, open, ws, slot).await;
        }
    }
}

/// Sends a new session's OPEN packet, then runs the session.
async fn send_open<S: Io>(session: Session, open: Encoded, mut ws: Box<Ws<S>>, slot: Option<ConnectionSlot>) {
    if ws.send(to_message(open)).await.is_err() {
        session.close(CloseReason::TransportClose);
        return;
    }
    tokio::spawn(run(session, ws, slot));
}

/// The upgrade of a polling session: `2probe` -> `3probe`, then `5`.
/// Returns true when the session now runs on this WebSocket.
async fn probe<S: Io>(
    engine: &Engine,
    session: &Session,
    ws: &mut Ws<S>,
    watch: Option<&(dyn Fn(UpgradeStep) + Send + Sync)>,
) -> bool {
    let deadline = tokio::time::sleep(engine.config().upgrade_timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    loop {
        let msg = tokio::select! {
            () = &mut deadline => break,
            () = session.closed() => break,
            msg = ws.next() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => break,
        };
        match websocket::probe(session, &mut probed, text.as_str()) {
            Probe::Reply(reply) => {
                if let Some(watch) = watch {
                    watch(UpgradeStep::Started);
                }
                if ws.send(to_message(reply)).await.is_err() {
                    break;
                }
            }
            Probe::Upgraded => {
                if let Some(watch) = watch {
                    watch(UpgradeStep::Done);
                }
                return true;
            }
            Probe::Failed => break,
        }
    }
    websocket::abort_probe(session, probed);
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, close(ws, None)).await;
    false
}

pub(super) async fn write_batch<S: Io>(ws: &mut Ws<S>, packets: Vec<Encoded>) -> Result<(), WsError> {
    for p in packets {
        ws.feed(to_message(p)).await?;
    }
    ws.flush().await
}

/// Completes the closing handshake: sends `frame` (or a close without a
/// code) unless the peer closed first, and flushes what tungstenite queued,
/// including its answer to the peer's close. (`WebSocketStream::close`
/// alone fails with `SendAfterClosing` once the peer has closed, before
/// that answer is written: the peer then sees no close frame at all.)
pub(super) async fn close<S: Io>(ws: &mut Ws<S>, frame: Option<CloseFrame>) {
    if frame.is_some() {
        let _ = ws.send(Message::Close(frame)).await;
    }
    let _ = SinkExt::close(ws).await;
}

/// Messages handled back to back before the queue is written.
pub(super) const READ_BATCH: usize = 64;

/// Hands one WebSocket message to the session. Returns the close frame to
/// send when the message broke the protocol.
fn receive(session: &Session, msg: Option<Result<Message, WsError>>) -> Option<CloseFrame> {
    match msg {
        Some(Ok(Message::Text(text))) => websocket::receive_text(session, Bytes::from(text)),
        Some(Ok(Message::Binary(data))) => websocket::receive_binary(session, data),
        Some(Ok(Message::Close(_))) | None => session.close(CloseReason::TransportClose),
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            tracing::debug!(sid = session.sid(), error = %e, "websocket read error");
            session.close(CloseReason::TransportError);
            return close_frame(&e);
        }
    }
    None
}

/// Runs a session on this WebSocket until either side closes.
async fn run<S: Io>(session: Session, mut ws: Box<Ws<S>>, _slot: Option<ConnectionSlot>) {
    let mut close_frame = None;
    loop {
        tokio::select! {
            biased;
            batch = websocket::next_batch(&session) => {
                let Some(batch) = batch else { break };
                // Boxed: the write's state exists only while writing, so the
                // loop an idle connection waits in stays small.
                let written = tokio::select! {
                    r = Box::pin(write_batch(&mut ws, batch)) => r,
                    () = session.closed() => break,
                };
                if written.is_err() {
                    session.close(CloseReason::TransportClose);
                    break;
                }
            }
            msg = ws.next() => {
                // Handle every message already read before writing: the
                // answers to a burst of requests then go out in one write.
                let mut msg = msg;
                let mut handled = 0;
                loop {
                    if let Some(frame) = receive(&session, msg) {
                        close_frame = Some(frame);
                    }
                    handled += 1;
                    // Take the next message only if it will be handled.
                    if session.is_closed() || handled == READ_BATCH {
                        break;
                    }
                    match ws.next().now_or_never() {
                        Some(next) => msg = next,
                        None => break,
                    }
                }
            }
        }
    }
    // Deliver what the server queued before closing (e.g. a DISCONNECT),
    // then close the WebSocket.
    let rest = websocket::last_frames(&session, close_frame.is_some());
    // Boxed for the same reason as the writes: it runs once, at the end.
    let _ = Box::pin(tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        if !rest.is_empty() {
            let _ = write_batch(&mut ws, rest).await;
        }
        close(&mut ws, close_frame).await;
    }))
    .await;
}
