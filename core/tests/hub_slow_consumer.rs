//! A client that stops reading while the server broadcasts at full speed to
//! it and to 1,000 healthy clients, over real loopback WebSockets: its queue
//! never exceeds the configured bound, it is disconnected as a slow
//! consumer, and every healthy client receives every message in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidewire::engine::{EngineConfig, FLUSH_TIMEOUT};
use tidewire::hub::{Admission, DisconnectReason, Handshake, Hub, HubConfig, Socket};
use tidewire::protocol::socketio::Payload;
use tidewire::transport::Server;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

const HEALTHY: usize = 1000;
const TICKS: usize = 200;
const QUEUE_BYTES: usize = 512 * 1024;
const BLOB: usize = 64 * 1024;

/// Opens a Socket.IO connection (WebSocket only) with `auth`; returns the
/// stream once the namespace is joined. `rcvbuf` shrinks the kernel's
/// receive buffer (a client that does not read fills it quickly).
async fn open(
    addr: std::net::SocketAddr,
    auth: Value,
    rcvbuf: Option<u32>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"));
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().starts_with("40{\"sid\""), "{reply:?}");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_everyone_else_keeps_receiving() {
    let hub = Hub::new(HubConfig::default().unlimited());
    let ns = hub.of("/");
    ns.use_middleware(|h: Arc<Handshake>| async move {
        Ok(Admission::accept().with_data(json!({ "slow": h.auth["slow"] == true })))
    });
    ns.on_connect(|s: Socket| async move {
        let room = if s.data()["slow"] == true { "big" } else { "all" };
        s.join(room).unwrap();
        s.join("ticks").unwrap();
    });
    let slow_reason = Arc::new(std::sync::Mutex::new(None));
    let reason = slow_reason.clone();
    ns.on_disconnect(move |s: Socket, why: DisconnectReason| {
        if s.data()["slow"] == true {
            *reason.lock().unwrap() = Some(why);
        }
        async {}
    });
    let engine = hub.engine(EngineConfig::default().max_buffered_bytes(QUEUE_BYTES));
    let server = Server::builder().mount("/socket.io/", engine.clone()).bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();

    let received = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..HEALTHY {
        let mut ws = open(addr, json!({}), None).await;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut next = 0usize;
            while next < TICKS {
                let Some(Ok(msg)) = ws.next().await else { panic!("a healthy client was cut off at {next}") };
                let text = msg.into_text().unwrap();
                if let Some(body) = text.strip_prefix("42") {
                    let args: Value = serde_json::from_str(body).unwrap();
                    assert_eq!(args, json!(["tick", next]), "in order, none missing");
                    next += 1;
                }
            }
            received.fetch_add(1, Ordering::Relaxed);
            ws
        }));
    }
    // The slow client: connected, in the rooms, and never reads again.
    let slow = open(addr, json!({ "slow": true }), Some(4096)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let slow_socket = ns.sockets().into_iter().find(|s| s.data()["slow"] == true).expect("the slow socket");
    let slow_session = slow_socket.session().clone();

    let blob = "x".repeat(BLOB);
    let mut max_queued = 0;
    for i in 0..TICKS {
        ns.to("ticks").emit("tick", Payload::json(vec![json!(i)]));
        ns.to("big").emit("blob", Payload::json(vec![json!(blob)]));
        max_queued = max_queued.max(slow_session.queued().1);
        tokio::task::yield_now().await;
    }

    // The healthy clients stay connected (their streams are kept).
    let _healthy = tokio::time::timeout(Duration::from_secs(60), async {
        let mut kept = Vec::new();
        for r in readers {
            kept.push(r.await.unwrap());
        }
        kept
    })
    .await
    .expect("every healthy client got every tick");
    assert_eq!(received.load(Ordering::Relaxed), HEALTHY);
    assert!(max_queued <= QUEUE_BYTES, "the slow queue stayed within its bound: {max_queued}");
    // Cut off as a slow consumer: at once, or once its flush deadline passes
    // (what it was sent before the overflow stays deliverable until then).
    tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(2), slow_session.closed())
        .await
        .expect("the slow client was disconnected within the flush deadline");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*slow_reason.lock().unwrap(), Some(DisconnectReason::SlowConsumer));
    assert_eq!(engine.stats().slow_consumers.load(Ordering::Relaxed), 1);
    assert_eq!(ns.socket_count(), HEALTHY);
    drop(slow);
    server.shutdown().await;
}

/// A client that lags behind a flood and reads again within the flush
/// deadline, over a real WebSocket: the answer to the event it sent before
/// the overflow (answered after it), then the notice, then the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_client_gets_its_answer_then_the_notice_then_the_close() {
    let hub = Hub::new(HubConfig::default().unlimited());
    let ns = hub.of("/");
    let overflowed = Arc::new(tokio::sync::Notify::new());
    let done = overflowed.clone();
    ns.on("save", move |_s: Socket, e: tidewire::hub::Event| {
        let done = done.clone();
        async move {
            // A store write that finishes after the queue overflowed.
            done.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(ack) = e.ack {
                let _ = ack.send(Payload::json(vec![json!({ "status": "ok" })]));
            }
        }
    });
    let engine = hub.engine(EngineConfig::default().max_buffered_bytes(QUEUE_BYTES));
    let server = Server::builder().mount("/socket.io/", engine.clone()).bind("127.0.0.1:0").await.unwrap();
    let mut ws = open(server.local_addr(), json!({}), Some(4096)).await;
    ws.send(Message::text(r#"427["save",{"text":"hi"}]"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The client reads nothing while the server floods it past its bound.
    let blob = "x".repeat(BLOB);
    let mut i = 0;
    while engine.stats().slow_consumers.load(Ordering::Relaxed) == 0 {
        assert!(i < 10_000, "the queue never overflowed");
        hub.emit("blob", Payload::json(vec![json!(i), json!(blob)]));
        i += 1;
        tokio::task::yield_now().await;
    }
    overflowed.notify_one();
    // It reads again: what was queued before the overflow, in order, then
    // the answer, then the notice; then the connection closes.
    let mut blobs = 0;
    let mut after = Vec::new();
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(t) if t.starts_with(r#"42["blob","#) => {
                    assert!(after.is_empty(), "a blob after the answer: {after:?}");
                    assert!(t.starts_with(&format!(r#"42["blob",{blobs},"#)), "in order");
                    blobs += 1;
                }
                Message::Text(t) if t.as_str() == "2" => {}
                Message::Text(t) => after.push(t.to_string()),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(5), read).await.expect("the connection closed");
    assert!(blobs > 0 && blobs < i, "{blobs} of {i} blobs queued before the overflow");
    assert_eq!(
        after,
        [
            r#"437[{"status":"ok"}]"#,
            r#"42["tidewire:disconnect",{"code":"slow_consumer","message":"the client does not read its messages"}]"#,
        ]
    );
    server.shutdown().await;
}
