//! HTTP requests to a Socket.IO engine, as the host transport (the same
//! routing and long-polling code as the built-in listener) receives them:
//! methods, queries (transport, EIO, sid, the handshake's own parameters),
//! headers (Origin, Content-Type, Content-Length, Upgrade), and bodies in
//! chunks, down to the Engine.IO payload, the Socket.IO packets with their
//! binary attachments, and the hub.
//!
//! The input is text a person can write (the seeds in `seeds/polling_requests`):
//! requests separated by a line `--`; each is `METHOD QUERY`, header lines,
//! an empty line, and the body, cut into chunks at each byte 0x1f. `{sid}`
//! in a query stands for the session a polling handshake opened first.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidewire::engine::EngineConfig;
use tidewire::hub::Hub;
use tidewire::transport::host::{self, RequestBody};

/// One runtime for every input; its clock is paused (and jumps ahead when
/// every task waits), so a long poll ends at the next ping, at once.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime")
});

const MAX_REQUESTS: usize = 8;

fn request(text: &[u8], sid: &str) -> Option<http::Request<RequestBody>> {
    let (head, body) = match text.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, query) = lines.next()?.split_once(' ').unwrap_or(("GET", ""));
    let uri = format!("/socket.io/?{}", query.replace("{sid}", sid));
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        body.split(|b| *b == 0x1f).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    builder.body(RequestBody::from_stream(futures_util::stream::iter(chunks))).ok()
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let hub = Hub::default();
        hub.of("/");
        hub.of("/chat");
        let config = EngineConfig::default().max_payload(64 * 1024).cors_origin("https://app.example");
        let engine = hub.engine(config);
        let addr: SocketAddr = "127.0.0.1:50000".parse().expect("address");
        let open =
            http::Request::get("/socket.io/?EIO=4&transport=polling").body(RequestBody::empty()).expect("request");
        let open = host::handle(&engine, open, addr).await;
        let sid = std::str::from_utf8(&open.body()[1..])
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["sid"].as_str().map(str::to_owned))
            .expect("a handshake opens a session");
        for text in split_requests(data).take(MAX_REQUESTS) {
            let Some(req) = request(text, &sid) else { continue };
            let answer = tokio::time::timeout(Duration::from_secs(120), host::handle(&engine, req, addr)).await;
            let response = answer.expect("every request is answered by the next ping");
            // Refusals are 4xx (503 only when the global connection cap is full).
            assert!(response.status().as_u16() < 500 || response.status() == 503, "{response:?}");
        }
        engine.close_all();
    });
});

/// The requests of an input: separated by a line `--`.
fn split_requests(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.windows(4).position(|w| w == b"\n--\n") {
            Some(i) => {
                rest = Some(&text[i + 4..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}
