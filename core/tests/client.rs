//! The core's Socket.IO client against the core's server, over loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tidewire::client::{Client, ClientConfig, ClientError, ClientState};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Admission, ConnectError, Event, Handshake, Socket};
use tidewire::protocol::socketio::Payload;

const STEP: Duration = Duration::from_secs(5);

async fn server() -> (Embedded, String) {
    let e = Embedded::new(EmbedOptions::default()).unwrap();
    let ns = e.namespace("/").unwrap();
    ns.use_middleware(|h: Arc<Handshake>| async move {
        match h.auth.get("token").and_then(Value::as_str) {
            Some("bad") => Err(ConnectError::new("unauthorized").with_data(json!({"why": "bad token"}))),
            Some(user) => Ok(Admission::user(user)),
            None => Ok(Admission::accept()),
        }
    });
    ns.on("echo", |_s: Socket, ev: Event| async move {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    ns.on("poke-me", |s: Socket, _ev: Event| async move {
        let _ = s.emit("poked", Payload::json(vec![json!(s.user_id())]));
    });
    ns.on("ask-me", |s: Socket, ev: Event| async move {
        let answer = s.timeout(STEP).emit_with_ack("question", Payload::json(vec![json!(1)])).await;
        if let Some(ack) = ev.ack {
            let _ = ack.send(Payload::json(vec![json!(answer.is_ok())]));
        }
    });
    ns.on("kick-me", |s: Socket, _ev: Event| async move { s.disconnect(false) });
    let addr = e.listen().await.unwrap();
    (e, format!("http://{addr}"))
}

fn config(url: &str, auth: Option<Value>) -> ClientConfig {
    let mut c = ClientConfig::new(url);
    c.auth = auth;
    c.connect_timeout = STEP;
    c
}

async fn state_becomes(client: &Client, want: impl Fn(&ClientState) -> bool) -> ClientState {
    let mut rx = client.watch_state();
    tokio::time::timeout(STEP, async {
        loop {
            let s = rx.borrow_and_update().clone();
            if want(&s) {
                return s;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    })
    .await
    .expect("state change in time")
}

#[tokio::test]
async fn connects_emits_and_gets_acks_with_binary() {
    let (server, url) = server().await;
    let client = Client::connect(config(&url, Some(json!({"token": "alice"})))).await.unwrap();
    assert!(matches!(client.state(), ClientState::Connected { ref sid } if sid.len() == 20));

    let mut args = Payload::json(vec![json!("a"), json!({"n": 1})]);
    args.push_binary(Bytes::from_static(b"\x00\xff"));
    let reply = client.emit_with_ack("echo", args.clone(), None).await.unwrap();
    assert_eq!(reply, args);

    let got: Arc<Mutex<Vec<Payload>>> = Arc::default();
    let sink = got.clone();
    client.on("poked", move |_e: &str, p: Payload| sink.lock().unwrap().push(p));
    client.emit("poke-me", Payload::default()).unwrap();
    tokio::time::timeout(STEP, async {
        while got.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server's event in time");
    assert_eq!(got.lock().unwrap()[0].data, vec![json!("alice")]);

    // A server-side ack request is answered (with no arguments).
    let answered = client.emit_with_ack("ask-me", Payload::default(), None).await.unwrap();
    assert_eq!(answered.data, vec![json!(true)]);

    client.disconnect();
    assert_eq!(client.state(), ClientState::Disconnected { reason: "io client disconnect".into() });
    assert_eq!(client.emit("echo", Payload::default()), Err(ClientError::Disconnected));
    server.close().await;
}

#[tokio::test]
async fn refusals_timeouts_and_server_disconnects_are_reported() {
    let (server, url) = server().await;
    match Client::connect(config(&url, Some(json!({"token": "bad"})))).await {
        Err(ClientError::Refused { message, data }) => {
            assert_eq!(message, "unauthorized");
            assert_eq!(data, Some(json!({"why": "bad token"})));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let client = Client::connect(config(&url, None)).await.unwrap();
    let silent = client.emit_with_ack("nobody-answers", Payload::default(), Some(Duration::from_millis(100))).await;
    assert_eq!(silent, Err(ClientError::Timeout));
    client.emit("kick-me", Payload::default()).unwrap();
    let s = state_becomes(&client, |s| matches!(s, ClientState::Disconnected { .. })).await;
    assert_eq!(s, ClientState::Disconnected { reason: "io server disconnect".into() });

    let other = Client::connect(config(&url, None)).await.unwrap();
    server.close().await;
    let s = state_becomes(&other, |s| matches!(s, ClientState::Disconnected { .. })).await;
    assert!(matches!(s, ClientState::Disconnected { .. }), "{s:?}");
}

#[tokio::test]
async fn bad_urls_and_closed_ports_fail_cleanly() {
    assert!(matches!(Client::connect(config("ftp://x", None)).await, Err(ClientError::InvalidUrl(_))));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let r = Client::connect(config(&format!("http://127.0.0.1:{port}"), None)).await;
    assert!(matches!(r, Err(ClientError::Connect(_))), "{r:?}");
}
