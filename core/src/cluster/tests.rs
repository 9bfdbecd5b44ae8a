//! Several hubs in one process, joined over a `MemoryBus`: every cluster
//! feature, as the Hub calls a user makes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::bus::{Bus, MemoryBus, MemoryNode};
use crate::cluster::wire::sharded::SubscriptionMode;
use crate::cluster::wire::{channels, classic};
use crate::engine::Engine;
use crate::hub::tests::{Client, args, connect_reply, settle};
use crate::hub::*;
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::Payload;

struct Node {
    hub: Hub,
    engine: Engine,
}

impl Node {
    fn client(&self) -> Client {
        Client::open(&self.engine)
    }
    fn stats(&self) -> &ClusterStats {
        self.hub.cluster_stats().expect("in a cluster")
    }
}

thread_local! {
    /// The protocol of the clusters a test makes (its runtime runs on one thread).
    static PROTOCOL: std::cell::Cell<Protocol> = const { std::cell::Cell::new(Protocol::Classic) };
}

fn config() -> ClusterConfig {
    ClusterConfig::default().request_timeout(Duration::from_millis(300)).protocol(PROTOCOL.get())
}

async fn cluster(n: usize) -> (MemoryBus, Vec<Node>) {
    let bus = MemoryBus::new();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let hub = Hub::new(HubConfig::default().unlimited());
        hub.of("/chat");
        let (node, inbound) = bus.node(4096);
        hub.join_cluster(Arc::new(node), inbound, config()).await.unwrap();
        let engine = hub.engine(crate::engine::EngineConfig::default());
        nodes.push(Node { hub, engine });
    }
    (bus, nodes)
}

/// Lets subscriptions, the bus and the other hubs' tasks run.
async fn flow() {
    for _ in 0..5 {
        settle().await;
    }
}

fn count(received: &[String], packet: &str) -> usize {
    received.iter().filter(|p| *p == packet).count()
}

async fn broadcasts_reach_every_node_with_rooms_except_and_local() {
    let (_bus, n) = cluster(3).await;
    let (a1, b1, b2, c1) = (n[0].client(), n[1].client(), n[1].client(), n[2].client());
    let ida = a1.connect("/", None).await;
    let idb1 = b1.connect("/", None).await;
    let idb2 = b2.connect("/", None).await;
    let idc = c1.connect("/", None).await;
    n[1].hub.of("/").socket(&idb1).unwrap().join_many(["red", "blue"]).unwrap();
    n[1].hub.of("/").socket(&idb2).unwrap().join("blue").unwrap();
    n[2].hub.of("/").socket(&idc).unwrap().join("red").unwrap();
    flow().await;

    // One room: only members, wherever they are.
    assert_eq!(n[0].hub.to("red").emit("m", args(json!([1]))), 0, "no local member on a");
    flow().await;
    assert_eq!(b1.recv(), vec![r#"2["m",1]"#]);
    assert_eq!(c1.recv(), vec![r#"2["m",1]"#]);
    assert!(b2.recv().is_empty() && a1.recv().is_empty());

    // Several rooms: one copy for a member of both; except.
    n[0].hub.to("red").to("blue").emit("u", args(json!([])));
    flow().await;
    assert_eq!(count(&b1.recv(), r#"2["u"]"#), 1, "b1 is in both rooms and gets one copy");
    assert_eq!(b2.recv().len(), 1);
    assert_eq!(c1.recv().len(), 1);
    n[2].hub.to("blue").except("red").emit("x", args(json!([])));
    flow().await;
    assert_eq!(b2.recv(), vec![r#"2["x"]"#]);
    assert!(b1.recv().is_empty(), "b1 is in red");

    // Everyone; a socket's broadcast skips only that socket.
    let sa = n[0].hub.of("/").socket(&ida).unwrap();
    sa.broadcast().emit("hello", args(json!(["from a"])));
    flow().await;
    assert!(a1.recv().is_empty());
    for c in [&b1, &b2, &c1] {
        assert_eq!(c.recv(), vec![r#"2["hello","from a"]"#]);
    }
    n[1].hub.of("/").socket(&idb1).unwrap().broadcast().emit("hi", args(json!([])));
    flow().await;
    assert!(b1.recv().is_empty());
    assert_eq!((a1.recv().len(), b2.recv().len(), c1.recv().len()), (1, 1, 1));

    // To a socket id on another node (its own room).
    n[0].hub.to(idc.as_str()).emit("direct", args(json!(["psst"])));
    flow().await;
    assert_eq!(c1.recv(), vec![r#"2["direct","psst"]"#]);
    assert!(b1.recv().is_empty() && b2.recv().is_empty());

    // Local stays local.
    assert_eq!(n[1].hub.broadcast().local().emit("mine", args(json!([]))), 2);
    flow().await;
    assert!(a1.recv().is_empty() && c1.recv().is_empty());
    assert_eq!((b1.recv().len(), b2.recv().len()), (1, 1));

    // Another namespace: never reaches `/`.
    let chat = n[2].client();
    chat.connect("/chat", None).await;
    n[0].hub.of("/chat").emit("chat", args(json!([])));
    flow().await;
    assert_eq!(chat.recv(), vec![r#"2/chat,["chat"]"#]);
    assert!(b1.recv().is_empty() && c1.recv().is_empty());
}

async fn binary_arguments_cross_nodes_as_attachments() {
    let (_bus, n) = cluster(2).await;
    let b = n[1].client();
    b.connect("/", None).await;
    flow().await;
    let mut payload = args(json!(["file", {"name": "x"}]));
    payload.push_binary(Bytes::from_static(&[1, 2, 3]));
    n[0].hub.emit("upload", payload);
    flow().await;
    let out = b.session.drain();
    let texts: Vec<&Encoded> = out.iter().collect();
    assert_eq!(texts.len(), 2, "a header and one attachment: {texts:?}");
    let Encoded::Text(header) = &out[0] else { panic!("header first") };
    assert_eq!(&**header, r#"451-["upload","file",{"name":"x"},{"_placeholder":true,"num":0}]"#);
    let Encoded::Binary(bin) = &out[1] else { panic!("then the attachment") };
    assert_eq!(&bin[..], &[1, 2, 3]);
}

/// A Redis-like bus: a subscription takes a round trip before it counts.
/// (The in-process bus subscribes at once, which hides what a late
/// subscription loses.)
struct SlowSubscribe(MemoryNode);

impl Bus for SlowSubscribe {
    fn publish(&self, channel: &str, payload: Bytes) -> Result<(), crate::bus::BusError> {
        self.0.publish(channel, payload)
    }
    fn subscribe<'a>(&'a self, channels: &'a [String]) -> crate::bus::BusFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.subscribe(channels).await
        })
    }
    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> crate::bus::BusFuture<'a, ()> {
        self.0.unsubscribe(channels)
    }
    fn subscriber_count<'a>(&'a self, channel: &'a str) -> crate::bus::BusFuture<'a, usize> {
        self.0.subscriber_count(channel)
    }
}

/// What another node sends to a socket's first rooms (its id, its user's)
/// right after the client got its CONNECT, or to a room right after
/// `join_async` resolved, reaches it: those rooms are listened to, and the
/// bus confirmed it, before. (Before, the interest task subscribed them
/// after the CONNECT had gone out: a broadcast in between reached nobody.)
async fn rooms_are_listened_to_before_the_client_learns_of_them() {
    let bus = MemoryBus::new();
    let mut n = Vec::new();
    for _ in 0..2 {
        let hub = Hub::new(HubConfig::default().unlimited());
        let (node, inbound) = bus.node(4096);
        hub.join_cluster(Arc::new(SlowSubscribe(node)), inbound, config()).await.unwrap();
        let engine = hub.engine(crate::engine::EngineConfig::default());
        n.push(Node { hub, engine });
    }
    n[0].hub.of("/").use_middleware(|_h: Arc<Handshake>| async move { Ok(Admission::user("ada")) });
    let a = n[0].client();
    a.send("0");
    // The CONNECT as soon as it is out.
    let mut out = Vec::new();
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        out.extend(a.recv());
        if !out.is_empty() {
            break;
        }
    }
    let reply = out.remove(0);
    assert!(reply.starts_with("0{"), "{reply}");
    let id = serde_json::from_str::<Value>(&reply[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    n[1].hub.to(id.as_str()).emit("direct", args(json!([1])));
    n[1].hub.to("user:ada").emit("dm", args(json!([2])));
    tokio::time::sleep(Duration::from_millis(50)).await;
    out.extend(a.recv());
    assert_eq!(count(&out, r#"2["direct",1]"#), 1, "{out:?}");
    assert_eq!(count(&out, r#"2["dm",2]"#), 1, "{out:?}");

    let socket = n[0].hub.of("/").socket(&id).unwrap();
    socket.join_async("late").await.unwrap();
    n[1].hub.to("late").emit("late", args(json!([3])));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.recv(), vec![r#"2["late",3]"#.to_owned()]);
}

#[tokio::test]
async fn rooms_are_listened_to_before_the_client_learns_of_them_classic() {
    PROTOCOL.set(Protocol::Classic);
    rooms_are_listened_to_before_the_client_learns_of_them().await;
}

#[tokio::test]
async fn rooms_are_listened_to_before_the_client_learns_of_them_sharded() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::DynamicPrivate));
    rooms_are_listened_to_before_the_client_learns_of_them().await;
}

#[tokio::test]
async fn only_nodes_holding_a_room_receive_its_broadcasts() {
    let (_bus, n) = cluster(3).await;
    let (b, c) = (n[1].client(), n[2].client());
    let idb = b.connect("/", None).await;
    c.connect("/", None).await;
    n[1].hub.of("/").socket(&idb).unwrap().join("only-b").unwrap();
    flow().await;
    let before = n[2].stats().received.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..10 {
        n[0].hub.to("only-b").emit("m", args(json!([i])));
    }
    flow().await;
    assert_eq!(b.recv().len(), 10);
    let after = n[2].stats().received.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after, before, "c holds no member of only-b and never sees its traffic");

    // Once b's member leaves, b unsubscribes too.
    n[1].hub.of("/").socket(&idb).unwrap().leave("only-b");
    flow().await;
    let before = n[1].stats().received.load(std::sync::atomic::Ordering::Relaxed);
    n[0].hub.to("only-b").emit("m", args(json!([])));
    flow().await;
    assert_eq!(n[1].stats().received.load(std::sync::atomic::Ordering::Relaxed), before);
}

async fn fetch_sockets_and_act_on_remote_ones() {
    let (_bus, n) = cluster(3).await;
    n[1].hub.of("/").use_middleware(|_h: Arc<Handshake>| async move {
        Ok(Admission::user("bob").with_data(json!({"nick": "bob"})))
    });
    let (a, b, c) = (n[0].client(), n[1].client(), n[2].client());
    let ida = a.connect("/", None).await;
    let idb = b.connect("/", None).await;
    let idc = c.connect("/", None).await;
    n[2].hub.of("/").socket(&idc).unwrap().join("team").unwrap();
    n[1].hub.of("/").socket(&idb).unwrap().join("team").unwrap();
    flow().await;

    let all = n[0].hub.of("/").broadcast().fetch_sockets().await;
    assert!(all.replies.complete(), "{:?}", all.replies);
    assert_eq!((all.replies.expected, all.replies.received), (2, 2));
    let mut ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![ida.as_str(), idb.as_str(), idc.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let mut nodes = all.replies.nodes.clone();
    nodes.sort();
    let mut want_nodes = vec![n[1].hub.node_id().to_string(), n[2].hub.node_id().to_string()];
    want_nodes.sort();
    assert_eq!(nodes, want_nodes, "Tidewire nodes name themselves");

    let team = n[0].hub.to("team").except(idc.as_str()).fetch_sockets().await.into_value();
    assert_eq!(team.len(), 1);
    let bob = &team[0];
    assert_eq!(bob.id, idb);
    assert!(bob.local().is_none());
    assert_eq!(bob.data, json!({"nick": "bob"}));
    let mut rooms = bob.rooms.clone();
    rooms.sort();
    let mut want = vec![idb.clone(), "team".to_owned(), "user:bob".to_owned()];
    want.sort();
    assert_eq!(rooms, want);
    assert_eq!(bob.handshake.url, "/socket.io/?EIO=4&transport=websocket&q=1");
    assert_eq!(bob.handshake.query.get("q"), Some("1"));
    assert_eq!(bob.handshake.address.to_string(), "127.0.0.1");

    // Acting on it reaches its node.
    assert!(bob.emit("psst", args(json!([1]))).is_ok());
    bob.join("vip").unwrap();
    flow().await;
    assert_eq!(b.recv(), vec![r#"2["psst",1]"#]);
    assert!(n[1].hub.of("/").socket(&idb).unwrap().in_room("vip"));
    bob.leave("team");
    flow().await;
    assert!(!n[1].hub.of("/").socket(&idb).unwrap().in_room("team"));
    bob.disconnect(false);
    flow().await;
    assert!(n[1].hub.of("/").socket(&idb).is_none());
    assert!(b.recv().contains(&"1".to_owned()), "b got a DISCONNECT");
    assert!(n[2].hub.of("/").socket(&idc).is_some(), "c is untouched");
}

async fn sockets_join_leave_and_disconnect_across_nodes() {
    let (_bus, n) = cluster(2).await;
    let (a, b1, b2) = (n[0].client(), n[1].client(), n[1].client());
    let ida = a.connect("/", None).await;
    let idb1 = b1.connect("/", None).await;
    let idb2 = b2.connect("/", None).await;
    n[1].hub.of("/").socket(&idb2).unwrap().join("quiet").unwrap();
    flow().await;

    n[0].hub.of("/").broadcast().except("quiet").sockets_join(["news"]);
    flow().await;
    assert!(n[0].hub.of("/").socket(&ida).unwrap().in_room("news"), "applied here at once");
    assert!(n[1].hub.of("/").socket(&idb1).unwrap().in_room("news"));
    assert!(!n[1].hub.of("/").socket(&idb2).unwrap().in_room("news"), "except holds remotely");
    n[1].hub.to("news").emit("n", args(json!([])));
    flow().await;
    assert_eq!((a.recv().len(), b1.recv().len(), b2.recv().len()), (1, 1, 0));

    n[1].hub.to("news").sockets_leave("news");
    flow().await;
    assert!(!n[0].hub.of("/").socket(&ida).unwrap().in_room("news"));

    n[0].hub.to("quiet").disconnect_sockets(false);
    flow().await;
    assert!(n[1].hub.of("/").socket(&idb2).is_none());
    assert!(n[1].hub.of("/").socket(&idb1).is_some());
    assert!(b2.recv().contains(&"1".to_owned()));
}

async fn server_side_events_with_and_without_acks() {
    let (_bus, n) = cluster(3).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    for (i, node) in n.iter().enumerate() {
        let seen = seen.clone();
        node.hub.of("/").on_server_event("ping", move |payload: Payload, ack: Option<ServerAck>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((i, payload.data.clone()));
                if let Some(ack) = ack {
                    ack.send(&json!({"node": i, "got": payload.data}));
                }
            }
        });
    }
    assert_eq!(n[0].hub.of("/").server_count().await.unwrap(), 3);

    n[0].hub.of("/").server_side_emit("ping", &args(json!(["hello"]))).unwrap();
    flow().await;
    let mut got = seen.lock().unwrap().drain(..).collect::<Vec<_>>();
    got.sort_by_key(|(i, _)| *i);
    assert_eq!(got, vec![(1, vec![json!("hello")]), (2, vec![json!("hello")])], "every other node, not the sender");

    let answers = n[1].hub.of("/").server_side_emit_with_ack("ping", &args(json!([7])), None).await;
    assert!(answers.replies.complete());
    let mut nodes: Vec<i64> = answers.iter().map(|v| v["node"].as_i64().unwrap()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, vec![0, 2]);
    assert!(answers.iter().all(|v| v["got"] == json!([7])));

    // A node without a handler does not answer: the result says so.
    let start = std::time::Instant::now();
    let partial = n[1].hub.of("/").server_side_emit_with_ack("nobody-handles", &args(json!([])), None).await;
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!((partial.replies.expected, partial.replies.received), (2, 0));
    assert!(!partial.replies.complete());
    let mut silent = partial.replies.silent.clone();
    silent.sort();
    let mut want = vec![n[0].hub.node_id().to_string(), n[2].hub.node_id().to_string()];
    want.sort();
    assert_eq!(silent, want, "known Tidewire nodes that kept quiet are named");
}

async fn broadcast_with_acks_spans_nodes() {
    let (_bus, n) = cluster(3).await;
    let clients = [n[0].client(), n[1].client(), n[1].client(), n[2].client()];
    let nodes = [0, 1, 1, 2];
    let mut ids = Vec::new();
    for (c, i) in clients.iter().zip(nodes) {
        let id = c.connect("/", None).await;
        n[i].hub.of("/").socket(&id).unwrap().join("voters").unwrap();
        ids.push(id);
    }
    flow().await;
    let asker = n[0].hub.clone();
    let task = tokio::spawn(async move {
        asker.to("voters").timeout(Duration::from_secs(2)).emit_with_ack("vote?", args(json!([]))).await
    });
    flow().await;
    for (k, c) in clients.iter().enumerate() {
        let packets = c.recv();
        let ask = packets.iter().find(|p| p.contains("vote?")).unwrap_or_else(|| panic!("{k} asked: {packets:?}"));
        let id: String = ask[1..].chars().take_while(char::is_ascii_digit).collect();
        c.send(&format!("3{id}[\"yes-{k}\"]"));
    }
    let report = tokio::time::timeout(Duration::from_secs(3), task).await.unwrap().unwrap().unwrap();
    let mut answers: Vec<String> =
        report.responses.iter().map(|(_, p)| p.data[0].as_str().unwrap().to_owned()).collect();
    answers.sort();
    assert_eq!(answers, vec!["yes-0", "yes-1", "yes-2", "yes-3"]);
    assert!(report.timed_out.is_empty() && report.missing_remote == 0 && report.missing_nodes == 0);
    assert_eq!(report.responses.iter().filter(|(id, _)| id == &ids[0]).count(), 1, "local answers keep their id");
}

async fn a_silent_node_gives_partial_results_naming_it() {
    let (bus, n) = cluster(2).await;
    let b = n[1].client();
    let idb = b.connect("/", None).await;
    flow().await;
    // A node that subscribes and announces itself like a Tidewire node,
    // then never answers (a frozen process).
    let (ghost, _ghost_rx): (MemoryNode, _) = bus.node(16);
    let counted = match PROTOCOL.get() {
        Protocol::Sharded(_) => crate::cluster::wire::sharded::channel("socket.io", "/"),
        _ => channels::request_channel("socket.io", "/"),
    };
    ghost.subscribe(&[counted]).await.unwrap();
    ghost.publish("socket.io-tidewire#nodes#", Bytes::from_static(br#"{"uid":"ghost"}"#)).unwrap();
    flow().await;
    let start = std::time::Instant::now();
    let fetched = n[0].hub.of("/").broadcast().fetch_sockets().await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(fetched.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![idb], "what did answer is there");
    assert_eq!((fetched.replies.expected, fetched.replies.received), (2, 1));
    assert_eq!(fetched.replies.silent, vec!["ghost".to_owned()]);
    assert_eq!(fetched.replies.nodes, vec![n[1].hub.node_id().to_string()]);
    // A clean leave is noticed at once.
    ghost.publish("socket.io-tidewire#nodes#", Bytes::from_static(br#"{"uid":"ghost","bye":true}"#)).unwrap();
    flow().await;
    let rooms = n[0].hub.of("/").all_rooms().await;
    assert!(rooms.replies.silent.is_empty(), "{:?}", rooms.replies);
    if PROTOCOL.get() == Protocol::Classic {
        assert!(rooms.contains(&n[1].hub.of("/").sockets()[0].id().to_owned()));
    } else {
        assert_eq!(rooms.replies.expected, 0, "the sharded protocol has no request for every room");
    }
}

#[tokio::test]
async fn an_answer_delivered_twice_counts_once() {
    let (bus, n) = cluster(2).await;
    let b = n[1].client();
    let idb = b.connect("/", None).await;
    flow().await;
    // A silent node (counted, never answers) and a bus that delivers b's
    // answer twice: the request must still wait for the silent node.
    let (ghost, mut ghost_rx): (MemoryNode, _) = bus.node(16);
    ghost.subscribe(&[channels::request_channel("socket.io", "/"), "socket.io-response#/#".to_owned()]).await.unwrap();
    let echo = tokio::spawn(async move {
        while let Some(m) = ghost_rx.recv().await {
            if m.channel == "socket.io-response#/#" {
                ghost.publish(&m.channel, m.payload.clone()).unwrap();
                break;
            }
        }
        ghost
    });
    flow().await;
    let fetched = n[0].hub.of("/").broadcast().fetch_sockets().await;
    assert_eq!(fetched.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![idb]);
    assert_eq!((fetched.replies.expected, fetched.replies.received), (2, 1), "b's second copy is not another node");
    drop(echo.await);
}

#[tokio::test]
async fn malformed_cluster_messages_are_counted_and_ignored() {
    let (bus, n) = cluster(2).await;
    let b = n[1].client();
    b.connect("/", None).await;
    flow().await;
    let (rogue, _rx) = bus.node(16);
    for channel in ["socket.io#/#", "socket.io-request#/#", "socket.io-response#/#", "socket.io-tidewire#nodes#"] {
        for junk in [&b"\xc1"[..], b"{not json", b"", b"\x93\xa1x\x80"] {
            rogue.publish(channel, Bytes::copy_from_slice(junk)).unwrap();
        }
    }
    // A well-formed request of a kind this namespace lacks, and a broadcast to an unknown namespace.
    let stray = classic::ClassicBroadcast {
        uid: "rogue".into(),
        packet: classic::Packet::event("/nowhere", vec!["x".into()]),
        opts: classic::BroadcastOpts::default(),
    };
    rogue.publish("socket.io#/#", Bytes::from(stray.encode())).unwrap();
    flow().await;
    assert!(n[1].stats().malformed.load(std::sync::atomic::Ordering::Relaxed) >= 12);
    assert!(b.recv().is_empty());
    // Still serving.
    n[0].hub.emit("after", args(json!([])));
    flow().await;
    assert_eq!(b.recv(), vec![r#"2["after"]"#]);
}

#[tokio::test]
async fn namespaces_made_later_and_dynamic_children_join_the_cluster() {
    let (_bus, n) = cluster(2).await;
    let teams = regex::Regex::new(r"^/team-\d+$").unwrap();
    for node in &n {
        node.hub.dynamic(teams.clone());
    }
    let b = n[1].client();
    b.connect("/team-7", None).await;
    n[0].hub.of("/late");
    flow().await;
    assert_eq!(n[0].hub.of("/late").server_count().await.unwrap(), 1, "only a has /late");
    // a has no /team-7 yet: its broadcast still reaches b's sockets there.
    n[0].hub.of("/team-7").emit("t", args(json!([])));
    flow().await;
    assert_eq!(b.recv(), vec![r#"2/team-7,["t"]"#]);
    assert_eq!(n[1].hub.of("/team-7").server_count().await.unwrap(), 2);
}

#[tokio::test]
async fn joining_twice_is_refused() {
    let bus = MemoryBus::new();
    let hub = Hub::default();
    let (a, ra) = bus.node(16);
    let (b, rb) = bus.node(16);
    hub.join_cluster(Arc::new(a), ra, ClusterConfig::default()).await.unwrap();
    assert_eq!(hub.join_cluster(Arc::new(b), rb, ClusterConfig::default()).await, Err(ClusterError::AlreadyJoined));
    assert!(hub.in_cluster());

    // A bus that refuses leaves the hub alone: it can join another later.
    let lone = Hub::default();
    let (gone, rx) = bus.node(16);
    gone.leave();
    let refused = lone.join_cluster(Arc::new(gone), rx, ClusterConfig::default()).await;
    assert_eq!(refused, Err(ClusterError::Bus(crate::bus::BusError::Closed.to_string())));
    assert!(!lone.in_cluster());
    let (ok, rx) = bus.node(16);
    lone.join_cluster(Arc::new(ok), rx, ClusterConfig::default()).await.unwrap();
    assert_eq!(lone.of("/").server_count().await.unwrap(), 2);
}

// --- presence across nodes ---------------------------------------------------

async fn presence_cluster(n: usize, heartbeat: Duration) -> (MemoryBus, Vec<Node>, Vec<MemoryNodeHandle>) {
    let bus = MemoryBus::new();
    let mut nodes = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..n {
        let node = presence_node(&bus, heartbeat).await;
        handles.push(node.1);
        nodes.push(node.0);
    }
    (bus, nodes, handles)
}

/// Lets a test cut a node off the bus, as a crash would.
type MemoryNodeHandle = Arc<MemoryNode>;

async fn presence_node(bus: &MemoryBus, heartbeat: Duration) -> (Node, MemoryNodeHandle) {
    let hub = Hub::new(HubConfig::default().unlimited());
    let ns = hub.of("/");
    ns.use_middleware(|h: Arc<Handshake>| async move {
        let user = h.auth["user"].as_str().unwrap_or("anon").to_owned();
        Ok(Admission::user(user.clone()).with_presence(json!({ "name": user })))
    });
    ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
    let (node, inbound) = bus.node(4096);
    let node = Arc::new(node);
    let config = config().heartbeat_interval(heartbeat);
    hub.join_cluster(node.clone(), inbound, config).await.unwrap();
    let engine = hub.engine(crate::engine::EngineConfig::default());
    (Node { hub, engine }, node)
}

fn presence_events(packets: &[String]) -> Vec<Value> {
    packets
        .iter()
        .filter(|p| p.contains("presence:"))
        .map(|p| serde_json::from_str::<Value>(&p[1..]).unwrap())
        .collect()
}

async fn join_room(node: &Node, client: &Client, room: &str, user: &str) -> String {
    let id = client.connect("/", Some(json!({ "user": user }))).await;
    node.hub.of("/").socket(&id).unwrap().join(room).unwrap();
    id
}

#[tokio::test]
async fn presence_is_one_list_with_one_join_and_one_leave_across_nodes() {
    let (_bus, n, _handles) = presence_cluster(2, Duration::from_secs(5)).await;
    // A watcher on each node, then alice with a tab on each node.
    let (wa, wb) = (n[0].client(), n[1].client());
    join_room(&n[0], &wa, "room:1", "wa").await;
    join_room(&n[1], &wb, "room:1", "wb").await;
    flow().await;
    wa.recv();
    wb.recv();
    let (tab1, tab2) = (n[0].client(), n[1].client());
    let t1 = join_room(&n[0], &tab1, "room:1", "alice").await;
    flow().await;
    let t2 = join_room(&n[1], &tab2, "room:1", "alice").await;
    flow().await;
    for w in [&wa, &wb] {
        let events = presence_events(&w.recv());
        assert_eq!(events, vec![json!(["presence:join", {"roomId": "1", "userId": "alice", "name": "alice"}])]);
    }
    // The same list from every node: three users, alice with two connections.
    for node in &n {
        let list = node.hub.of("/").presence("room:1");
        let users: Vec<(&str, usize)> = list.iter().map(|u| (&*u.user_id, u.connections.len())).collect();
        let mut users = users;
        users.sort_unstable();
        assert_eq!(users, vec![("alice", 2), ("wa", 1), ("wb", 1)]);
        assert_eq!(node.hub.of("/").presence_count("room:1").connections, 4);
    }
    // One tab closes: nothing; the other: one leave everywhere.
    n[0].hub.of("/").socket(&t1).unwrap().disconnect(false);
    flow().await;
    assert!(presence_events(&wa.recv()).is_empty() && presence_events(&wb.recv()).is_empty());
    assert!(n[1].hub.of("/").is_present("alice"));
    n[1].hub.of("/").socket(&t2).unwrap().disconnect(false);
    flow().await;
    for w in [&wa, &wb] {
        assert_eq!(presence_events(&w.recv()), vec![json!(["presence:leave", {"roomId": "1", "userId": "alice"}])]);
    }
    for node in &n {
        assert!(!node.hub.of("/").is_present("alice"));
    }
}

#[tokio::test]
async fn metadata_updates_reach_every_node() {
    let (_bus, n, _handles) = presence_cluster(2, Duration::from_secs(5)).await;
    let (a, wb) = (n[0].client(), n[1].client());
    let ida = join_room(&n[0], &a, "room:x", "ann").await;
    join_room(&n[1], &wb, "room:x", "bob").await;
    flow().await;
    wb.recv();
    n[0].hub.of("/").socket(&ida).unwrap().set_presence_meta(json!({"name": "ann", "status": "away"}));
    flow().await;
    let events = presence_events(&wb.recv());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0][0], "presence:update");
    assert_eq!(events[0][1]["status"], "away");
    let list = n[1].hub.of("/").presence("room:x");
    let ann = list.iter().find(|u| &*u.user_id == "ann").unwrap();
    assert_eq!(ann.connections[0].meta["status"], "away");
}

#[tokio::test]
async fn a_node_that_stops_beating_loses_its_users_within_the_lease() {
    let heartbeat = Duration::from_millis(40);
    let (_bus, n, handles) = presence_cluster(2, heartbeat).await;
    let (w, gone) = (n[0].client(), n[1].client());
    join_room(&n[0], &w, "room:1", "watcher").await;
    join_room(&n[1], &gone, "room:1", "ghost").await;
    flow().await;
    assert!(n[0].hub.of("/").is_present("ghost"));
    w.recv();
    // The node is cut off the bus (a crash): no goodbye, no more beats.
    handles[1].leave();
    let start = std::time::Instant::now();
    while n[0].hub.of("/").is_present("ghost") {
        assert!(start.elapsed() < Duration::from_secs(3), "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(start.elapsed() >= heartbeat * 2, "not before the lease: {:?}", start.elapsed());
    assert_eq!(presence_events(&w.recv()), vec![json!(["presence:leave", {"roomId": "1", "userId": "ghost"}])]);
}

#[tokio::test]
async fn a_clean_shutdown_removes_its_users_at_once() {
    let (_bus, n, _handles) = presence_cluster(2, Duration::from_secs(5)).await;
    let (w, leaving) = (n[0].client(), n[1].client());
    join_room(&n[0], &w, "room:1", "watcher").await;
    join_room(&n[1], &leaving, "room:1", "bye").await;
    flow().await;
    w.recv();
    n[1].hub.announce_leaving();
    flow().await;
    assert!(!n[0].hub.of("/").is_present("bye"));
    assert_eq!(presence_events(&w.recv()), vec![json!(["presence:leave", {"roomId": "1", "userId": "bye"}])]);
}

#[tokio::test]
async fn a_node_that_joins_later_gets_the_presence_and_lost_changes_are_repaired() {
    let heartbeat = Duration::from_millis(40);
    let bus = MemoryBus::new();
    let (a, _ha) = presence_node(&bus, heartbeat).await;
    let ca = a.client();
    let ida = join_room(&a, &ca, "room:1", "early").await;
    flow().await;
    let (b, _hb) = presence_node(&bus, heartbeat).await;
    flow().await;
    let users: Vec<String> = b.hub.of("/").presence("room:1").iter().map(|u| u.user_id.to_string()).collect();
    assert_eq!(users, vec!["early"], "the snapshot asked for at join");

    // A change that never reaches b (as in a Redis outage): b's copy is
    // stale until a's next heartbeat digest makes it ask again.
    let (rogue, _rx) = bus.node(16);
    let fake = json!({"type": "deltas", "uid": a.hub.node_id().to_string(), "nsp": "/",
        "deltas": [{"op": "leave", "room": "room:1", "conn": ida}]});
    rogue.publish("socket.io-tidewire#presence#", Bytes::from(fake.to_string())).unwrap();
    flow().await;
    assert!(!b.hub.of("/").is_present("early"), "b applied the bogus leave");
    let start = std::time::Instant::now();
    while !b.hub.of("/").is_present("early") {
        assert!(start.elapsed() < Duration::from_secs(3), "never repaired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- every scenario in both protocols -----------------------------------------

#[tokio::test]
async fn classic_broadcasts_reach_every_node_with_rooms_except_and_local() {
    broadcasts_reach_every_node_with_rooms_except_and_local().await;
}

#[tokio::test]
async fn sharded_broadcasts_reach_every_node_with_rooms_except_and_local() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    broadcasts_reach_every_node_with_rooms_except_and_local().await;
}

#[tokio::test]
async fn classic_binary_arguments_cross_nodes_as_attachments() {
    binary_arguments_cross_nodes_as_attachments().await;
}

#[tokio::test]
async fn sharded_binary_arguments_cross_nodes_as_attachments() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    binary_arguments_cross_nodes_as_attachments().await;
}

#[tokio::test]
async fn classic_fetch_sockets_and_act_on_remote_ones() {
    fetch_sockets_and_act_on_remote_ones().await;
}

#[tokio::test]
async fn sharded_fetch_sockets_and_act_on_remote_ones() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    fetch_sockets_and_act_on_remote_ones().await;
}

#[tokio::test]
async fn classic_sockets_join_leave_and_disconnect_across_nodes() {
    sockets_join_leave_and_disconnect_across_nodes().await;
}

#[tokio::test]
async fn sharded_sockets_join_leave_and_disconnect_across_nodes() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    sockets_join_leave_and_disconnect_across_nodes().await;
}

#[tokio::test]
async fn classic_server_side_events_with_and_without_acks() {
    server_side_events_with_and_without_acks().await;
}

#[tokio::test]
async fn sharded_server_side_events_with_and_without_acks() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    server_side_events_with_and_without_acks().await;
}

#[tokio::test]
async fn classic_broadcast_with_acks_spans_nodes() {
    broadcast_with_acks_spans_nodes().await;
}

#[tokio::test]
async fn sharded_broadcast_with_acks_spans_nodes() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    broadcast_with_acks_spans_nodes().await;
}

#[tokio::test]
async fn classic_a_silent_node_gives_partial_results_naming_it() {
    a_silent_node_gives_partial_results_naming_it().await;
}

#[tokio::test]
async fn sharded_a_silent_node_gives_partial_results_naming_it() {
    PROTOCOL.set(Protocol::Sharded(SubscriptionMode::Dynamic));
    a_silent_node_gives_partial_results_naming_it().await;
}

/// A node that froze shortly before a request is forgotten (three missed
/// heartbeats) before the request ends: it is still named as silent.
#[tokio::test]
async fn a_node_forgotten_during_a_request_is_still_named_silent() {
    let bus = MemoryBus::new();
    let hub = Hub::new(HubConfig::default().unlimited());
    let (node, inbound) = bus.node(4096);
    let heartbeat = Duration::from_millis(40);
    let config = ClusterConfig::default().request_timeout(Duration::from_millis(400)).heartbeat_interval(heartbeat);
    hub.join_cluster(Arc::new(node), inbound, config).await.unwrap();
    let (ghost, _ghost_rx): (MemoryNode, _) = bus.node(16);
    ghost.subscribe(&[channels::request_channel("socket.io", "/")]).await.unwrap();
    // Beats once, then freezes: forgotten 120 ms later, mid-request.
    ghost.publish("socket.io-tidewire#nodes#", Bytes::from_static(br#"{"uid":"ghost"}"#)).unwrap();
    flow().await;
    let fetched = hub.of("/").broadcast().fetch_sockets().await;
    assert_eq!((fetched.replies.expected, fetched.replies.received), (1, 0));
    assert_eq!(fetched.replies.silent, vec!["ghost".to_owned()]);
}

// --- cluster-wide connection caps ----------------------------------------------

async fn capped_node(
    bus: &MemoryBus,
    heartbeat: Duration,
    per_user: Option<u32>,
    per_ip: Option<u32>,
) -> (Node, Arc<MemoryNode>) {
    let (hub, engine) = crate::hub::tests::users_hub(HubConfig::default().unlimited());
    let (node, inbound) = bus.node(4096);
    let node = Arc::new(node);
    let config = config().heartbeat_interval(heartbeat).connection_caps(per_user, per_ip);
    hub.join_cluster(node.clone(), inbound, config).await.unwrap();
    (Node { hub, engine }, node)
}

/// CONNECTs as `user`; the socket id, or the refusal's code.
async fn connect_as(c: &Client, user: &str) -> Result<String, String> {
    let (reply, _) = connect_reply(c, json!({ "user": user })).await;
    match reply["sid"].as_str() {
        Some(sid) => Ok(sid.to_owned()),
        None => Err(reply["data"]["code"].as_str().unwrap_or("?").to_owned()),
    }
}

#[tokio::test]
async fn a_user_cap_holds_across_nodes_and_frees_on_close_and_on_node_death() {
    let bus = MemoryBus::new();
    let heartbeat = Duration::from_millis(40);
    let (a, a_bus) = capped_node(&bus, heartbeat, Some(2), None).await;
    let (b, _b_bus) = capped_node(&bus, heartbeat, Some(2), None).await;
    let (a1, b1, a2, b2) = (a.client(), b.client(), a.client(), b.client());
    connect_as(&a1, "ann").await.unwrap();
    connect_as(&b1, "ann").await.unwrap();
    assert_eq!(connect_as(&a2, "ann").await, Err("too_many_connections".to_owned()), "third on a");
    assert_eq!(connect_as(&b2, "ann").await, Err("too_many_connections".to_owned()), "third on b");
    connect_as(&b2, "bob").await.expect("another user is not capped by ann");
    assert_eq!(b.hub.stats().connections_refused.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A connection closes: its unit comes back.
    b1.session.close(crate::engine::CloseReason::TransportClose);
    flow().await;
    let again = b.client();
    let start = std::time::Instant::now();
    loop {
        if connect_as(&again, "ann").await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "the unit never came back");
    }

    // Node a dies (no more leases): its unit stops counting within the lease.
    a_bus.leave();
    let late = b.client();
    let start = std::time::Instant::now();
    loop {
        match connect_as(&late, "ann").await {
            Ok(_) => break,
            Err(code) => assert_eq!(code, "too_many_connections"),
        }
        assert!(start.elapsed() < Duration::from_secs(3), "a dead node's units kept counting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= heartbeat, "not before its lease ran out");
}

#[tokio::test]
async fn an_ip_cap_holds_across_nodes() {
    let bus = MemoryBus::new();
    let (a, _ha) = capped_node(&bus, Duration::from_secs(5), None, Some(2)).await;
    let (b, _hb) = capped_node(&bus, Duration::from_secs(5), None, Some(2)).await;
    // Every test client comes from 127.0.0.1.
    connect_as(&a.client(), "u1").await.unwrap();
    connect_as(&b.client(), "u2").await.unwrap();
    assert_eq!(connect_as(&b.client(), "u3").await, Err("too_many_connections".to_owned()));
    // A second namespace of the same connection takes no second unit.
    let c = a.client();
    assert_eq!(connect_as(&c, "u4").await, Err("too_many_connections".to_owned()));
}

#[tokio::test]
async fn a_user_rate_holds_across_nodes() {
    let bus = MemoryBus::new();
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (hub, engine) = crate::hub::tests::users_hub(HubConfig::default().unlimited());
        let count = handled.clone();
        hub.of("/").on("chat", move |_s: Socket, e: Event| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if let Some(ack) = e.ack {
                    let _ = ack.send(args(json!(["ok"])));
                }
            }
        });
        let (node, inbound) = bus.node(4096);
        let rate = crate::limits::Rate::per(Duration::from_secs(60), 6);
        hub.join_cluster(Arc::new(node), inbound, config().user_rate(Some(rate))).await.unwrap();
        nodes.push(Node { hub, engine });
    }
    let (a, b) = (nodes[0].client(), nodes[1].client());
    connect_as(&a, "ann").await.unwrap();
    connect_as(&b, "ann").await.unwrap();
    for i in 0..5 {
        a.send(&format!("2{i}[\"chat\",{i}]"));
        b.send(&format!("2{}[\"chat\",{i}]", 10 + i));
    }
    flow().await;
    let answers: Vec<String> = [a.recv(), b.recv()].concat();
    assert_eq!(answers.len(), 10, "every event answered: {answers:?}");
    let refused: Vec<&String> = answers.iter().filter(|p| p.contains("rate_limited")).collect();
    assert_eq!(handled.load(std::sync::atomic::Ordering::Relaxed), 6, "6 a minute for ann, wherever she is");
    assert_eq!(refused.len(), 4, "{answers:?}");
    assert!(refused.iter().all(|p| p.contains("retryAfterMs")));
    // Another user has a budget of their own.
    let c = nodes[1].client();
    connect_as(&c, "bob").await.unwrap();
    c.send("230[\"chat\",1]");
    flow().await;
    assert!(c.recv().iter().any(|p| p.contains("\"ok\"")));
}

mod recovery;
