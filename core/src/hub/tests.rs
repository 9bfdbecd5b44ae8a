//! Hub behaviour without sockets: each fake client is an Engine.IO session
//! fed packets directly; what the server queues for it is read back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::engine::{Engine, RequestInfo, Session, TransportKind};
use crate::protocol::engine::{Encoded, Frame, Packet as EnginePacket};

pub(crate) fn request() -> RequestInfo {
    RequestInfo {
        headers: http::HeaderMap::new(),
        query: vec![("q".into(), "1".into())],
        uri: http::Uri::from_static("/socket.io/?EIO=4&transport=websocket&q=1"),
        remote_addr: ([127, 0, 0, 1], 4000).into(),
        time: std::time::SystemTime::now(),
        secure: false,
    }
}

pub(crate) struct Client {
    pub(crate) session: Session,
}

impl Client {
    pub(crate) fn open(engine: &Engine) -> Client {
        Client { session: engine.open_session(&request(), TransportKind::WebSocket) }
    }

    pub(crate) fn send(&self, text: &str) {
        self.session.receive(EnginePacket::Message(Frame::Text(text.into())));
    }

    /// Everything queued for the client, as text packets without the `4`.
    pub(crate) fn recv(&self) -> Vec<String> {
        self.session
            .drain()
            .into_iter()
            .filter_map(|e| match e {
                Encoded::Text(t) => t.strip_prefix('4').map(str::to_owned),
                Encoded::Binary(_) => None,
            })
            .collect()
    }

    /// CONNECTs to `nsp` (with `auth`) and returns the socket id.
    pub(crate) async fn connect(&self, nsp: &str, auth: Option<Value>) -> String {
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("0{prefix}{auth}"));
        settle().await;
        let out = self.recv();
        let reply = out
            .iter()
            .find(|p| p.starts_with(&format!("0{prefix}")))
            .unwrap_or_else(|| panic!("no CONNECT reply in {out:?}"));
        let body: Value = serde_json::from_str(&reply[1 + prefix.len()..]).unwrap();
        body["sid"].as_str().unwrap_or_else(|| panic!("refused: {reply}")).to_owned()
    }
}

/// Lets spawned handler tasks run.
pub(crate) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

pub(crate) fn setup() -> (Hub, Engine) {
    let hub = Hub::default();
    let engine = hub.engine(crate::engine::EngineConfig::default());
    (hub, engine)
}

pub(crate) fn args(v: Value) -> Payload {
    let Value::Array(items) = v else { panic!("args must be an array") };
    Payload::json(items)
}

#[tokio::test]
async fn rooms_broadcasts_and_exclusions() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    let (a, b, c) = (Client::open(&engine), Client::open(&engine), Client::open(&engine));
    let ida = a.connect("/", None).await;
    let idb = b.connect("/", None).await;
    let idc = c.connect("/", None).await;
    let sa = ns.socket(&ida).unwrap();
    let sb = ns.socket(&idb).unwrap();
    sa.join("red").unwrap();
    sb.join_many(["red", "blue"]).unwrap();
    ns.socket(&idc).unwrap().join("blue").unwrap();
    assert_eq!(sb.rooms().len(), 3, "own id, red, blue");
    assert!(sb.in_room("blue") && !sa.in_room("blue"));

    assert_eq!(hub.to("red").emit("m", args(json!([1]))), 2);
    assert_eq!(a.recv(), vec![r#"2["m",1]"#]);
    assert_eq!(b.recv(), vec![r#"2["m",1]"#]);
    assert!(c.recv().is_empty());

    // Union without duplicates; except; a socket's broadcast skips itself.
    assert_eq!(hub.to("red").to("blue").emit("u", args(json!([]))), 3);
    assert_eq!(b.recv().len(), 1, "b is in both rooms and gets one copy");
    a.recv();
    c.recv();
    assert_eq!(hub.to("red").except("blue").emit("x", args(json!([]))), 1);
    assert_eq!(a.recv().len(), 1);
    assert_eq!(sb.to("red").emit("s", args(json!([]))), 1, "only a: b is the sender");
    assert_eq!(sb.broadcast().emit("all", args(json!([]))), 2);
    assert_eq!(hub.emit("everyone", args(json!([]))), 3);
    assert_eq!(hub.to(idc.as_str()).emit("direct", args(json!(["hi"]))), 1, "a socket id is a room");
    assert!(c.recv().contains(&r#"2["direct","hi"]"#.to_owned()));

    sb.leave("red");
    assert_eq!(hub.to("red").emit("m", args(json!([]))), 1);
    assert_eq!(ns.room_count(), 5, "3 own rooms, red, blue");
}

#[tokio::test]
async fn user_rooms_reach_every_connection_of_a_user() {
    let (hub, engine) = setup();
    hub.of("/").use_middleware(|h: Arc<Handshake>| async move {
        Ok(Admission::user(h.auth["user"].as_str().unwrap_or("anon")).with_data(json!({"role": "member"})))
    });
    let (t1, t2, other) = (Client::open(&engine), Client::open(&engine), Client::open(&engine));
    let id1 = t1.connect("/", Some(json!({"user": "u1"}))).await;
    t2.connect("/", Some(json!({"user": "u1"}))).await;
    other.connect("/", Some(json!({"user": "u2"}))).await;
    assert_eq!(hub.to("user:u1").emit("dm", args(json!(["psst"]))), 2);
    assert_eq!(t1.recv(), vec![r#"2["dm","psst"]"#]);
    assert_eq!(t2.recv(), vec![r#"2["dm","psst"]"#]);
    assert!(other.recv().is_empty());
    let s1 = hub.of("/").socket(&id1).unwrap();
    assert_eq!(s1.user_id(), Some("u1"));
    assert_eq!(s1.data(), json!({"role": "member"}));

    let fetched = hub.to("user:u1").fetch_sockets().await.into_value();
    assert_eq!(fetched.len(), 2);
    assert!(fetched.iter().all(|s| s.rooms.contains(&"user:u1".to_owned()) && s.data["role"] == "member"));
    assert_eq!(fetched[0].handshake.query.get("q"), Some("1"));

    hub.to("user:u1").sockets_join(["vip"]);
    assert_eq!(hub.to("vip").emit("v", args(json!([]))), 2);
    hub.to("user:u1").sockets_leave("vip");
    assert_eq!(hub.to("vip").emit("v", args(json!([]))), 0);
    hub.to("user:u1").disconnect_sockets(false);
    assert_eq!(hub.of("/").socket_count(), 1);
    assert!(t1.recv().contains(&"1".to_owned()), "DISCONNECT packet sent");
    assert!(!t1.session.is_closed(), "without close the connection stays");
}

#[tokio::test(start_paused = true)]
async fn broadcast_ack_collects_answers_and_reports_silent_recipients() {
    let (hub, engine) = setup();
    let (a, b, c) = (Client::open(&engine), Client::open(&engine), Client::open(&engine));
    let ida = a.connect("/", None).await;
    let idb = b.connect("/", None).await;
    let idc = c.connect("/", None).await;
    let op = hub.broadcast().timeout(Duration::from_secs(5));
    let task = tokio::spawn(async move { op.emit_with_ack("poll", args(json!(["?"]))).await });
    settle().await;
    let sent = a.recv();
    assert_eq!(sent.len(), 1);
    let id: String = sent[0][1..].chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(b.recv(), sent, "one encoding, one ack id for every recipient");
    assert_eq!(c.recv(), sent);
    a.send(&format!("3{id}[\"yes\"]"));
    c.send("1"); // c leaves without answering
    settle().await;
    tokio::time::advance(Duration::from_secs(6)).await;
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.responses, vec![(ida, Payload::json(vec![json!("yes")]))]);
    assert_eq!(report.timed_out, vec![idb.clone()]);
    assert_eq!(report.disconnected, vec![idc]);
    assert_eq!(hub.of("/").socket(&idb).unwrap().pending_acks(), 0, "timed-out entries are removed");
}

#[tokio::test(start_paused = true)]
async fn emit_with_ack_times_out_and_resolves() {
    let (hub, engine) = setup();
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    let socket = hub.of("/").socket(&id).unwrap();
    let s = socket.clone();
    let pending =
        tokio::spawn(async move { s.timeout(Duration::from_secs(2)).emit_with_ack("q", args(json!([]))).await });
    settle().await;
    assert_eq!(socket.pending_acks(), 1);
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(pending.await.unwrap(), Err(AckError::Timeout));
    assert_eq!(socket.pending_acks(), 0);
    a.recv();

    let s = socket.clone();
    let answered = tokio::spawn(async move { s.emit_with_ack("q", args(json!([]))).await });
    settle().await;
    let sent = a.recv();
    let ack_id: String = sent[0][1..].chars().take_while(char::is_ascii_digit).collect();
    a.send(&format!("3{ack_id}[42]"));
    assert_eq!(answered.await.unwrap(), Ok(Payload::json(vec![json!(42)])));
}

#[tokio::test]
async fn retried_ack_ids_are_not_processed_twice() {
    let (hub, engine) = setup();
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    hub.of("/").on("count", move |_s: Socket, e: Event| {
        let n = n.clone();
        async move {
            let v = n.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(ack) = e.ack {
                let _ = ack.send(Payload::json(vec![json!(v)]));
            }
        }
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"27["count"]"#);
    a.send(r#"27["count"]"#);
    a.send(r#"28["count"]"#);
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(a.recv(), vec!["37[1]", "37[1]", "38[2]"], "the retry gets the same answer");
}

#[tokio::test]
async fn event_middleware_can_refuse_with_an_ack_error_or_rewrite() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    ns.use_event_middleware(|_s: Socket, mut e: Event| async move {
        if e.name == "secret" {
            return Err(EventRejection::new("forbidden", "not for you"));
        }
        e.args.data.push(json!("checked"));
        Ok(e)
    });
    ns.on("echo", |_s: Socket, e: Event| async move {
        if let Some(ack) = e.ack {
            let _ = ack.send(e.args);
        }
    });
    let reached = Arc::new(AtomicUsize::new(0));
    let r = reached.clone();
    ns.on("secret", move |_s: Socket, _e: Event| {
        r.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"21["secret",1]"#);
    a.send(r#"22["echo",1]"#);
    settle().await;
    assert_eq!(
        a.recv(),
        vec![r#"31[{"status":"error","code":"forbidden","message":"not for you"}]"#, r#"32[1,"checked"]"#]
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn any_listeners_see_incoming_and_outgoing_events() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (i, o) = (seen.clone(), seen.clone());
    ns.on_any(move |_s: &Socket, event: &str, _a: &Payload| i.lock().unwrap().push(format!("in:{event}")));
    ns.on_any_outgoing(move |_s: &Socket, event: &str, _a: &Payload| o.lock().unwrap().push(format!("out:{event}")));
    ns.on_fallback(|s: Socket, e: Event| async move {
        let _ = s.emit("unknown", Payload::json(vec![json!(e.name)]));
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send(r#"2["whatever"]"#);
    hub.emit("news", Payload::default());
    settle().await;
    assert_eq!(*seen.lock().unwrap(), ["in:whatever", "out:unknown", "out:news"]);
    assert_eq!(a.recv(), vec![r#"2["unknown","whatever"]"#, r#"2["news"]"#]);
}

#[tokio::test]
async fn room_changes_disconnecting_and_cleanup() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = changes.clone();
    ns.on_room_change(move |_nsp: &str, change: &RoomChange| {
        let line = match change {
            RoomChange::Created(r) => format!("+{r}"),
            RoomChange::Deleted(r) => format!("-{r}"),
            RoomChange::Joined { room, .. } => format!("join {room}"),
            RoomChange::Left { room, .. } => format!("leave {room}"),
        };
        if !line.contains(' ') || line.contains("lobby") {
            c.lock().unwrap().push(line);
        }
    });
    let rooms_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = rooms_seen.clone();
    ns.on_disconnecting(move |s: Socket, reason: DisconnectReason| {
        r.lock().unwrap().push((s.rooms().len(), reason));
        async {}
    });
    let after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let d = after.clone();
    ns.on_disconnect(move |s: Socket, reason: DisconnectReason| {
        d.lock().unwrap().push((s.rooms().len(), reason));
        async {}
    });
    let a = Client::open(&engine);
    let id = a.connect("/", None).await;
    ns.socket(&id).unwrap().join("lobby").unwrap();
    a.send("1");
    settle().await;
    assert_eq!(*rooms_seen.lock().unwrap(), [(2, DisconnectReason::ClientNamespaceDisconnect)]);
    assert_eq!(*after.lock().unwrap(), [(0, DisconnectReason::ClientNamespaceDisconnect)]);
    let changes = changes.lock().unwrap();
    assert!(changes.contains(&"+lobby".to_owned()) && changes.contains(&"-lobby".to_owned()), "{changes:?}");
    assert!(changes.contains(&"join lobby".to_owned()) && changes.contains(&"leave lobby".to_owned()));
    assert_eq!((ns.socket_count(), ns.room_count()), (0, 0));
    assert!(!a.session.is_closed(), "leaving the last namespace keeps the session");
}

#[tokio::test]
async fn dynamic_namespaces_make_children_with_their_handlers_and_children_vanish_when_empty() {
    let (hub, engine) = setup();
    let parent = hub.dynamic(regex::Regex::new(r"^/team-\d+$").unwrap());
    parent.on("where", |s: Socket, e: Event| async move {
        if let Some(ack) = e.ack {
            let _ = ack.send(Payload::json(vec![json!(s.namespace())]));
        }
    });
    let a = Client::open(&engine);
    a.connect("/team-7", None).await;
    assert!(hub.namespace("/team-7").is_some());
    a.send(r#"2/team-7,1["where"]"#);
    settle().await;
    assert_eq!(a.recv(), vec![r#"3/team-7,1["/team-7"]"#]);
    a.send("0/team-x,");
    settle().await;
    assert_eq!(a.recv(), vec![r#"4/team-x,{"message":"Invalid namespace"}"#]);
    a.send("1/team-7,");
    settle().await;
    assert!(hub.namespace("/team-7").is_none(), "empty child removed");
    a.connect("/team-7", None).await;
    assert_eq!(hub.of("/team-7").socket_count(), 1, "recreated on demand");
    // A `#` would let a dynamic name share cluster channels with another
    // namespace's rooms: refused, even where the pattern matches.
    let any = hub.dynamic(regex::Regex::new(r"^/any.*$").unwrap());
    any.on_connect(|_s: Socket| async {});
    a.send("0/any#room,");
    settle().await;
    assert_eq!(a.recv(), vec![r#"4/any#room,{"message":"Invalid namespace"}"#]);
    assert!(hub.namespace("/any#room").is_none());
}

#[tokio::test]
async fn a_panicking_connect_middleware_refuses_with_an_error_and_the_hub_carries_on() {
    let (hub, engine) = setup();
    hub.of("/admin").use_middleware(|h: Arc<Handshake>| async move {
        let token = h.auth["token"].as_str().expect("a token");
        Ok::<_, ConnectError>(Admission::user(token.to_owned()))
    });
    let a = Client::open(&engine);
    a.send("0/admin,{}");
    settle().await;
    assert_eq!(a.recv(), vec![r#"4/admin,{"message":"internal server error","data":{"code":"internal_error"}}"#]);
    assert_eq!(hub.of("/admin").socket_count(), 0);
    // The same connection joins another namespace, and the middleware serves
    // the next client that sends what it expects.
    a.connect("/", None).await;
    let b = Client::open(&engine);
    b.connect("/admin", Some(json!({ "token": "root" }))).await;
    assert_eq!(hub.of("/admin").socket_count(), 1);
}

#[tokio::test]
async fn a_child_starts_with_a_copy_of_its_parents_handlers_as_in_socket_io() {
    let (hub, engine) = setup();
    let parent = hub.dynamic(regex::Regex::new(r"^/t-\d+$").unwrap());
    assert_eq!(parent.name(), "/_0");
    assert!(hub.dynamic_parent("/_0").is_some_and(|p| p.same(&parent)));
    let reply = |word: &'static str| {
        move |_s: Socket, e: Event| async move {
            if let Some(ack) = e.ack {
                let _ = ack.send(Payload::json(vec![json!(word)]));
            }
        }
    };
    parent.on("x", reply("parent"));
    let made = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = made.clone();
    parent.on_new_child(move |child: &Namespace| seen.lock().unwrap().push(child.name().to_owned()));
    let a = Client::open(&engine);
    a.connect("/t-1", None).await;
    let one = hub.namespace("/t-1").unwrap();
    assert_eq!(one.parent_name(), Some("/_0"));
    assert_eq!(*made.lock().unwrap(), ["/t-1"]);
    // The child's own handler replaces its copy only; the parent's later
    // one reaches only the children made after it.
    one.on("x", reply("child"));
    parent.on("y", reply("late"));
    a.connect("/t-2", None).await;
    for (packet, answer) in [
        (r#"2/t-1,1["x"]"#, r#"3/t-1,1["child"]"#),
        (r#"2/t-2,2["x"]"#, r#"3/t-2,2["parent"]"#),
        (r#"2/t-2,3["y"]"#, r#"3/t-2,3["late"]"#),
    ] {
        a.send(packet);
        settle().await;
        assert_eq!(a.recv(), vec![answer.to_owned()]);
    }
    a.send(r#"2/t-1,4["y"]"#);
    settle().await;
    assert!(a.recv().is_empty(), "/t-1 was made before y");
    let mut children: Vec<String> = hub.children(&parent).iter().map(|n| n.name().to_owned()).collect();
    children.sort();
    assert_eq!(children, ["/t-1", "/t-2"]);
    assert!(hub.namespace("/_0").is_none(), "a parent is no namespace to join");
}

#[tokio::test(start_paused = true)]
async fn an_asynchronous_matcher_decides_later_in_order_and_one_that_never_answers_times_out() {
    // A deadline inside the heartbeat (which this test's clients do not answer).
    let hub = Hub::new(HubConfig::default().connect_timeout(Duration::from_secs(5)));
    let engine = hub.engine(crate::engine::EngineConfig::default());
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    hub.dynamic_async(move |name: &str, auth: &Value| {
        count.fetch_add(1, Ordering::SeqCst);
        let yes = name.starts_with("/slow-") && auth["ok"] == json!(true);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            yes
        }
    });
    let fallback = hub.dynamic(regex::Regex::new(r"^/slow-").unwrap());
    fallback.on_connect(|s: Socket| async move {
        let _ = s.emit("made-by", "fallback");
    });
    hub.dynamic_async(|_name: &str, _auth: &Value| std::future::pending::<bool>());
    let a = Client::open(&engine);
    a.send(r#"0/slow-1,{"ok":true}"#);
    settle().await;
    assert!(a.recv().is_empty(), "the CONNECT waits for the answer");
    tokio::time::sleep(Duration::from_millis(60)).await;
    settle().await;
    let out = a.recv();
    assert!(out.len() == 1 && out[0].starts_with("0/slow-1,{\"sid\""), "{out:?}");
    assert!(hub.namespace("/slow-1").is_some_and(|n| n.parent_name() == Some("/_0")));
    // Refused by the first, accepted by the next in order.
    a.send(r#"0/slow-2,{"ok":false}"#);
    tokio::time::sleep(Duration::from_millis(60)).await;
    settle().await;
    let out = a.recv();
    assert!(out[0].starts_with("0/slow-2,"), "{out:?}");
    assert_eq!(out[1], r#"2/slow-2,["made-by","fallback"]"#);
    // An existing child is not asked about again.
    let before = asked.load(Ordering::SeqCst);
    let b = Client::open(&engine);
    b.send("0/slow-1,");
    settle().await;
    assert!(b.recv()[0].starts_with("0/slow-1,{"));
    assert_eq!(asked.load(Ordering::SeqCst), before);
    // Nobody accepts; the last matcher never answers: refused at the
    // connect deadline, and a second CONNECT meanwhile is a protocol error.
    a.send("0/other,");
    tokio::time::sleep(Duration::from_millis(100)).await;
    settle().await;
    assert!(a.recv().is_empty());
    tokio::time::sleep(hub.config().connect_timeout).await;
    settle().await;
    assert_eq!(a.recv(), vec![r#"4/other,{"message":"Invalid namespace"}"#]);
    assert!(!a.session.is_closed());
    b.send("0/other,");
    settle().await;
    b.send("0/other,");
    settle().await;
    assert!(b.session.is_draining(), "a second CONNECT while the first waits closes the connection");
}

#[tokio::test]
async fn connect_refusal_carries_message_and_data() {
    let (hub, engine) = setup();
    hub.of("/").use_middleware(|_h: Arc<Handshake>| async move {
        Err::<Admission, _>(ConnectError::new("expired").with_data(json!({"retry": false})))
    });
    let a = Client::open(&engine);
    a.send("0");
    settle().await;
    assert_eq!(a.recv(), vec![r#"4{"message":"expired","data":{"retry":false}}"#]);
    assert_eq!(hub.of("/").socket_count(), 0);
}

#[tokio::test]
async fn ten_thousand_cycles_leave_every_index_empty() {
    let (hub, engine) = setup();
    let ns = hub.of("/");
    ns.use_middleware(|_h: Arc<Handshake>| async move { Ok(Admission::user("u")) });
    for i in 0..10_000 {
        let c = Client::open(&engine);
        let id = c.connect("/", None).await;
        let s = ns.socket(&id).unwrap();
        s.join(format!("room-{}", i % 7)).unwrap();
        let s2 = s.clone();
        // An ack left pending when the client goes away.
        let pending = tokio::spawn(async move { s2.emit_with_ack("q", Payload::default()).await });
        settle().await;
        s.leave(&format!("room-{}", i % 7));
        s.join("stay").unwrap();
        if i % 2 == 0 {
            c.send("1")
        } else {
            c.session.close(crate::engine::CloseReason::TransportClose)
        }
        c.session.close(crate::engine::CloseReason::TransportClose);
        assert_eq!(pending.await.unwrap(), Err(AckError::Disconnected));
    }
    assert_eq!(ns.socket_count(), 0);
    assert_eq!(ns.room_count(), 0);
    assert_eq!(engine.session_count(), 0);
}

#[test]
fn fields_keep_pairs_in_order_and_serialize_as_an_object() {
    use super::Fields;
    let f = Fields::from_pairs([("host", "a"), ("x-empty", ""), ("cookie", "k=v; ü=1")]);
    assert_eq!(f.len(), 3);
    assert_eq!(f.get("x-empty"), Some(""));
    assert_eq!(f.get("cookie"), Some("k=v; ü=1"));
    assert_eq!(f.get("missing"), None);
    assert!(f.contains_key("host"));
    assert_eq!(f.iter().collect::<Vec<_>>(), vec![("host", "a"), ("x-empty", ""), ("cookie", "k=v; ü=1")]);
    assert_eq!(serde_json::to_value(&f).unwrap(), json!({"host": "a", "x-empty": "", "cookie": "k=v; ü=1"}));
    assert!(Fields::default().is_empty());
    assert_eq!(format!("{:?}", Fields::from_pairs([("a", "b")])), r#"{"a": "b"}"#);
}

/// A hub whose sockets are users named by `auth.user`.
pub(crate) fn users_hub(config: HubConfig) -> (Hub, Engine) {
    let hub = Hub::new(config);
    hub.of("/").use_middleware(|h: Arc<Handshake>| async move {
        let user = h.auth["user"].as_str().unwrap_or("anon").to_owned();
        Ok(Admission::user(user.clone()).with_presence(json!({ "name": user.to_uppercase() })))
    });
    let engine = hub.engine(crate::engine::EngineConfig::default());
    (hub, engine)
}

#[tokio::test]
async fn rate_limits_refuse_with_the_ack_shape_then_disconnect() {
    let rules = crate::limits::RateLimits::none()
        .event("chat", crate::limits::Rate::per(Duration::from_secs(3600), 2))
        .disconnect_after(3, Duration::from_secs(60));
    let (hub, engine) = users_hub(HubConfig::default().rate_limits(rules));
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    hub.of("/").on("chat", move |_s: Socket, _e: Event| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let a = Client::open(&engine);
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    for id in 1..=4 {
        a.send(&format!("2{id}[\"chat\",\"hi\"]"));
    }
    settle().await;
    assert_eq!(handled.load(Ordering::SeqCst), 2, "the burst of 2 passes, the rest never reaches the handler");
    let out = a.recv();
    assert_eq!(out.len(), 2, "{out:?}");
    for (packet, id) in out.iter().zip([3, 4]) {
        let body: Value = serde_json::from_str(packet.strip_prefix(&format!("3{id}")).unwrap()).unwrap();
        assert_eq!(body[0]["status"], "error");
        assert_eq!(body[0]["code"], "rate_limited");
        assert!(body[0]["retryAfterMs"].as_u64().unwrap() > 1_700_000, "{body}");
    }
    // The third violation disconnects: the notice, then DISCONNECT.
    a.send("2[\"chat\",\"again\"]");
    settle().await;
    let out = a.recv();
    assert_eq!(
        out,
        vec![
            r#"2["tidewire:disconnect",{"code":"rate_limited","message":"too many rate-limit violations"}]"#.to_owned(),
            "1".to_owned()
        ]
    );
    assert_eq!(hub.of("/").socket_count(), 0);
    assert_eq!(hub.stats().rate_limit_disconnects.load(Ordering::Relaxed), 1);
    assert_eq!(hub.stats().rate_limited.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_cut_answers_every_handled_event_then_notice_then_disconnect() {
    // 2 accepted, the 3rd violation cuts; the accepted events' handler
    // answers 50 ms later (a store write), after the cut was decided.
    let rules = crate::limits::RateLimits::none()
        .event("chat", crate::limits::Rate::per(Duration::from_secs(3600), 2))
        .disconnect_after(3, Duration::from_secs(60));
    let (hub, engine) = users_hub(HubConfig::default().rate_limits(rules));
    hub.of("/").on("chat", |_s: Socket, e: Event| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(ack) = e.ack {
            let _ = ack.send(args(json!([{ "status": "ok" }])));
        }
    });
    let a = Client::open(&engine);
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    for id in 1..=5 {
        a.send(&format!("2{id}[\"chat\",\"hi\"]"));
    }
    settle().await;
    // Refusals 3, 4, 5 went out at once; the cut waits for 1 and 2.
    let early = a.recv();
    assert_eq!(early.iter().map(|p| &p[..2]).collect::<Vec<_>>(), ["33", "34", "35"], "{early:?}");
    assert_eq!(hub.of("/").socket_count(), 1, "still connected while its answers are due");
    // An event arriving meanwhile is refused with an answer, not handled.
    a.send("26[\"chat\",\"late\"]");
    settle().await;
    let refused = a.recv();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let body: Value = serde_json::from_str(refused[0].strip_prefix("36").unwrap()).unwrap();
    assert_eq!(body[0]["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(60)).await;
    settle().await;
    let out = a.recv();
    assert_eq!(
        out,
        vec![
            r#"31[{"status":"ok"}]"#.to_owned(),
            r#"32[{"status":"ok"}]"#.to_owned(),
            r#"2["tidewire:disconnect",{"code":"rate_limited","message":"too many rate-limit violations"}]"#.to_owned(),
            "1".to_owned()
        ]
    );
    assert_eq!(hub.of("/").socket_count(), 0);
    // Packets of the burst still on their way are dropped, not taken for a
    // protocol error: the connection stays open and can join again.
    a.send("27[\"chat\",\"in flight\"]");
    a.send("399[\"late ack\"]");
    settle().await;
    assert!(!a.session.is_closed() && !a.session.is_draining());
    assert!(a.recv().is_empty());
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    assert_eq!(hub.of("/").socket_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_run_on_tokio_time() {
    // One event per hour: with tokio's clock paused, an hour passes at once.
    let rules = crate::limits::RateLimits::none().event("chat", crate::limits::Rate::per(Duration::from_secs(3600), 1));
    let (hub, engine) = users_hub(HubConfig::default().rate_limits(rules));
    hub.of("/").on("chat", |_s: Socket, e: Event| async move {
        if let Some(ack) = e.ack {
            let _ = ack.send(args(json!(["ok"])));
        }
    });
    let a = Client::open(&engine);
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    a.send("21[\"chat\"]");
    a.send("22[\"chat\"]");
    settle().await;
    let out = a.recv();
    assert_eq!(out[0], r#"31["ok"]"#);
    assert!(out[1].starts_with("32[{") && out[1].contains("rate_limited"), "{out:?}");
    tokio::time::advance(Duration::from_secs(3600)).await;
    a.send("23[\"chat\"]");
    settle().await;
    assert_eq!(a.recv(), vec![r#"33["ok"]"#.to_owned()], "allowed again an hour later");
}

#[tokio::test(start_paused = true)]
async fn a_cut_waits_for_answers_at_most_its_deadline() {
    let rules = crate::limits::RateLimits::none()
        .event("chat", crate::limits::Rate::per(Duration::from_secs(3600), 1))
        .disconnect_after(1, Duration::from_secs(60));
    let (hub, engine) = users_hub(HubConfig::default().rate_limits(rules));
    // A handler that keeps its answer forever.
    hub.of("/").on("chat", |_s: Socket, e: Event| async move {
        let _keep = e.ack;
        std::future::pending::<()>().await;
    });
    let a = Client::open(&engine);
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    a.send("21[\"chat\"]");
    a.send("22[\"chat\"]");
    settle().await;
    assert_eq!(a.recv().len(), 1, "the refusal of 2");
    tokio::time::sleep(socket::CUT_ACK_DEADLINE - Duration::from_millis(20)).await;
    assert_eq!(hub.of("/").socket_count(), 1);
    tokio::time::sleep(Duration::from_millis(40)).await;
    settle().await;
    assert_eq!(hub.of("/").socket_count(), 0);
    assert_eq!(a.recv().last().map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_protocol_error_still_delivers_what_was_queued() {
    let (hub, engine) = setup();
    hub.of("/").on("echo", |_s: Socket, e: Event| async move {
        if let Some(ack) = e.ack {
            let _ = ack.send(e.args);
        }
    });
    let a = Client::open(&engine);
    a.connect("/", None).await;
    a.send("21[\"echo\",\"x\"]");
    // An event to a namespace the client never joined closes the connection,
    // after the answer already queued.
    a.send("2/nowhere,[\"echo\"]");
    assert!(a.session.is_draining());
    assert_eq!(a.recv(), vec![r#"31["x"]"#.to_owned()]);
    assert!(a.session.finish_if_drained());
}

#[tokio::test]
async fn event_rules_check_size_and_schema_before_anything_else() {
    let (hub, engine) = users_hub(HubConfig::default());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let ns = hub.of("/");
    ns.on_any(move |_s: &Socket, _e: &str, _a: &Payload| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    ns.on("msg", |_s: Socket, e: Event| async move {
        if let Some(ack) = e.ack {
            let _ = ack.send(Payload::json(vec![json!("ok")]));
        }
    });
    let schema = crate::limits::JsonSchema::first_arg(&json!({ "type": "string", "maxLength": 5 })).unwrap();
    ns.limit_event("msg", crate::limits::EventRule::new().max_bytes(40).validator(schema));
    let a = Client::open(&engine);
    a.connect("/", Some(json!({ "user": "ann" }))).await;
    a.send(r#"21["msg","hello"]"#);
    a.send(r#"22["msg","too long"]"#);
    a.send(r#"23["msg",42]"#);
    a.send(&format!(r#"24["msg","{}"]"#, "x".repeat(40)));
    settle().await;
    let out = a.recv();
    assert_eq!(out[0], r#"31["ok"]"#);
    assert!(out[1].starts_with(r#"32[{"status":"error","code":"invalid_payload","message":"/0: "#), "{}", out[1]);
    assert!(out[2].starts_with(r#"33[{"status":"error","code":"invalid_payload""#), "{}", out[2]);
    assert_eq!(out[3], r#"34[{"status":"error","code":"payload_too_large","message":"event larger than 40 bytes"}]"#);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "listeners see accepted events only");
}

#[tokio::test]
async fn room_and_namespace_caps() {
    let (hub, engine) = users_hub(HubConfig::default().max_rooms_per_socket(3).max_namespaces_per_connection(1));
    hub.of("/other");
    let a = Client::open(&engine);
    let id = a.connect("/", Some(json!({ "user": "ann" }))).await;
    let socket = hub.of("/").socket(&id).unwrap();
    // Its own room and user:ann are two of the three.
    socket.join("r1").unwrap();
    assert_eq!(socket.join_many(["r2", "r3"]), Err(TooManyRooms { max: 3 }));
    assert!(!socket.in_room("r2"), "all or nothing");
    socket.join("r1").unwrap();
    a.send("0/other,");
    settle().await;
    assert_eq!(a.recv(), vec![r#"4/other,{"message":"Too many namespaces","data":{"code":"too_many_namespaces"}}"#]);
    assert!(socket.connected(), "the connection stays up");
}

#[tokio::test]
async fn user_connection_cap_refuses_the_extra_connect() {
    let caps = crate::limits::ConnectionLimits::none().per_user(Some(1));
    let (hub, engine) = users_hub(HubConfig::default().connection_limits(caps));
    hub.of("/b");
    let tab1 = Client::open(&engine);
    tab1.connect("/", Some(json!({ "user": "ann" }))).await;
    // The same connection joining another namespace is still one connection.
    tab1.connect("/b", Some(json!({ "user": "ann" }))).await;
    let tab2 = Client::open(&engine);
    tab2.send(r#"0{"user":"ann"}"#);
    settle().await;
    assert_eq!(
        tab2.recv(),
        vec![r#"4{"message":"too many connections for this user","data":{"code":"too_many_connections"}}"#]
    );
    tab1.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    tab2.connect("/", Some(json!({ "user": "ann" }))).await;
}

#[tokio::test]
async fn presence_counts_users_once_across_tabs() {
    let (hub, engine) = users_hub(HubConfig::default());
    let ns = hub.of("/");
    ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
    let diffs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = diffs.clone();
    ns.on_presence(move |_ns: &str, d: &crate::presence::PresenceDiff| log.lock().unwrap().push(d.clone()));
    let (tab1, tab2, bob) = (Client::open(&engine), Client::open(&engine), Client::open(&engine));
    let t1 = tab1.connect("/", Some(json!({ "user": "ann" }))).await;
    let t2 = tab2.connect("/", Some(json!({ "user": "ann" }))).await;
    let b = bob.connect("/", Some(json!({ "user": "bob" }))).await;
    ns.socket(&b).unwrap().join("room:1").unwrap();
    ns.socket(&t1).unwrap().join("room:1").unwrap();
    ns.socket(&t2).unwrap().join("room:1").unwrap();
    ns.socket(&t1).unwrap().join("other").unwrap();
    assert_eq!(ns.presence_count("room:1"), PresenceCount { users: 2, connections: 3 });
    assert_eq!(ns.presence_count("other"), PresenceCount::default(), "not a tracked room");
    let joins: Vec<String> = bob.recv().into_iter().filter(|p| p.contains("presence:")).collect();
    assert_eq!(
        joins,
        vec![
            r#"2["presence:join",{"roomId":"1","userId":"bob","name":"BOB"}]"#.to_owned(),
            r#"2["presence:join",{"roomId":"1","userId":"ann","name":"ANN"}]"#.to_owned(),
        ]
    );
    // The list, as a member asks for it; refused to a non-member.
    bob.send(r#"27["presence:list","1"]"#);
    settle().await;
    assert_eq!(
        bob.recv(),
        vec![
            r#"37[{"status":"ok","roomId":"1","users":[{"userId":"bob","connections":1,"name":"BOB"},{"userId":"ann","connections":2,"name":"ANN"}]}]"#
        ]
    );
    let outsider = Client::open(&engine);
    outsider.connect("/", Some(json!({ "user": "eve" }))).await;
    outsider.send(r#"28["presence:list","1"]"#);
    settle().await;
    assert!(outsider.recv()[0].starts_with(r#"38[{"status":"error","code":"forbidden""#));
    // A metadata update reaches the room; the first tab closing is silent,
    // the second one is ann's leave.
    ns.socket(&t2).unwrap().set_presence_meta(json!({ "name": "ANN", "status": "away" }));
    tab1.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    assert!(ns.is_present("ann"));
    tab2.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    let seen: Vec<String> = bob.recv().into_iter().filter(|p| p.contains("presence:")).collect();
    assert_eq!(
        seen,
        vec![
            format!(
                r#"2["presence:update",{{"roomId":"1","userId":"ann","connectionId":"{t2}","name":"ANN","status":"away"}}]"#
            ),
            r#"2["presence:leave",{"roomId":"1","userId":"ann"}]"#.to_owned(),
        ]
    );
    assert!(!ns.is_present("ann"));
    assert_eq!(ns.presence_count("room:1"), PresenceCount { users: 1, connections: 1 });
    assert_eq!(diffs.lock().unwrap().len(), 4, "join bob, join ann, update, leave ann");
    bob.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    assert!(ns.presence("room:1").is_empty());
}

/// The last argument of an EVENT packet (`2[...]`): its recovery offset.
pub(crate) fn offset_of(packet: &str) -> String {
    let args: Value = serde_json::from_str(packet.strip_prefix('2').unwrap()).unwrap();
    args.as_array().unwrap().last().unwrap().as_str().unwrap().to_owned()
}

/// CONNECTs to `/` with `auth`; waits for the reply or the refusal (a
/// restore or a cluster-wide cap may ask other nodes first); returns its
/// body and what followed.
pub(crate) async fn connect_reply(c: &Client, auth: Value) -> (Value, Vec<String>) {
    c.send(&format!("0{auth}"));
    let mut out = Vec::new();
    for _ in 0..250 {
        settle().await;
        out.extend(c.recv());
        // CONNECT, or CONNECT_ERROR.
        if out.first().is_some_and(|p| p.starts_with('0') || p.starts_with('4')) {
            break;
        }
    }
    let reply = out.remove(0);
    (serde_json::from_str(&reply[1..]).unwrap(), out)
}

#[tokio::test]
async fn recovery_restores_id_rooms_data_and_missed_packets_in_order() {
    let config = HubConfig::default().connection_state_recovery(crate::recovery::RecoveryConfig::default());
    let (hub, engine) = users_hub(config);
    let ns = hub.of("/");
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "ann" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    let socket = ns.socket(&sid).unwrap();
    assert!(!socket.recovered());
    socket.join("news").unwrap();
    socket.set_data(json!({ "score": 7 }));
    socket.emit("direct", args(json!([1]))).unwrap();
    ns.to("news").emit("news", args(json!([2])));
    let got = first.recv();
    assert_eq!(got.len(), 2);
    let last_seen = offset_of(&got[0]); // the client saw only the first
    first.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    ns.to("news").emit("news", args(json!([3])));
    ns.to("elsewhere").emit("other", args(json!([4])));
    ns.emit("all", args(json!([5])));

    let back = Client::open(&engine);
    let (reply, missed) = connect_reply(&back, json!({ "user": "ann", "pid": pid, "offset": last_seen })).await;
    assert_eq!(reply["sid"], sid.as_str(), "same socket id");
    assert_eq!(reply["pid"], pid.as_str());
    let names: Vec<String> = missed.iter().map(|p| p[2..p.find(',').unwrap()].to_owned()).collect();
    assert_eq!(names, vec![r#""news""#, r#""news""#, r#""all""#], "{missed:?}");
    assert!(missed[0].starts_with(r#"2["news",2,"#) && missed[1].starts_with(r#"2["news",3,"#), "{missed:?}");
    let restored = ns.socket(&sid).unwrap();
    assert!(restored.recovered());
    assert!(restored.in_room("news") && restored.in_room("user:ann"));
    assert_eq!(restored.data(), json!({ "score": 7 }));
    assert_eq!(hub.stats().recovered.load(Ordering::Relaxed), 1);
    // One use only: the same pid again starts a new session.
    let again = Client::open(&engine);
    let (reply, _) = connect_reply(&again, json!({ "user": "ann", "pid": pid, "offset": last_seen })).await;
    assert_ne!(reply["sid"], sid.as_str());
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_resumes_with_what_its_cut_dropped() {
    let config = HubConfig::default().connection_state_recovery(crate::recovery::RecoveryConfig::default());
    let (hub, _) = users_hub(config);
    let engine = hub.engine(crate::engine::EngineConfig::default().max_buffered_packets(8));
    let ns = hub.of("/");
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "sam" })).await;
    let pid = reply["pid"].as_str().unwrap().to_owned();
    for i in 0..12 {
        ns.emit("m", args(json!([i])));
    }
    settle().await;
    // It reads what was queued before the overflow (0 to 7) and the notice.
    let got = first.recv();
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(got[8].starts_with(r#"2["tidewire:disconnect","#), "{got:?}");
    let last_seen = offset_of(&got[7]);
    assert!(first.session.finish_if_drained());
    settle().await;
    // Back: 8 to 11 replayed, the notice not.
    let back = Client::open(&engine);
    let (reply, missed) = connect_reply(&back, json!({ "user": "sam", "pid": pid, "offset": last_seen })).await;
    assert_eq!(reply["pid"], pid.as_str(), "resumed");
    let numbers: Vec<&str> = missed.iter().map(|p| p.split(',').nth(1).unwrap_or_default()).collect();
    assert_eq!(numbers, ["8", "9", "10", "11"], "{missed:?}");
}

#[tokio::test]
async fn recovery_without_any_prior_event_replays_from_the_connect() {
    let config = HubConfig::default().connection_state_recovery(crate::recovery::RecoveryConfig::default());
    let (hub, engine) = users_hub(config);
    let ns = hub.of("/");
    ns.emit("before", args(json!(["not missed: sent before the socket existed"])));
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "bo" })).await;
    let pid = reply["pid"].as_str().unwrap().to_owned();
    ns.socket(reply["sid"].as_str().unwrap()).unwrap().join("r").unwrap();
    first.session.close(crate::engine::CloseReason::PingTimeout);
    settle().await;
    ns.to("r").emit("while away", args(json!([1])));
    // socket.io-client sends no offset when it received no event.
    let back = Client::open(&engine);
    let (reply, missed) = connect_reply(&back, json!({ "user": "bo", "pid": pid })).await;
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert!(missed[0].starts_with(r#"2["while away",1,"#));
    assert!(ns.socket(reply["sid"].as_str().unwrap()).unwrap().recovered());
}

#[tokio::test]
async fn recovery_fails_cleanly() {
    let config =
        HubConfig::default().connection_state_recovery(crate::recovery::RecoveryConfig::default().max_packets(2));
    let (hub, engine) = users_hub(config);
    let ns = hub.of("/");
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "cy" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    ns.socket(&sid).unwrap().emit("seen", args(json!([0]))).unwrap();
    let seen = offset_of(&first.recv()[0]);
    first.session.close(crate::engine::CloseReason::TransportError);
    settle().await;
    // Another user cannot take the session over.
    let thief = Client::open(&engine);
    let (reply, _) = connect_reply(&thief, json!({ "user": "mallory", "pid": pid, "offset": seen })).await;
    assert_ne!(reply["sid"], sid.as_str());
    // More was sent than the log keeps: the packets are gone.
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "cy" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    ns.socket(&sid).unwrap().emit("seen", args(json!([0]))).unwrap();
    let seen = offset_of(&first.recv()[0]);
    first.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;
    for i in 0..3 {
        ns.emit("flood", args(json!([i])));
    }
    let back = Client::open(&engine);
    let (reply, missed) = connect_reply(&back, json!({ "user": "cy", "pid": pid, "offset": seen })).await;
    assert_ne!(reply["sid"], sid.as_str(), "a new session, never a partial one");
    assert!(missed.is_empty());
    assert!(!ns.socket(reply["sid"].as_str().unwrap()).unwrap().recovered());
    // A clean disconnect keeps nothing; garbage pids and offsets are refused.
    let garbage = Client::open(&engine);
    let (reply, _) = connect_reply(&garbage, json!({ "user": "cy", "pid": 12, "offset": [1] })).await;
    assert!(reply["sid"].is_string());
    assert_eq!(hub.stats().recovery_failed.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn recovery_keeps_what_the_middleware_decides_now_and_rechecks_rooms() {
    let config = HubConfig::default().connection_state_recovery(crate::recovery::RecoveryConfig::default());
    let hub = Hub::new(config);
    let ns = hub.of("/");
    // The role comes from the handshake each time, as from a token.
    ns.use_middleware(|h: Arc<Handshake>| async move {
        let user = h.auth["user"].as_str().unwrap_or("anon").to_owned();
        Ok(Admission::user(user).with_data(json!({ "role": h.auth["role"] })))
    });
    ns.restore_room_guard(|data: &Value, _user: Option<&str>, room: &str| {
        !room.starts_with("staff-") || data["role"] == "staff"
    });
    let engine = hub.engine(crate::engine::EngineConfig::default());
    let first = Client::open(&engine);
    let (reply, _) = connect_reply(&first, json!({ "user": "ann", "role": "staff" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    let socket = ns.socket(&sid).unwrap();
    socket.join_many(["staff-ops", "news"]).unwrap();
    first.session.close(crate::engine::CloseReason::TransportClose);
    settle().await;

    // Someone else's pid: refused, and the session stays for its owner.
    let thief = Client::open(&engine);
    let (reply, _) = connect_reply(&thief, json!({ "user": "mallory", "pid": pid })).await;
    assert_ne!(reply["sid"], sid.as_str());
    assert!(!ns.socket(reply["sid"].as_str().unwrap()).unwrap().recovered());

    // The owner comes back without the role.
    let back = Client::open(&engine);
    let (reply, _) = connect_reply(&back, json!({ "user": "ann", "pid": pid })).await;
    assert_eq!(reply["sid"], sid.as_str(), "the owner still recovers after the thief's try");
    let restored = ns.socket(&sid).unwrap();
    assert!(restored.recovered());
    assert_eq!(restored.data(), json!({ "role": null }), "the middleware's data of now");
    assert!(restored.in_room("news") && restored.in_room("user:ann") && restored.in_room(&sid));
    assert!(!restored.in_room("staff-ops"), "a room the guard refuses is not rejoined");
    assert_eq!(hub.stats().recovered.load(Ordering::Relaxed), 1);
    assert_eq!(hub.stats().recovery_failed.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn drain_refuses_newcomers_notifies_waits_for_acks_then_closes() {
    let (hub, engine) = users_hub(HubConfig::default());
    hub.of("/").on("slow", |_s: Socket, e: Event| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(ack) = e.ack {
            let _ = ack.send(Payload::json(vec![json!("done")]));
        }
    });
    let clients: Vec<Client> = (0..3).map(|_| Client::open(&engine)).collect();
    for (i, c) in clients.iter().enumerate() {
        c.connect("/", Some(json!({ "user": format!("u{i}") }))).await;
    }
    clients[2].send(r#"29["slow"]"#);
    settle().await;
    let drain = tokio::spawn({
        let hub = hub.clone();
        async move { hub.drain(DrainOptions::default().batch_size(1).ack_deadline(Duration::from_secs(5))).await }
    });
    settle().await;
    let refused = engine.admit(&request()).unwrap_err();
    assert_eq!((refused.status.as_u16(), refused.code), (503, "server_shutting_down"));
    let report = drain.await.unwrap();
    assert_eq!((report.connections, report.batches, report.acks_abandoned), (3, 3, 0));
    for (i, c) in clients.iter().enumerate() {
        assert!(c.session.is_closed());
        let out = c.recv();
        // The slow event's answer went out first, then the notice, then the
        // connection closed.
        let answers = if i == 2 { vec![r#"39["done"]"#] } else { vec![] };
        assert_eq!(out.len(), answers.len() + 1, "{out:?}");
        assert_eq!(out[..answers.len()], answers[..], "{out:?}");
        assert!(
            out[answers.len()]
                .starts_with(r#"2["tidewire:drain",{"reason":"server shutting down","reconnectAfterMs":"#),
            "{out:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_gets_every_answer_then_the_notice_then_the_close() {
    let hub = Hub::default();
    let engine = hub.engine(crate::engine::EngineConfig::default().max_buffered_packets(8));
    hub.of("/").on("slow", |_s: Socket, e: Event| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(ack) = e.ack {
            let _ = ack.send(args(json!(["done"])));
        }
    });
    let c = Client::open(&engine);
    c.connect("/", None).await;
    c.send(r#"21["slow"]"#);
    settle().await;
    // The server floods a client that reads nothing: past 8 packets its
    // queue overflows, and what comes after is dropped.
    for i in 0..20 {
        hub.emit("m", args(json!([i])));
    }
    settle().await;
    assert_eq!(engine.stats().slow_consumers.load(Ordering::Relaxed), 1);
    assert!(!c.session.is_closed(), "open while an answer is due");
    // An event read meanwhile is refused with an answer, not handled.
    c.send(r#"22["slow"]"#);
    settle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    settle().await;
    let out = c.recv();
    let floods: Vec<String> = (0..8).map(|i| format!(r#"2["m",{i}]"#)).collect();
    assert_eq!(out[..8], floods[..], "{out:?}");
    assert_eq!(
        out[8..],
        [
            r#"32[{"status":"error","code":"slow_consumer","message":"the client does not read its messages"}]"#,
            r#"31["done"]"#,
            r#"2["tidewire:disconnect",{"code":"slow_consumer","message":"the client does not read its messages"}]"#,
        ],
        "{out:?}"
    );
    // Then the connection closes (`transport close` for the client, which
    // reconnects), with the slow consumer's reason.
    assert!(c.session.finish_if_drained());
    assert_eq!(c.session.close_reason(), Some(crate::engine::CloseReason::SlowConsumer));
    assert_eq!(hub.of("/").socket_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_that_never_answers_is_closed_all_the_same() {
    let hub = Hub::default();
    let engine = hub.engine(crate::engine::EngineConfig::default().max_buffered_packets(4));
    hub.of("/").on("stuck", |_s: Socket, e: Event| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(e);
    });
    let c = Client::open(&engine);
    c.connect("/", None).await;
    c.send(r#"21["stuck"]"#);
    settle().await;
    for i in 0..10 {
        hub.emit("m", args(json!([i])));
    }
    // Answers to a flood of events are bounded too: past twice the queue's
    // bound the connection closes without waiting.
    for id in 2..40 {
        c.send(&format!(r#"2{id}["stuck"]"#));
    }
    settle().await;
    assert!(c.session.queued().0 <= 8, "{:?}", c.session.queued());
    // The answer that never comes is waited for at most the cut's deadline,
    // and nothing is written after the overflow but answers and the notice.
    tokio::time::sleep(socket::CUT_ACK_DEADLINE + Duration::from_millis(100)).await;
    settle().await;
    tokio::time::sleep(crate::engine::FLUSH_TIMEOUT + Duration::from_millis(100)).await;
    settle().await;
    assert!(c.session.is_closed());
    assert_eq!(c.session.close_reason(), Some(crate::engine::CloseReason::SlowConsumer));
    assert!(!c.recv().iter().any(|p| p.contains(r#"["m",4]"#)), "nothing but answers after the overflow");
}

#[tokio::test(start_paused = true)]
async fn drain_abandons_acks_past_the_deadline() {
    let (hub, engine) = users_hub(HubConfig::default());
    hub.of("/").on("stuck", |_s: Socket, e: Event| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(e);
    });
    let c = Client::open(&engine);
    c.connect("/", Some(json!({ "user": "u" }))).await;
    c.send(r#"21["stuck"]"#);
    settle().await;
    let report = hub.drain(DrainOptions::default().ack_deadline(Duration::from_millis(200))).await;
    assert_eq!((report.connections, report.acks_abandoned), (1, 1));
    assert!(c.session.is_closed());
}
