//! Engine.IO over HTTP long-polling and WebSocket, on hyper and
//! tokio-tungstenite (feature `server`).
//!
//! [`handle`] answers one HTTP request for an [`Engine`] (usable from any
//! hyper-based server), and [`Server`] is a ready-made listener that mounts
//! engines at paths, e.g. Socket.IO at `/socket.io/` and a raw Engine.IO
//! application at `/engine.io/`. [`host`] carries the same sessions over
//! somebody else's HTTP server (Node's `http.Server`, ASGI) through plain
//! calls, with no hyper types: both go through one implementation of the
//! routing, the answers, long-polling and the WebSocket upgrade rules.
//!
//! Errors are answered exactly as socket.io's engine answers them:
//!
//! | case | answer |
//! |---|---|
//! | unknown transport | `400 {"code":0,"message":"Transport unknown"}` |
//! | unknown session id | `400 {"code":1,"message":"Session ID unknown"}` |
//! | handshake not a `GET` | `400 {"code":2,"message":"Bad handshake method"}` |
//! | transport mismatch, overlapping polls, bad body type | `400 {"code":3,"message":"Bad request"}` |
//! | `EIO` other than 4 | `400 {"code":5,"message":"Unsupported protocol version"}` |
//! | polling body over `max_payload` | `413`, and the session is closed |

mod admission;
mod adopt;
pub(crate) mod forward;
pub mod host;
mod lean_io;
mod polling;
mod relay;
mod routing;
mod server;
mod websocket;
mod ws;
mod ws_echo;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::engine::Engine;

pub use admission::RECOMMENDED_ADMISSION_SHARE;
pub use server::{DEFAULT_MAX_CONNECTIONS_PER_IP, Route, Server, ServerBuilder};
#[doc(hidden)]
pub use ws_echo::websocket_echo;

/// A small `text/plain` response, for routes such as health checks.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    plain(status, body, "text/plain; charset=utf-8")
}

/// The body type of every response.
pub type Body = Full<Bytes>;

/// The body type of incoming requests.
pub type IncomingBody = Incoming;

pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    routing::plain(status, body, content_type).map(Full::new)
}

/// Answers one Engine.IO request (handshake, poll, post or WebSocket
/// upgrade) for `engine`. `remote_addr` is the peer's address.
pub async fn handle(engine: &Engine, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
    routing::answer(engine, req, remote_addr, false, true, |target, req| ws::upgrade(engine, target, req))
        .await
        .map(Full::new)
}
