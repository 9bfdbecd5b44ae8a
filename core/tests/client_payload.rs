//! The server's `maxPayload` as the client honours it: polling uploads are
//! split so that no POST body exceeds it (as engine.io-client does), and a
//! single packet larger than it fails that emit alone (an error from
//! `emit`, the ack's error, or the socket's emit-error listeners for one
//! that waited offline) instead of getting the session killed. Against
//! the core's server on loopback with a small `maxPayload`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tidewire::client::{ClientError, Manager, ManagerOptions, ManagerState, SocketOptions, TransportKind};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, Socket};
use tidewire::protocol::socketio::Payload;

mod client_common;
use client_common::{STEP, connected};

const MAX: usize = 2000;

async fn server(seen: Arc<Mutex<Vec<i64>>>) -> (Embedded, String) {
    // Rate limits off: hundreds of buffered emits arrive at once.
    let limits = r#"{"rateSocket":"off","rateUser":"off","rateIp":"off"}"#.to_owned();
    let e =
        Embedded::new(EmbedOptions { max_payload: Some(MAX as u64), limits: Some(limits), ..EmbedOptions::default() })
            .unwrap();
    let ns = e.namespace("/").unwrap();
    ns.on("record", move |_s: Socket, ev: Event| {
        seen.lock().unwrap().push(ev.args.data[0].as_i64().unwrap_or(-1));
        async {}
    });
    ns.on("echo", |_s: Socket, ev: Event| async move {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    let addr = e.listen().await.unwrap();
    (e, format!("http://{addr}"))
}

fn record_states(manager: &Manager) -> Arc<Mutex<Vec<ManagerState>>> {
    let log: Arc<Mutex<Vec<ManagerState>>> = Arc::default();
    let l = log.clone();
    manager.on_state(move |s: &ManagerState| l.lock().unwrap().push(s.clone()));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_emits_flush_over_polling_in_bodies_under_max_payload() {
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (_server, url) = server(seen.clone()).await;
    let opts =
        ManagerOptions { transports: vec![TransportKind::Polling], auto_connect: false, ..ManagerOptions::default() };
    let manager = Manager::new(&url, opts).unwrap();
    let states = record_states(&manager);
    let socket = manager.socket("/", SocketOptions::default());
    // Buffered before the handshake: about 30 KB, one POST without splitting.
    let filler = "x".repeat(100);
    for i in 0..300 {
        socket.emit("record", Payload::json(vec![json!(i), json!(filler)])).unwrap();
    }
    socket.connect();
    connected(&socket).await;
    let reply = socket.emit_with_ack("echo", Payload::json(vec![json!("after")]), Some(STEP)).await.unwrap();
    assert_eq!(reply.data, vec![json!("after")]);
    assert_eq!(*seen.lock().unwrap(), (0..300).collect::<Vec<_>>());
    // One session all along: no 413, no reconnection.
    let states = states.lock().unwrap().clone();
    assert!(
        !states.iter().any(|s| matches!(s, ManagerState::Waiting { .. } | ManagerState::Closed { .. })),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_max_payload_fails_its_emit_and_keeps_the_session() {
    for transport in [TransportKind::Polling, TransportKind::WebSocket] {
        let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
        let (_server, url) = server(seen.clone()).await;
        let opts = ManagerOptions { transports: vec![transport], auto_connect: false, ..ManagerOptions::default() };
        let manager = Manager::new(&url, opts).unwrap();
        let states = record_states(&manager);
        let socket = manager.socket("/", SocketOptions::default());
        let errors: Arc<Mutex<Vec<(String, ClientError)>>> = Arc::default();
        let e = errors.clone();
        socket.on_emit_error(move |event: &str, error: &ClientError| {
            e.lock().unwrap().push((event.to_owned(), error.clone()));
        });
        let big = "y".repeat(MAX + 10);
        // Waiting offline, before the handshake told the limit: it fails
        // when the buffer is flushed, its neighbours go through.
        socket.emit("record", Payload::json(vec![json!(1)])).unwrap();
        socket.emit("record", Payload::json(vec![json!(2), json!(big)])).unwrap();
        socket.emit("record", Payload::json(vec![json!(3)])).unwrap();
        socket.connect();
        connected(&socket).await;
        // Once the limit is known, emit refuses at once.
        let refused = socket.emit("record", Payload::json(vec![json!(4), json!(big)]));
        assert!(matches!(refused, Err(ClientError::PayloadTooLarge { max: MAX, .. })), "{refused:?}");
        let refused = socket.emit_with_ack("echo", Payload::json(vec![json!(big)]), Some(STEP)).await;
        assert!(matches!(refused, Err(ClientError::PayloadTooLarge { max: MAX, .. })), "{refused:?}");
        let reply = socket.emit_with_ack("echo", Payload::json(vec![json!(5)]), Some(STEP)).await.unwrap();
        assert_eq!(reply.data, vec![json!(5)]);
        assert_eq!(*seen.lock().unwrap(), vec![1, 3], "{transport:?}");
        tokio::time::timeout(STEP, async {
            while errors.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the emit-error listener heard of it");
        let errors = errors.lock().unwrap().clone();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "record");
        assert!(matches!(errors[0].1, ClientError::PayloadTooLarge { max: MAX, .. }), "{errors:?}");
        let states = states.lock().unwrap().clone();
        assert!(
            !states.iter().any(|s| matches!(s, ManagerState::Waiting { .. } | ManagerState::Closed { .. })),
            "{transport:?}: {states:?}"
        );
    }
}
