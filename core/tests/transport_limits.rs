//! The listener's own limits, over loopback: open TCP connections per
//! address (slow-loris clients that never finish a request).

use std::time::Duration;

use tidewire::engine::EngineConfig;
use tidewire::hub::Hub;
use tidewire::transport::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closes `s` within `limit` (EOF or reset).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(limit, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn healthz(addr: std::net::SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.ok()?.ok()?;
    // Closed without an answer: None.
    Some(String::from_utf8_lossy(&out).into_owned()).filter(|a| !a.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_closed_and_slots_come_back() {
    let hub = Hub::default();
    hub.of("/");
    let server = Server::builder()
        .max_connections_per_ip(4)
        .route("/healthz", |_| tidewire::transport::text_response(http::StatusCode::OK, "ok"))
        .mount("/socket.io/", hub.engine(EngineConfig::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    // Four connections that send half a request head and stop.
    let mut loris = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        loris.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fifth is closed at once, before anything is read.
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut fifth, Duration::from_secs(2)).await, "the fifth connection is closed");
    assert_eq!(healthz(addr).await, None, "nothing served past the cap");
    // The held ones are still open (their header timeout is 10 s).
    for s in &mut loris {
        assert!(!closed_within(s, Duration::from_millis(50)).await);
    }
    // A slot comes back when one of them goes.
    drop(loris.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = healthz(addr).await.expect("served again");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A WebSocket holds its slot for as long as it is open.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(healthz(addr).await, None, "the WebSocket counts");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(healthz(addr).await.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_means_no_cap() {
    let server = Server::builder()
        .max_connections_per_ip(0)
        .route("/healthz", |_| tidewire::transport::text_response(http::StatusCode::OK, "ok"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(healthz(addr).await.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    server.shutdown().await;
}
