//! The engine layer on its own (like npm `engine.io`) and the server's
//! lifecycle, driven over a real loopback WebSocket.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tidewire::engine::{CloseReason, Connection, Engine, EngineConfig, EngineHandler, RequestInfo, Session};
use tidewire::hub::{DisconnectReason, Hub, Socket};
use tidewire::protocol::engine::Frame;
use tidewire::transport::Server;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, PartialEq)]
enum Seen {
    Open(Option<String>),
    Message(Frame),
    Close(CloseReason),
}

struct Recorder(mpsc::UnboundedSender<Seen>);
struct RecorderConn(mpsc::UnboundedSender<Seen>, Session);

impl EngineHandler for Recorder {
    fn on_open(&self, session: &Session, request: &RequestInfo) -> Box<dyn Connection> {
        let _ = self.0.send(Seen::Open(request.query_param("room").map(str::to_owned)));
        Box::new(RecorderConn(self.0.clone(), session.clone()))
    }
}

impl Connection for RecorderConn {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let _ = self.1.send_frame(Frame::Text(format!("got {}", frame.len()).into()));
        let _ = self.0.send(Seen::Message(frame));
        Ok(())
    }
    fn on_close(&mut self, reason: CloseReason) {
        let _ = self.0.send(Seen::Close(reason));
    }
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("timed out").expect("channel closed")
}

async fn text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("timed out") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_engine_at_its_own_path_gets_open_messages_and_close() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = Engine::new(EngineConfig::default(), Arc::new(Recorder(tx)));
    let hub = Hub::default();
    hub.of("/");
    let server = Server::builder()
        .mount("/socket.io/", hub.engine(EngineConfig::default()))
        .mount("/engine.io/", engine.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("ws://{}/engine.io/?EIO=4&transport=websocket&room=lobby", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let open = text(&mut ws).await;
    assert!(open.starts_with("0{\"sid\":"), "{open}");
    assert_eq!(next(&mut rx).await, Seen::Open(Some("lobby".into())));
    assert_eq!(engine.session_count(), 1);

    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next(&mut rx).await, Seen::Message(Frame::Text("hello".into())));
    assert_eq!(text(&mut ws).await, "4got 5");

    ws.send(Message::binary(Bytes::from_static(&[1, 2, 3]))).await.unwrap();
    assert_eq!(next(&mut rx).await, Seen::Message(Frame::Binary(Bytes::from_static(&[1, 2, 3]))));
    assert_eq!(text(&mut ws).await, "4got 3");

    // The Socket.IO mount on the same port is unaffected by the raw engine.
    let sio = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.local_addr());
    let (mut sio_ws, _) = tokio_tungstenite::connect_async(sio).await.unwrap();
    assert!(text(&mut sio_ws).await.starts_with("0{"));
    sio_ws.send(Message::text("40")).await.unwrap();
    assert!(text(&mut sio_ws).await.starts_with("40{\"sid\":"));

    ws.send(Message::text("1")).await.unwrap();
    assert_eq!(next(&mut rx).await, Seen::Close(CloseReason::TransportClose));
    assert_eq!(engine.session_count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_sockets_with_server_shutting_down() {
    let hub = Hub::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    hub.of("/").on_disconnect(move |socket: Socket, reason: DisconnectReason| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((socket.id().to_owned(), reason));
        }
    });
    let engine = hub.engine(EngineConfig::default());
    let server = Server::builder().mount("/socket.io/", engine.clone()).bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    text(&mut ws).await;
    ws.send(Message::text("40")).await.unwrap();
    let connect = text(&mut ws).await;
    let sid: serde_json::Value = serde_json::from_str(&connect[2..]).unwrap();

    server.shutdown().await;
    let (id, reason) = next(&mut rx).await;
    assert_eq!(json!(id), sid["sid"]);
    assert_eq!(reason, DisconnectReason::ServerShutdown);
    assert_eq!(reason.to_string(), "server shutting down");
    assert_eq!(engine.session_count(), 0);
    // The client sees its connection end.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the client's connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reasons_reach_the_handlers() {
    let hub = Hub::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for nsp in ["/", "/chat"] {
        let tx = tx.clone();
        hub.of(nsp).on_disconnect(move |socket: Socket, reason: DisconnectReason| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((socket.namespace().to_owned(), reason));
            }
        });
    }
    let server =
        Server::builder().mount("/socket.io/", hub.engine(EngineConfig::default())).bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    text(&mut ws).await;
    ws.send(Message::text("40")).await.unwrap();
    text(&mut ws).await;
    ws.send(Message::text("40/chat,")).await.unwrap();
    assert!(text(&mut ws).await.starts_with("40/chat,{\"sid\":"));

    // Leaving one namespace keeps the connection and the other namespace.
    ws.send(Message::text("41/chat,")).await.unwrap();
    assert_eq!(next(&mut rx).await, ("/chat".to_owned(), DisconnectReason::ClientNamespaceDisconnect));
    assert_eq!(hub.of("/").socket_count(), 1);
    assert_eq!(hub.of("/chat").socket_count(), 0);

    // A parse error closes the connection with that reason.
    ws.send(Message::text("42{}")).await.unwrap();
    assert_eq!(next(&mut rx).await, ("/".to_owned(), DisconnectReason::ParseError));
    assert_eq!(hub.of("/").socket_count(), 0);
    server.shutdown().await;
}
