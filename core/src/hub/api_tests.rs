//! The handler API: arguments in and out (`IntoPayload`, `Event::arg`),
//! `Event::reply`, `Socket::timeout`, what emits return, and handlers that
//! panic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::tests::{Client, settle};
use super::*;
use crate::engine::{Engine, SendError};
use crate::protocol::engine::Encoded;

fn setup() -> (Hub, Engine) {
    let hub = Hub::default();
    let engine = hub.engine(crate::engine::EngineConfig::default());
    (hub, engine)
}

/// A value serde cannot write as JSON (its keys are not strings).
fn unserializable() -> BTreeMap<Vec<u8>, u8> {
    [(vec![1], 1)].into()
}

const INTERNAL_ERROR: &str = r#"{"status":"error","code":"internal_error","message":"internal server error"}"#;

#[tokio::test]
async fn emit_takes_unit_values_tuples_and_payloads() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let s = hub.of("/").socket(&id).unwrap();

    s.emit("none", ()).unwrap();
    s.emit("one", json!({"k": [1, 2]})).unwrap();
    s.emit("str", "hi").unwrap();
    s.emit("null", Value::Null).unwrap();
    s.emit("two", ("a", 2)).unwrap();
    s.emit("vec", vec![1, 2]).unwrap();
    s.emit("payload", Payload::json(vec![json!(1), json!(2)])).unwrap();
    s.emit_volatile("volatile", (true,)).unwrap();
    assert_eq!(
        a.recv(),
        vec![
            r#"2["none"]"#,
            r#"2["one",{"k":[1,2]}]"#,
            r#"2["str","hi"]"#,
            r#"2["null",null]"#,
            r#"2["two","a",2]"#,
            r#"2["vec",[1,2]]"#,
            r#"2["payload",1,2]"#,
            r#"2["volatile",true]"#,
        ]
    );

    // Broadcasts: the same arguments, and the count of sockets reached.
    assert_eq!(hub.emit("all", ("x", 1)), 1);
    assert_eq!(hub.of("/").emit("ns", ()), 1);
    assert_eq!(hub.to(id.as_str()).emit("room", 7), 1);
    assert_eq!(a.recv(), vec![r#"2["all","x",1]"#, r#"2["ns"]"#, r#"2["room",7]"#]);
}

#[tokio::test]
async fn a_bytes_argument_goes_out_as_an_attachment() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let s = hub.of("/").socket(&id).unwrap();
    s.emit("file", ("a.png", Bytes::from_static(b"\x89PNG"))).unwrap();
    assert_eq!(
        a.session.drain(),
        vec![
            Encoded::Text(r#"451-["file","a.png",{"_placeholder":true,"num":0}]"#.into()),
            Encoded::Binary(Bytes::from_static(b"\x89PNG")),
        ]
    );
}

#[tokio::test]
async fn unserializable_arguments_are_an_error_and_send_nothing() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let s = hub.of("/").socket(&id).unwrap();
    assert!(matches!(s.emit("bad", unserializable()), Err(EmitError::Encode(_))));
    assert!(matches!(s.emit_with_ack("bad", unserializable()).await, Err(AckError::Encode(_))));
    assert_eq!(hub.emit("bad", unserializable()), 0, "logged, reaches nobody");
    assert!(matches!(hub.broadcast().emit_with_ack("bad", unserializable()).await, Err(BroadcastError::Encode(_))));
    assert!(a.recv().is_empty());
    assert_eq!(s.pending_acks(), 0);
}

#[tokio::test]
async fn emit_to_a_closed_socket_is_a_send_error() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let s = hub.of("/").socket(&id).unwrap();
    a.send("1");
    settle().await;
    assert_eq!(s.emit("late", ()), Err(EmitError::Send(SendError::Closed)));
    assert_eq!(s.emit("late", ()).unwrap_err().to_string(), "session closed");
}

#[tokio::test]
async fn handlers_read_typed_arguments_and_reply() {
    let (hub, engine) = setup();
    hub.of("/").on("add", |_s: Socket, mut e: Event| async move {
        let answer = match e.args_as::<(i64, i64)>() {
            Ok((x, y)) => json!(x + y),
            Err(err) => {
                let _ = e.reply(EventRejection::from(err));
                return;
            }
        };
        assert_eq!(e.reply(answer), Ok(()));
        assert_eq!(e.reply("again"), Ok(()), "a second reply does nothing");
        assert!(e.ack.is_none(), "the ack is used up");
    });
    hub.of("/").on("greet", |_s: Socket, mut e: Event| async move {
        let name = e.arg::<&str>(0).unwrap_or("stranger").to_owned();
        let polite = e.arg::<Option<bool>>(1) == Ok(Some(true));
        let _ = e.reply((format!("hello {name}"), polite));
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"21["add",2,3]"#);
    a.send(r#"22["add",2]"#);
    a.send(r#"23["add",2,"x"]"#);
    a.send(r#"2["add",1,1]"#); // no ack asked: reply does nothing
    a.send(r#"24["greet","ada",true]"#);
    a.send(r#"25["greet"]"#);
    settle().await;
    assert_eq!(
        a.recv(),
        vec![
            "31[5]",
            r#"32[{"status":"error","code":"invalid_payload","message":"argument 1 is missing"}]"#,
            r#"33[{"status":"error","code":"invalid_payload","message":"argument 1 is invalid: invalid type: string \"x\", expected i64"}]"#,
            r#"34["hello ada",true]"#,
            r#"35["hello stranger",false]"#,
        ]
    );
}

#[tokio::test]
async fn a_binary_argument_reads_as_bytes_and_answers_as_binary() {
    let (hub, engine) = setup();
    hub.of("/").on("upload", |_s: Socket, mut e: Event| async move {
        let (name, data): (String, Bytes) = e.args_as().unwrap();
        let _ = e.reply((name.len(), data));
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"51-7["upload","x.bin",{"_placeholder":true,"num":0}]"#);
    a.session.receive(crate::protocol::engine::Packet::Message(crate::protocol::engine::Frame::Binary(
        Bytes::from_static(b"\x00\x01"),
    )));
    settle().await;
    assert_eq!(
        a.session.drain(),
        vec![
            Encoded::Text(r#"461-7[5,{"_placeholder":true,"num":0}]"#.into()),
            Encoded::Binary(Bytes::from_static(b"\x00\x01")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn socket_timeout_sets_the_ack_deadline() {
    let hub = Hub::new(HubConfig::default().ack_timeout(Duration::from_secs(30)));
    let engine = hub.engine(crate::engine::EngineConfig::default());
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let socket = hub.of("/").socket(&id).unwrap();

    let s = socket.clone();
    let short = tokio::spawn(async move { s.timeout(Duration::from_secs(1)).emit_with_ack("q", ()).await });
    let s = socket.clone();
    let default = tokio::spawn(async move { s.emit_with_ack("q", "?").await });
    settle().await;
    assert_eq!(a.recv().len(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(short.await.unwrap(), Err(AckError::Timeout));
    assert!(!default.is_finished(), "the hub's 30 s still run");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(default.await.unwrap(), Err(AckError::Timeout));

    let s = socket.clone();
    let answered = tokio::spawn(async move { s.timeout(Duration::from_secs(5)).emit_with_ack("name?", ()).await });
    settle().await;
    let sent = a.recv();
    let ack_id: String = sent[0][1..].chars().take_while(char::is_ascii_digit).collect();
    a.send(&format!(r#"3{ack_id}["ada"]"#));
    let answer = answered.await.unwrap().unwrap();
    assert_eq!(answer.arg::<&str>(0), Ok("ada"));
}

#[tokio::test]
async fn remote_socket_emit_follows_the_single_socket_convention() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    a.connect("/", None).await;
    let fetched = hub.broadcast().fetch_sockets().await.into_value();
    assert_eq!(fetched[0].emit("hi", ("there",)), Ok(()));
    assert_eq!(a.recv(), vec![r#"2["hi","there"]"#]);
}

/// A handler that indexes its arguments, as the README once did.
async fn careless_join(socket: Socket, mut event: Event) {
    let room = event.args.data[0].as_str().unwrap_or_default().to_owned();
    let _ = socket.join(format!("room:{room}"));
    let _ = event.reply(json!({ "status": "ok" }));
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_error_and_the_connection_carries_on() {
    let (hub, engine) = setup();
    hub.of("/").on("chat:join", careless_join);
    let (a, b) = (Client::open(&engine), Client::open(&engine));
    let ida = a.connect("/", None).await;
    b.connect("/", None).await;

    // `42["chat:join"]`: the handler panics in its first poll, inside the
    // transport's read path.
    a.send(r#"21["chat:join"]"#);
    a.send(r#"2["chat:join"]"#); // no ack: only logged
    settle().await;
    assert_eq!(a.recv(), vec![format!("31[{INTERNAL_ERROR}]")]);
    let sa = hub.of("/").socket(&ida).unwrap();
    assert_eq!(sa.acks_in_flight(), 0, "the panicked handler's ack is released");
    assert!(sa.connected() && !a.session.is_closed());

    // The same connection keeps working, and so does everyone else's.
    a.send(r#"22["chat:join","lobby"]"#);
    b.send(r#"23["chat:join","lobby"]"#);
    settle().await;
    assert_eq!(a.recv(), vec![r#"32[{"status":"ok"}]"#]);
    assert_eq!(b.recv(), vec![r#"33[{"status":"ok"}]"#]);
    assert!(sa.in_room("room:lobby"));

    // A retry of the panicked event gets the same answer, without a rerun.
    a.send(r#"21["chat:join"]"#);
    settle().await;
    assert_eq!(a.recv(), vec![format!("31[{INTERNAL_ERROR}]")]);
}

#[tokio::test]
async fn a_panic_after_an_await_is_caught_too() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    ns.on("later", |_s: Socket, _e: Event| async move {
        tokio::task::yield_now().await;
        panic!("after an await");
    });
    // Answered before the panic: no second answer.
    ns.on("answered", |_s: Socket, mut e: Event| async move {
        let _ = e.reply("done");
        tokio::task::yield_now().await;
        panic!("after the answer");
    });
    // The ack handed to another task: that task answers, not the dispatcher.
    ns.on("handed", |_s: Socket, e: Event| async move {
        let ack = e.ack;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if let Some(ack) = ack {
                let _ = ack.send("from the task");
            }
        });
        panic!("after handing the ack over");
    });
    // A middleware that panics: its event's ack is answered as well.
    ns.use_event_middleware(|_s: Socket, e: Event| async move {
        assert!(e.name != "poison", "middleware panics");
        Ok(e)
    });
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    a.send(r#"21["later"]"#);
    a.send(r#"22["answered"]"#);
    a.send(r#"23["handed"]"#);
    a.send(r#"24["poison"]"#);
    // Four answers, however long a loaded machine takes to run the task
    // that answers `handed` (a fixed sleep lost that race under load).
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.len() < 4 && tokio::time::Instant::now() < deadline {
        settle().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        got.extend(a.recv());
    }
    // Nothing more comes: no event is answered twice.
    tokio::time::sleep(Duration::from_millis(20)).await;
    got.extend(a.recv());
    got.sort();
    let mut want = vec![
        format!("31[{INTERNAL_ERROR}]"),
        r#"32["done"]"#.to_owned(),
        r#"33["from the task"]"#.to_owned(),
        format!("34[{INTERNAL_ERROR}]"),
    ];
    want.sort();
    assert_eq!(got, want);
    let s = hub.of("/").socket(&id).unwrap();
    assert_eq!(s.acks_in_flight(), 0);
    assert!(s.connected());
}

#[tokio::test]
async fn panicking_connect_and_disconnect_handlers_are_contained() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    let disconnects = Arc::new(AtomicUsize::new(0));
    ns.on_connect(|_s: Socket| async move { panic!("connect handler") });
    let d = disconnects.clone();
    ns.on_disconnect(move |_s: Socket, _r: DisconnectReason| {
        d.fetch_add(1, Ordering::SeqCst);
        async move { panic!("disconnect handler") }
    });
    ns.on("ping", |_s: Socket, mut e: Event| async move {
        let _ = e.reply("pong");
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"21["ping"]"#);
    settle().await;
    assert_eq!(a.recv(), vec![r#"31["pong"]"#], "the socket works after its connect handler panicked");
    a.send("1");
    settle().await;
    assert_eq!(disconnects.load(Ordering::SeqCst), 1);
    let b = Client::open(&engine);
    b.connect("/", None).await;
    assert_eq!(ns.socket_count(), 1, "the server goes on");
}

#[tokio::test]
async fn an_unserializable_reply_answers_internal_error() {
    let (hub, engine) = setup();
    let result = Arc::new(std::sync::Mutex::new(None));
    let r = result.clone();
    hub.of("/").on("bad", move |_s: Socket, mut e: Event| {
        let r = r.clone();
        async move {
            *r.lock().unwrap() = Some(e.reply(unserializable()));
        }
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"21["bad"]"#);
    settle().await;
    assert_eq!(a.recv(), vec![format!("31[{INTERNAL_ERROR}]")], "the client is not left waiting");
    assert!(matches!(result.lock().unwrap().take(), Some(Err(EmitError::Encode(_)))));
}
