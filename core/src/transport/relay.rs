//! The WebSocket of a session another node owns, relayed to the owner over
//! the cluster (see [`super::forward`]): the client upgrades here, the
//! session stays there.
//!
//! The probe dance runs on the owner's session (`Probe`, then `Upgrade`
//! once the client sends `5`). Then two streams: the owner's packets are
//! pulled one batch at a time, the next pull only once the batch is
//! written to the client (so nothing waits here unbounded: a client that
//! does not read leaves its packets in its own session's bounded queue on
//! the owner); what the client sends is pushed in order, a batch per
//! round trip. The owner gone (no answer in time) closes the WebSocket: the
//! client reconnects.

use std::sync::Arc;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::forward::{CLOSED, NOTHING, decode_frames, encode_frames};
use super::ws::{CLOSE_FLUSH_TIMEOUT, Io, READ_BATCH, Ws, write_batch};
use crate::engine::Engine;
use crate::engine::forward::{Forward, Op, Reply, ReplyFuture};
use crate::protocol::engine::{Encoded, Packet};
use crate::ws_message::to_message;

/// Relays the WebSocket `ws` of session `sid` of node `owner`.
pub(super) async fn run<S: Io>(engine: &Engine, forward: Arc<dyn Forward>, owner: String, sid: String, ws: Box<Ws<S>>) {
    let mut ws = ws;
    let send = |op: Op| forward.send(&owner, &sid, op);
    if !probe(engine, &send, &mut ws).await {
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, WebSocketStream::close(&mut ws, None)).await;
        return;
    }
    let wait = engine.config().ping_interval;
    let mut pull: ReplyFuture = send(Op::Pull(wait));
    let mut close_frame: Option<CloseFrame> = None;
    loop {
        tokio::select! {
            () = engine.relays_closing() => {
                // This node stops: the owner closes the session as a client
                // that went away, and the client reconnects elsewhere.
                let _ = send(Op::Close(false)).await;
                break;
            }
            reply = &mut pull => {
                let Some(Reply { status, body, .. }) = reply else {
                    tracing::debug!(sid, "relay: no answer from the owner");
                    break;
                };
                let frames = decode_frames(body).unwrap_or_default();
                let written = frames.is_empty() || write_batch(&mut ws, frames).await.is_ok();
                match status {
                    200 | NOTHING if written => pull = send(Op::Pull(wait)),
                    CLOSED => break,
                    _ => {
                        tracing::debug!(sid, status, written, "relay: pull failed");
                        tokio::spawn(send(Op::Close(false)));
                        break;
                    }
                }
            }
            msg = ws.next() => {
                let mut frames = Vec::new();
                let mut msg = msg;
                let mut closed = None;
                loop {
                    match msg {
                        Some(Ok(Message::Text(t))) => frames.push(Encoded::Text(t.as_str().into())),
                        Some(Ok(Message::Binary(b))) => frames.push(Encoded::Binary(b)),
                        Some(Ok(Message::Close(_))) | None => closed = Some(false),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            let code = match &e {
                                tokio_tungstenite::tungstenite::Error::Utf8(_) => Some(CloseCode::Invalid),
                                tokio_tungstenite::tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
                                tokio_tungstenite::tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
                                _ => None,
                            };
                            close_frame = code.map(|code| CloseFrame { code, reason: e.to_string().into() });
                            closed = Some(true);
                        }
                    }
                    if closed.is_some() || frames.len() >= READ_BATCH {
                        break;
                    }
                    match ws.next().now_or_never() {
                        Some(next) => msg = next,
                        None => break,
                    }
                }
                if !frames.is_empty() {
                    let pushed = send(Op::Push(encode_frames(&frames))).await;
                    if pushed.is_none_or(|r| r.status != 200) {
                        tracing::debug!(sid, "relay: push failed");
                        break;
                    }
                }
                if let Some(protocol_error) = closed {
                    tokio::spawn(send(Op::Close(protocol_error)));
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, WebSocketStream::close(&mut ws, close_frame)).await;
}

/// The upgrade on the owner's session: `2probe` -> `3probe`, then `5`,
/// within `upgrade_timeout`. Returns true when the session now runs here.
async fn probe<S: Io>(engine: &Engine, send: &impl Fn(Op) -> ReplyFuture, ws: &mut Ws<S>) -> bool {
    let deadline = tokio::time::sleep(engine.config().upgrade_timeout);
    tokio::pin!(deadline);
    let mut probed = false;
    loop {
        let msg = tokio::select! {
            () = &mut deadline => break,
            msg = ws.next() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => break,
        };
        match (probed, text.as_str()) {
            (false, "2probe") => {
                if send(Op::Probe).await.is_none_or(|r| r.status != 200) {
                    return false;
                }
                probed = true;
                let pong = Packet::Pong("probe".into()).encode();
                if ws.send(to_message(pong)).await.is_err() {
                    break;
                }
            }
            (true, "5") => return send(Op::Upgrade).await.is_some_and(|r| r.status == 200),
            _ => break,
        }
    }
    if probed {
        tokio::spawn(send(Op::AbortUpgrade));
    }
    false
}
