//! A WebSocket echo for protocol conformance suites (Autobahn's
//! fuzzingclient cases): every text and binary message comes back as it
//! came, on the same frame layer as the Engine.IO WebSocket of
//! [`super::ws`] (the handshake checks, the tungstenite configuration and
//! its caps, the lean IO, the close codes of read errors, the closing
//! sequence). Only what is done with a message differs: an Engine.IO
//! WebSocket reads each text frame as an Engine.IO packet, so a suite
//! that sends arbitrary messages cannot drive it.
//!
//! Not for applications: a server mounts it only for such tests.

use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Body;
use super::lean_io::LeanIo;
use super::routing::HttpError;
use super::server::ConnectionSlot;
use super::ws::{
    CLOSE_FLUSH_TIMEOUT, Io, Job, accept_key, close_frame, spawn_upgraded, switching_protocols, ws_config,
};
use crate::engine::EngineConfig;

/// Answers a WebSocket upgrade request with an echo that applies
/// `config`'s limits (`max_payload` per frame and message, the read
/// buffer): a route handler for [`super::ServerBuilder::route`].
/// A request that is not a valid upgrade gets `400`.
#[doc(hidden)]
pub fn websocket_echo(config: &EngineConfig, req: &Request<Incoming>) -> Response<Body> {
    let accept = accept_key(req.headers());
    let on_upgrade = req.extensions().get::<OnUpgrade>().cloned();
    let (Some(accept), Some(on_upgrade)) = (accept, on_upgrade) else {
        return HttpError::BadRequest.answer().map(Full::new);
    };
    let slot = req.extensions().get::<ConnectionSlot>().cloned();
    spawn_upgraded(on_upgrade, Job::Echo(ws_config(config)), slot);
    switching_protocols(&accept).map(Full::new)
}

/// Echoes messages until either side closes; a read error closes with its
/// code, as on an Engine.IO WebSocket.
pub(super) async fn serve<S: Io>(config: WebSocketConfig, io: LeanIo<S>, _slot: Option<ConnectionSlot>) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let frame = loop {
        match ws.next().await {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            // A close from the peer is answered by tungstenite.
            Some(Ok(Message::Close(_))) | None => break None,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket echo read error");
                break close_frame(&e);
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, super::ws::close(&mut ws, frame)).await;
}
