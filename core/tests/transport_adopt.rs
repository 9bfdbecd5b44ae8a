//! A host hands a WebSocket connection over to the core
//! (`WebSocketAccept::adopt`): a real loopback TCP connection whose upgrade
//! request the test read itself, as Node's HTTP parser would, with the
//! bytes it read past the request.

mod host_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use host_common::{addr, send_within, text};
use tidewire::engine::{EngineConfig, TransportKind};
use tidewire::hub::Hub;
use tidewire::transport::host::{self, RequestBody, UpgradeStep};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const LIMIT: Duration = Duration::from_secs(5);
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(query: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame (mask 0: the payload as it is).
fn client_text(payload: &str) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// Reads from `stream` up to the end of an HTTP head; the head (parsed
/// into a request or kept as text) and what came after it.
async fn read_head(stream: &mut TcpStream, at_least: usize) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.len() >= at_least
        {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before the head ended");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The request a host's HTTP parser would make of `head`.
fn parse(head: &str) -> http::Request<()> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let (method, uri) = (first.next().unwrap(), first.next().unwrap());
    let mut req = http::Request::builder().method(method).uri(uri);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(": ").unwrap();
        req = req.header(name, value);
    }
    req.body(()).unwrap()
}

/// A loopback connection: (the server's end, the client's end).
async fn connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

async fn next_text<S>(ws: &mut WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_new_session_on_a_handed_over_connection_reads_the_bytes_read_past_the_request() {
    let hub = Hub::default();
    hub.of("/");
    let engine = hub.engine(EngineConfig::default());
    let (mut server, mut client) = connection().await;

    // The client sends its CONNECT right behind the request, in one write:
    // the host's parser reads both, and hands the frame over as `head`.
    let request = upgrade_request("");
    let mut sent = request.clone().into_bytes();
    sent.extend_from_slice(&client_text("40"));
    client.write_all(&sent).await.unwrap();
    let (head, rest) = read_head(&mut server, sent.len()).await;
    assert_eq!(rest, client_text("40"));

    let accept = host::accept_websocket(&engine, &parse(&head), addr()).unwrap();
    assert!(accept.can_adopt());
    let mut extra = http::HeaderMap::new();
    extra.insert("set-cookie", "io=abc; Path=/".parse().unwrap());
    accept.adopt(server, &rest, &extra, None).unwrap();
    assert_eq!(engine.session_count(), 1, "the session opens on the calling thread");

    let (answer, after) = read_head(&mut client, 0).await;
    assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{answer}");
    assert!(answer.contains("set-cookie: io=abc; Path=/\r\n"), "{answer}");
    let mut ws = WebSocketStream::from_partially_read(client, after, Role::Client, None).await;
    assert!(next_text(&mut ws).await.starts_with("0{\"sid\":"));
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"), "the CONNECT in the head was read");

    // The client closes: the session ends and the core closes its socket.
    ws.close(None).await.unwrap();
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
            None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    tokio::time::timeout(LIMIT, async {
        while engine.session_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_upgrade_of_a_polling_session_runs_the_probe_dance_and_reports_its_steps() {
    let hub = Hub::default();
    hub.of("/");
    let engine = hub.engine(EngineConfig::default());
    let open = http::Request::get("/socket.io/?EIO=4&transport=polling").body(RequestBody::empty()).unwrap();
    let res = send_within(LIMIT, &engine, open).await;
    let sid = serde_json::from_str::<serde_json::Value>(&text(&res)[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let session = engine.session(&sid).unwrap();

    let (mut server, mut client) = connection().await;
    let request = upgrade_request(&format!("&sid={sid}"));
    client.write_all(request.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut server, request.len()).await;
    let accept = host::accept_websocket(&engine, &parse(&head), addr()).unwrap();
    assert_eq!(accept.sid(), Some(sid.as_str()));
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    accept
        .adopt(server, &rest, &http::HeaderMap::new(), Some(Box::new(move |s| seen.lock().unwrap().push(s))))
        .unwrap();

    let (answer, after) = read_head(&mut client, 0).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let mut ws = WebSocketStream::from_partially_read(client, after, Role::Client, None).await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    assert_eq!(*steps.lock().unwrap(), [UpgradeStep::Started]);
    assert!(session.is_upgrading());
    ws.send(Message::text("5")).await.unwrap();
    tokio::time::timeout(LIMIT, async {
        while session.transport() != TransportKind::WebSocket {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*steps.lock().unwrap(), [UpgradeStep::Started, UpgradeStep::Done]);

    // The session's traffic now runs on the handed-over connection.
    ws.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    // A server close delivers what is queued, then closes the connection.
    session.close_after_flush(tidewire::engine::CloseReason::ForcedClose);
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_handshake_the_core_cannot_answer_is_given_back() {
    let engine = Hub::default().engine(EngineConfig::default());
    // No Sec-WebSocket-Key: the host's own WebSocket answers (and refuses) it.
    let req = http::Request::get("/socket.io/?EIO=4&transport=websocket")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let accept = host::accept_websocket(&engine, &req, addr()).unwrap();
    assert!(!accept.can_adopt());
    let (io, _peer) = tokio::io::duplex(64);
    let accept = accept.adopt(io, &[], &http::HeaderMap::new(), None).unwrap_err();
    assert_eq!(accept.sid(), None);
    assert_eq!(engine.session_count(), 0);
}
