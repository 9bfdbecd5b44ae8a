//! Helpers shared by the tests that drive the host transport
//! (`transport::host::handle`) with requests built in the test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tidewire::engine::Engine;
use tidewire::transport::host::{self, RequestBody};

/// An answer of the host transport.
pub(crate) type Answer = http::Response<Bytes>;

/// The client address every request comes from.
pub(crate) fn addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// Hands `req` to `engine`; its answer, within `limit`.
pub(crate) async fn send_within(limit: Duration, engine: &Engine, req: http::Request<RequestBody>) -> Answer {
    tokio::time::timeout(limit, host::handle(engine, req, addr())).await.expect("answered in time")
}

/// The body as text.
pub(crate) fn text(res: &Answer) -> &str {
    std::str::from_utf8(res.body()).unwrap()
}

/// The Engine.IO error code of a `400`.
pub(crate) fn error_code(res: &Answer) -> u64 {
    assert_eq!(res.status(), 400, "{}", text(res));
    assert_eq!(res.headers()["content-type"], "application/json");
    serde_json::from_slice::<Value>(res.body()).unwrap()["code"].as_u64().unwrap()
}
