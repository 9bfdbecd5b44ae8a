//! The client's Manager against the core's server over loopback: one
//! connection for several namespaces, polling upgraded to WebSocket,
//! server acks answered by listeners, and reconnection through a proxy
//! that cuts connections, with the offline buffer flushed in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tidewire::client::{Manager, ManagerOptions, ManagerState, SocketOptions, SocketState, TransportKind};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, Socket};
use tidewire::protocol::socketio::Payload;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(5);

async fn server(seen: Arc<Mutex<Vec<i64>>>) -> (Embedded, std::net::SocketAddr) {
    let e = Embedded::new(EmbedOptions::default()).unwrap();
    for name in ["/", "/chat"] {
        let ns = e.namespace(name).unwrap();
        ns.on("echo", |_s: Socket, ev: Event| async move {
            if let Some(ack) = ev.ack {
                let _ = ack.send(ev.args);
            }
        });
        let record = seen.clone();
        ns.on("record", move |_s: Socket, ev: Event| {
            record.lock().unwrap().push(ev.args.data[0].as_i64().unwrap_or(-1));
            async {}
        });
        let slow = seen.clone();
        ns.on("slow", move |_s: Socket, ev: Event| {
            slow.lock().unwrap().push(100);
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(ack) = ev.ack {
                    let _ = ack.send(Payload::json(vec![json!("done")]));
                }
            }
        });
        ns.on("ask", |s: Socket, ev: Event| async move {
            let answer = s.timeout(STEP).emit_with_ack("question", Payload::json(vec![json!("?")])).await;
            if let Some(ack) = ev.ack {
                let _ = ack.send(answer.map(|p| p.data).unwrap_or_default());
            }
        });
    }
    let addr = e.listen().await.unwrap();
    (e, addr)
}

/// A TCP proxy whose connections can be cut.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                });
                held.lock().unwrap().push(task);
            }
        });
        Proxy { port, conns }
    }

    fn cut(&self) {
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn until<T: Clone>(rx: &mut tokio::sync::watch::Receiver<T>, want: impl Fn(&T) -> bool) -> T {
    tokio::time::timeout(STEP, async {
        loop {
            let v = rx.borrow_and_update().clone();
            if want(&v) {
                return v;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("state in time")
}

fn fast() -> ManagerOptions {
    ManagerOptions {
        reconnection_delay: Duration::from_millis(50),
        reconnection_delay_max: Duration::from_millis(200),
        ..ManagerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_share_one_upgraded_connection_and_listeners_answer_acks() {
    let (_server, addr) = server(Arc::default()).await;
    let manager = Manager::new(&format!("http://{addr}"), fast()).unwrap();
    let main = manager.socket("/", SocketOptions::default());
    let chat = manager.socket("chat", SocketOptions::default());
    until(&mut main.watch_state(), |s| matches!(s, SocketState::Connected { .. })).await;
    until(&mut chat.watch_state(), |s| matches!(s, SocketState::Connected { .. })).await;
    until(&mut manager.watch_state(), |s| *s == ManagerState::Open { transport: TransportKind::WebSocket }).await;

    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    main.on("question", move |_e: &str, args: &Payload| {
        h.lock().unwrap().push(args.data.clone());
        None
    });
    main.on("question", |_e: &str, _a: &Payload| Some(Payload::json(vec![json!("answer")])));
    let reply = main.emit_with_ack("ask", Payload::default(), Some(STEP)).await.unwrap();
    // The server acks with the answer's arguments as one array.
    assert_eq!(reply.data, vec![json!(["answer"])]);
    assert_eq!(*heard.lock().unwrap(), vec![vec![json!("?")]]);
    let reply = chat.emit_with_ack("echo", Payload::json(vec![json!(1)]), Some(STEP)).await.unwrap();
    assert_eq!(reply.data, vec![json!(1)]);
    assert!(manager.socket("/chat", SocketOptions::default()).is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_reconnects_and_flushes_the_offline_buffer_in_order() {
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (_server, addr) = server(seen.clone()).await;
    let proxy = Proxy::start(addr).await;
    let opts = ManagerOptions { transports: vec![TransportKind::WebSocket], ..fast() };
    let manager = Manager::new(&format!("http://127.0.0.1:{}", proxy.port), opts).unwrap();
    let socket = manager.socket("/", SocketOptions::default());
    let mut states = socket.watch_state();
    until(&mut states, |s| matches!(s, SocketState::Connected { .. })).await;
    socket.emit("record", Payload::json(vec![json!(0)])).unwrap();
    // Answered after `record` went out (one queue, in order).
    socket.emit_with_ack("echo", Payload::default(), Some(STEP)).await.unwrap();
    proxy.cut();
    until(&mut states, |s| matches!(s, SocketState::Disconnected { will_reconnect: true, .. })).await;
    for i in 1..=5 {
        socket.emit("record", Payload::json(vec![json!(i)])).unwrap();
    }
    until(&mut states, |s| matches!(s, SocketState::Connected { .. })).await;
    let reply = socket.emit_with_ack("echo", Payload::json(vec![json!("after")]), Some(STEP)).await.unwrap();
    assert_eq!(reply.data, vec![json!("after")]);
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_their_ack_id_so_the_server_runs_the_event_once() {
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (_server, addr) = server(seen.clone()).await;
    let opts = ManagerOptions { ack_timeout: Some(Duration::from_millis(100)), retries: 6, ..fast() };
    let manager = Manager::new(&format!("http://{addr}"), opts).unwrap();
    let socket = manager.socket("/", SocketOptions::default());
    until(&mut socket.watch_state(), |s| matches!(s, SocketState::Connected { .. })).await;
    // Each try times out after 100 ms while the handler takes 250 ms: the
    // retries reach the server, which runs the event once and answers a
    // retry of the answered event.
    let reply = socket.emit_with_ack("slow", Payload::default(), None).await.unwrap();
    assert_eq!(reply.data, vec![json!("done")]);
    assert_eq!(*seen.lock().unwrap(), vec![100]);
    // Without retries left, a timeout is an error.
    let strict = Manager::new(
        &format!("http://{addr}"),
        ManagerOptions { ack_timeout: Some(Duration::from_millis(50)), ..fast() },
    )
    .unwrap()
    .socket("/", SocketOptions::default());
    until(&mut strict.watch_state(), |s| matches!(s, SocketState::Connected { .. })).await;
    let r = strict.emit_with_ack("slow", Payload::default(), None).await;
    assert_eq!(r, Err(tidewire::client::ClientError::Timeout));
}
