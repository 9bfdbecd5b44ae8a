//! The client's listeners run off the connection's task: a listener that
//! blocks longer than the server's `pingInterval + pingTimeout` does not
//! cost the connection, events keep their order, server acks are still
//! answered by listeners, and the bounded listener queue drops (and
//! counts) what overflows it. Against the core's server on loopback.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tidewire::client::{Manager, ManagerOptions, ManagerState, SocketOptions, SocketState, TransportKind};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, Socket};
use tidewire::protocol::socketio::Payload;

mod client_common;
use client_common::{STEP, connected};

/// A server whose heartbeat gives up after 200 ms of silence.
async fn server() -> (Embedded, String) {
    let e = Embedded::new(EmbedOptions {
        ping_interval_ms: Some(100),
        ping_timeout_ms: Some(100),
        ..EmbedOptions::default()
    })
    .unwrap();
    let ns = e.namespace("/").unwrap();
    // `burst` n: the server emits `tick` 1..=n, then asks `question` and
    // acks the burst with the answer.
    ns.on("burst", |s: Socket, ev: Event| async move {
        let n = ev.args.data.first().and_then(|v| v.as_i64()).unwrap_or(0);
        for i in 1..=n {
            let _ = s.emit("tick", Payload::json(vec![json!(i)]));
        }
        let answer = s.timeout(STEP).emit_with_ack("question", Payload::json(vec![json!("?")])).await;
        if let Some(ack) = ev.ack {
            let _ = ack.send(answer.map(|p| p.data).unwrap_or_default());
        }
    });
    ns.on("flood", |s: Socket, ev: Event| async move {
        let n = ev.args.data.first().and_then(|v| v.as_i64()).unwrap_or(0);
        for i in 1..=n {
            let _ = s.emit("tick", Payload::json(vec![json!(i)]));
        }
        if let Some(ack) = ev.ack {
            let _ = ack.send(Payload::json(vec![json!("sent")]));
        }
    });
    let addr = e.listen().await.unwrap();
    (e, format!("http://{addr}"))
}

/// Every state a manager and a socket went through.
fn record_states(manager: &Manager, socket: &tidewire::client::Socket) -> Arc<Mutex<Vec<String>>> {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    manager.on_state(move |s: &ManagerState| l.lock().unwrap().push(format!("manager {s:?}")));
    let l = log.clone();
    socket.on_state(move |s: &SocketState| l.lock().unwrap().push(format!("socket {s:?}")));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_slower_than_the_heartbeat_does_not_cost_the_connection() {
    for transport in [TransportKind::WebSocket, TransportKind::Polling] {
        let (_server, url) = server().await;
        let opts = ManagerOptions { transports: vec![transport], ..ManagerOptions::default() };
        let manager = Manager::new(&url, opts).unwrap();
        let socket = manager.socket("/", SocketOptions::default());
        connected(&socket).await;
        let states = record_states(&manager, &socket);

        let ticks = Arc::new(Mutex::new(Vec::new()));
        let t = ticks.clone();
        // Each tick blocks its thread for longer than the server's whole
        // heartbeat window (pingInterval + pingTimeout = 200 ms).
        socket.on("tick", move |_e: &str, args: &Payload| {
            std::thread::sleep(Duration::from_millis(300));
            t.lock().unwrap().push(args.data[0].as_i64().unwrap());
            None
        });
        socket.on("question", |_e: &str, _a: &Payload| {
            std::thread::sleep(Duration::from_millis(400));
            Some(Payload::json(vec![json!("answer")]))
        });
        let reply = socket.emit_with_ack("burst", Payload::json(vec![json!(4)]), Some(STEP)).await;
        // The server's ack came after the question, answered by the slow
        // listener after every tick: order kept, the connection never lost.
        assert_eq!(reply.map(|p| p.data), Ok(vec![json!(["answer"])]), "{transport:?}");
        assert_eq!(*ticks.lock().unwrap(), vec![1, 2, 3, 4], "{transport:?}");
        assert!(socket.is_connected());
        assert_eq!(*states.lock().unwrap(), Vec::<String>::new(), "{transport:?}: no state change at all");
        assert_eq!(socket.dropped_events(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_queue_drops_and_counts_the_newest_events() {
    let (_server, url) = server().await;
    let opts = ManagerOptions {
        transports: vec![TransportKind::WebSocket],
        listener_queue_capacity: 4,
        ..ManagerOptions::default()
    };
    let manager = Manager::new(&url, opts).unwrap();
    let socket = manager.socket("/", SocketOptions::default());
    connected(&socket).await;
    let states = record_states(&manager, &socket);

    // The first tick's listener waits for the gate: the queue fills up.
    let (gate_tx, gate_rx) = std_mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate_rx));
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = ticks.clone();
    socket.on("tick", move |_e: &str, args: &Payload| {
        if let Some(rx) = gate.lock().unwrap().take() {
            let _ = rx.recv_timeout(STEP);
        }
        t.lock().unwrap().push(args.data[0].as_i64().unwrap());
        None
    });
    let total = 200;
    let reply = socket.emit_with_ack("flood", Payload::json(vec![json!(total)]), Some(STEP)).await.unwrap();
    assert_eq!(reply.data, vec![json!("sent")]);
    // Every tick has arrived (the ack came after them) while the first
    // listener still blocks.
    let arrived = || ticks.lock().unwrap().len() as u64 + socket.dropped_events();
    assert!(socket.dropped_events() > 0, "the queue overflowed");
    gate_tx.send(()).unwrap();
    tokio::time::timeout(STEP, async {
        while arrived() < total as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every tick delivered or dropped");
    let delivered = ticks.lock().unwrap().clone();
    // What was kept came in order: the events that found the queue full
    // were dropped, not reordered; the first one (blocking) was kept.
    assert!(delivered.len() >= 4 && delivered.len() < total, "{delivered:?}");
    assert_eq!(delivered[0], 1);
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "{delivered:?}");
    assert_eq!(delivered.len() as u64 + socket.dropped_events(), total as u64);
    // Dropping is the listener queue's policy, not the connection's: still up.
    let reply = socket.emit_with_ack("flood", Payload::json(vec![json!(0)]), Some(STEP)).await.unwrap();
    assert_eq!(reply.data, vec![json!("sent")]);
    assert_eq!(*states.lock().unwrap(), Vec::<String>::new());
}
