//! Raw-protocol edge cases where engine.io's behaviour is the contract
//! (issue 14): closing over long-polling, base64 binary as WebSocket text,
//! invalid `Sec-WebSocket-Key`, a `413` that the client gets to read, and
//! a polling body that never completes (issue 15).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

const EIO_POLL: &str = "/engine.io/?EIO=4&transport=polling";
const SIO_POLL: &str = "/socket.io/?EIO=4&transport=polling";
const EIO_WS: &str = "/engine.io/?EIO=4&transport=websocket";

/// Opens a polling session at `base`; on `/socket.io/` it joins `/` too.
async fn session(port: u16, base: &'static str) -> Polling {
    let p = Polling::open(port, base).await;
    if base == SIO_POLL {
        p.post_ok("40").await;
        let reply = p.get_packets().await;
        assert!(matches!(&reply[0], PollPacket::Text(t) if t.starts_with("40{")), "{reply:?}");
    }
    p
}

/// A GET that the server holds until something is queued.
async fn pending_get(p: &Polling) -> tokio::task::JoinHandle<Option<HttpResponse>> {
    let req = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", p.url(), p.port);
    let mut s = tcp(p.port).await;
    s.write_all(req.as_bytes()).await.unwrap();
    // Let the server take the GET before anything else happens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::spawn(async move { timeout(STEP, read_response(&mut s)).await.ok().flatten() })
}

#[tokio::test]
async fn close_packet_over_polling_answers_the_pending_get_with_a_noop() {
    run(async {
        let mut server = Server::start();
        for base in [EIO_POLL, SIO_POLL] {
            let p = session(server.port, base).await;
            let get = pending_get(&p).await;
            p.post_ok("1").await;
            let r = get.await.unwrap().expect("the pending GET is answered");
            assert_eq!((r.status, r.text()), (200, "6".to_owned()), "{base}: the pending GET");
            let next = p.get().await;
            assert_eq!(next.status, 400, "{base}: the session is gone");
            next.assert_eio_error(1, "Session ID unknown");
        }
        server.assert_running();
    })
    .await
}

#[tokio::test]
async fn close_packet_before_the_get_arrives_still_gives_that_get_its_noop() {
    run(async {
        let mut server = Server::start();
        for base in [EIO_POLL, SIO_POLL] {
            let p = session(server.port, base).await;
            // The POST overtakes the client's GET on the way to the server.
            p.post_ok("1").await;
            let r = p.get().await;
            assert_eq!((r.status, r.text()), (200, "6".to_owned()), "{base}: the GET sent before the close");
            let next = p.get().await;
            assert_eq!(next.status, 400, "{base}: answered once");
            next.assert_eio_error(1, "Session ID unknown");
        }
        server.assert_running();
    })
    .await
}

#[tokio::test]
async fn base64_binary_as_websocket_text_is_a_binary_message() {
    run(async {
        let mut server = Server::start();
        let mut ws = WsClient::connect(server.port, EIO_WS).await;
        parse_open(&ws.recv_text().await, &[]);
        ws.send_text("b4OHi").await;
        assert_eq!(ws.recv_binary().await, vec![0xe0, 0xe1, 0xe2]);
        ws.send_text("bAA==").await;
        assert_eq!(ws.recv_binary().await, vec![0]);
        // Not base64: a protocol error, as any undecodable packet.
        ws.send_text("b%%%").await;
        ws.expect_closed().await;
        server.assert_running();
    })
    .await
}

#[tokio::test]
async fn an_invalid_websocket_key_is_refused_with_400() {
    run(async {
        let mut server = Server::start();
        for key in ["x", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZ$==", ""] {
            for path in [EIO_WS, "/socket.io/?EIO=4&transport=websocket"] {
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                let r = http_raw(server.port, req.as_bytes()).await;
                assert_eq!(r.status, 400, "key {key:?} on {path}");
            }
        }
        // A valid key still upgrades.
        let mut ws = WsClient::connect(server.port, EIO_WS).await;
        parse_open(&ws.recv_text().await, &[]);
        server.assert_running();
    })
    .await
}

/// POSTs `len` bytes in 64 KiB writes, then reads the answer, as most
/// HTTP clients do; returns the status read, or `None` when the connection
/// was reset before the answer could be read.
async fn post_large(port: u16, path: &str, len: usize) -> Option<u16> {
    let mut s = tcp(port).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {len}\r\n\r\n"
    );
    let chunk = vec![b'a'; 64 * 1024];
    let written = timeout(STEP, async {
        s.write_all(head.as_bytes()).await?;
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            s.write_all(&chunk[..n]).await?;
            sent += n;
        }
        std::io::Result::Ok(())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        // The server stopped reading (or reset): what it answered may be lost.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    timeout(STEP, read_response(&mut s)).await.expect("no answer in time").map(|r| r.status)
}

#[tokio::test]
async fn an_oversized_post_always_gets_to_read_its_413() {
    run(async {
        let mut server = Server::start_with(&["--max-payload", "1000"]);
        let mut seen = Vec::new();
        for i in 0..6 {
            let base = if i % 2 == 0 { EIO_POLL } else { SIO_POLL };
            let p = Polling::open(server.port, base).await;
            seen.push(post_large(server.port, &p.url(), 2_000_000).await);
            p.assert_closed().await;
        }
        assert_eq!(seen, vec![Some(413); 6], "every client reads its 413");
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn a_polling_body_that_never_completes_is_dropped_with_its_session() {
    run(async {
        // Sessions die 600 ms after a missed ping.
        let mut server = Server::start_with(&["--ping-interval-ms", "300", "--ping-timeout-ms", "300"]);
        let p = Polling::open(server.port, EIO_POLL).await;
        let mut s = tcp(server.port).await;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 1000000\r\n\r\n",
            p.url()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b'4'; 990_000]).await.unwrap();
        // The body stops there. The server lets it go once the session is
        // over (its pongs are stuck behind this POST), not never.
        let started = Instant::now();
        let answer = timeout(Duration::from_secs(5), read_response(&mut s)).await.expect("the connection is held");
        if let Some(r) = answer {
            assert_eq!(r.status, 400);
        }
        assert!(started.elapsed() < Duration::from_secs(3), "released after {:?}", started.elapsed());
        p.assert_closed().await;
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}
