//! The WebSocket frame layer over real loopback connections: the closing
//! handshake, and the conformance echo that the RFC 6455 suite drives
//! (`make autobahn`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tidewire::engine::EngineConfig;
use tidewire::hub::Hub;
use tidewire::transport::{Server, websocket_echo};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Client) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("timed out")
}

async fn server(max_payload: usize) -> Server {
    let hub = Hub::default();
    hub.of("/");
    let config = EngineConfig::default().max_payload(max_payload);
    let echo_config = config.clone();
    Server::builder()
        .mount("/socket.io/", hub.engine(config))
        .route("/ws-echo", move |req| websocket_echo(&echo_config, req))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// Sends a close and expects the server's close in answer, then the end.
async fn close_is_answered(ws: &mut Client) {
    let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
    ws.send(Message::Close(Some(frame))).await.unwrap();
    loop {
        match next(ws).await {
            Some(Ok(Message::Close(reply))) => {
                assert_eq!(reply.map(|f| f.code), Some(CloseCode::Normal));
                break;
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected the server's close frame, got {other:?}"),
        }
    }
    // Then the server ends the connection (it closes TCP first, RFC 6455 7.1.1).
    assert!(matches!(next(ws).await, None | Some(Err(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_on_a_socket_io_websocket_is_answered_with_a_close_frame() {
    let server = server(1_000_000).await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Text(open))) => assert!(open.starts_with("0{"), "{open}"),
        other => panic!("expected the OPEN packet, got {other:?}"),
    }
    close_is_answered(&mut ws).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_returns_messages_as_they_came_and_answers_a_close() {
    let server = server(1_000_000).await;
    let url = format!("ws://{}/ws-echo", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for msg in [Message::text(""), Message::text("héllo"), Message::binary(Bytes::from_static(&[0, 255, 1]))] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(next(&mut ws).await.unwrap().unwrap(), msg);
    }
    close_is_answered(&mut ws).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_applies_the_engine_caps_and_closes_with_1009() {
    let server = server(1024).await;
    let url = format!("ws://{}/ws-echo", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::binary(vec![7u8; 1025])).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_refuses_a_request_that_is_not_an_upgrade() {
    let server = server(1024).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /ws-echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    server.shutdown().await;
}
