//! Long-polling and WebSocket upgrades behind a load balancer without
//! sticky sessions: a request for a session another node owns is answered
//! from the owner over the bus (`cluster::forward`), with the errors and
//! bounds of a local request. Over the in-process bus, and over a real
//! `redis-server` (feature `redis`).

#[cfg(feature = "redis")]
mod common;

mod host_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use host_common::{Answer, addr, error_code, send_within, text};
use serde_json::Value;
use tidewire::bus::{Bus, BusMessage, MemoryBus, MemoryNode};
use tidewire::cluster::ClusterConfig;
use tidewire::engine::{Engine, EngineConfig};
use tidewire::hub::{Event, Hub, Socket};
use tidewire::transport::Server;
use tidewire::transport::host::{self, RequestBody};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const PING: Duration = Duration::from_millis(1500);

fn config() -> ClusterConfig {
    ClusterConfig::default().request_timeout(Duration::from_millis(500)).heartbeat_interval(Duration::from_millis(100))
}

fn engine_config() -> EngineConfig {
    EngineConfig::default().ping_interval(PING).ping_timeout(Duration::from_secs(2)).max_payload(10_000)
}

/// A hub whose `echo` event acks its arguments and `shout` broadcasts them.
fn hub() -> Hub {
    let hub = Hub::default();
    let ns = hub.of("/");
    ns.on("echo", |_socket: Socket, event: Event| async move {
        if let Some(ack) = event.ack {
            let _ = ack.send(event.args);
        }
    });
    ns.on("shout", |socket: Socket, event: Event| async move {
        socket.broadcast().emit("shouted", event.args);
    });
    hub
}

struct Node {
    hub: Hub,
    engine: Engine,
}

async fn join(bus: Arc<dyn Bus>, inbound: mpsc::Receiver<BusMessage>) -> Node {
    let hub = hub();
    let engine = hub.engine(engine_config());
    hub.join_cluster(bus, inbound, config()).await.unwrap();
    Node { hub, engine }
}

/// `n` nodes on one in-process bus, each knowing the others.
async fn memory_cluster(n: usize) -> (MemoryBus, Vec<Node>) {
    let (bus, nodes, _members) = memory_cluster_with_members(n).await;
    (bus, nodes)
}

/// [`memory_cluster`], with each node's membership of the bus.
async fn memory_cluster_with_members(n: usize) -> (MemoryBus, Vec<Node>, Vec<Arc<MemoryNode>>) {
    let bus = MemoryBus::new();
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for _ in 0..n {
        let (node, inbound) = bus.node(1024);
        let node = Arc::new(node);
        members.push(node.clone());
        nodes.push(join(node, inbound).await);
    }
    // The heartbeats of the others.
    tokio::time::sleep(Duration::from_millis(250)).await;
    (bus, nodes, members)
}

async fn send(engine: &Engine, req: http::Request<RequestBody>) -> Answer {
    send_within(Duration::from_secs(10), engine, req).await
}

async fn get(node: &Node, query: &str) -> Answer {
    let uri = format!("/socket.io/?EIO=4&transport=polling{query}");
    send(&node.engine, http::Request::get(uri).body(RequestBody::empty()).unwrap()).await
}

async fn post(node: &Node, sid: &str, body: impl Into<RequestBody>) -> Answer {
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    send(&node.engine, http::Request::post(uri).body(body.into()).unwrap()).await
}

/// Opens a polling session on `node`; returns its id.
async fn handshake(node: &Node) -> String {
    let res = get(node, "").await;
    assert_eq!(res.status(), 200, "{}", text(&res));
    let open: Value = serde_json::from_str(&text(&res)[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert!(sid.ends_with(&**node.hub.node_id()), "the id names its node: {sid}");
    sid
}

/// Polls `sid` on `node` until a packet other than a ping arrives
/// (answering pings); returns the packets.
async fn poll_packets(node: &Node, sid: &str) -> Vec<String> {
    loop {
        let res = get(node, &format!("&sid={sid}")).await;
        assert_eq!(res.status(), 200, "{}", text(&res));
        let packets: Vec<String> = text(&res).split('\u{1e}').map(str::to_owned).collect();
        let rest: Vec<String> = packets.iter().filter(|p| *p != "2" && *p != "6").cloned().collect();
        if packets.iter().any(|p| p == "2") {
            assert_eq!(text(&post(node, sid, "3").await), "ok");
        }
        if !rest.is_empty() {
            return rest;
        }
    }
}

/// A socket connected over polling whose requests go round-robin over
/// `nodes`, as behind a balancer without affinity; returns its sid.
async fn connect_round_robin(nodes: &[Node]) -> String {
    let sid = handshake(&nodes[0]).await;
    assert_eq!(text(&post(&nodes[1 % nodes.len()], &sid, "40").await), "ok");
    let connected = poll_packets(&nodes[2 % nodes.len()], &sid).await;
    assert!(connected[0].starts_with("40{\"sid\":"), "{connected:?}");
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_requests_are_answered_from_the_owner_by_any_node() {
    let (_bus, nodes) = memory_cluster(3).await;
    let sid = connect_round_robin(&nodes).await;
    assert_eq!(nodes[0].engine.session_count(), 1);
    assert_eq!(nodes[1].engine.session_count() + nodes[2].engine.session_count(), 0, "the session stays home");
    // Events with acks, in order, each request on the next node.
    for i in 0..12 {
        let node = &nodes[i % 3];
        assert_eq!(text(&post(node, &sid, format!("42{i}[\"echo\",{i}]")).await), "ok");
        let answer = poll_packets(&nodes[(i + 1) % 3], &sid).await;
        assert_eq!(answer, vec![format!("43{i}[{i}]")]);
    }
    let stats = nodes[1].hub.cluster_stats().unwrap();
    assert!(stats.forwarded.load(std::sync::atomic::Ordering::Relaxed) >= 8);
    // Several packets in one POST, answered in one GET.
    assert_eq!(text(&post(&nodes[2], &sid, "42100[\"echo\",\"a\"]\u{1e}42101[\"echo\",\"b\"]").await), "ok");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(poll_packets(&nodes[1], &sid).await);
    }
    assert_eq!(got, ["43100[\"a\"]", "43101[\"b\"]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_get_the_errors_of_local_ones() {
    let (_bus, nodes) = memory_cluster(2).await;
    let sid = connect_round_robin(&nodes).await;
    // A binary body type: 400, the session stays.
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let req = http::Request::post(&uri).header("content-type", "application/octet-stream").body("4x".into()).unwrap();
    assert_eq!(error_code(&send(&nodes[1].engine, req).await), 3);
    // A method other than GET and POST.
    let req = http::Request::put(&uri).body(RequestBody::empty()).unwrap();
    assert_eq!(error_code(&send(&nodes[1].engine, req).await), 3);
    // A packet that does not parse: 400, and the owner closes the session.
    assert_eq!(error_code(&post(&nodes[1], &sid, "x").await), 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(nodes[0].engine.session_count(), 0, "closed on its owner");
    assert_eq!(error_code(&get(&nodes[1], &format!("&sid={sid}")).await), 1, "then unknown from anywhere");
    // An id that names no live node, or names this one: unknown, at once.
    let forged = format!("{}{}", tidewire::engine::new_id(), tidewire::engine::new_id());
    assert_eq!(error_code(&get(&nodes[1], &format!("&sid={forged}")).await), 1);
    let own = format!("{}{}", tidewire::engine::new_id(), nodes[1].hub.node_id());
    assert_eq!(error_code(&post(&nodes[1], &own, "40").await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_payload_is_refused_before_it_travels_and_closes_the_session() {
    let (_bus, nodes) = memory_cluster(2).await;
    let sid = connect_round_robin(&nodes).await;
    let big = format!("4{}", "x".repeat(20_000));
    let res = post(&nodes[1], &sid, big).await;
    assert_eq!(res.status(), 413);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(nodes[0].engine.session_count(), 0, "the owner closed the session, as for a local 413");
    // Nothing over the bound crossed the bus: the largest message is small.
    let stats = nodes[1].hub.cluster_stats().unwrap();
    assert!(stats.forward_failed.load(std::sync::atomic::Ordering::Relaxed) == 0);
    // A chunked body (no length) over the bound: the same.
    let sid = connect_round_robin(&nodes).await;
    let chunks = futures_util::stream::iter(
        (0..30).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1000]))).collect::<Vec<_>>(),
    );
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let req = http::Request::post(uri).body(RequestBody::from_stream(chunks)).unwrap();
    assert_eq!(send(&nodes[1].engine, req).await.status(), 413);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(nodes[0].engine.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_get_is_held_at_most_a_ping_interval() {
    let (_bus, nodes) = memory_cluster(2).await;
    let sid = connect_round_robin(&nodes).await;
    let started = tokio::time::Instant::now();
    let res = get(&nodes[1], &format!("&sid={sid}")).await;
    assert_eq!(res.status(), 200);
    // The ping (or the owner's noop at its deadline), never a hang.
    assert!(["2", "6"].contains(&text(&res)), "{}", text(&res));
    assert!(started.elapsed() < PING + Duration::from_millis(500), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_is_gone_leaves_its_sessions_unknown() {
    let (_bus, mut nodes, members) = memory_cluster_with_members(3).await;
    let sid = connect_round_robin(&nodes).await;
    // A GET waiting on the owner when it goes away ends within a ping
    // interval (the owner's ping, or unknown), never at a long deadline.
    let waiting = {
        let engine = nodes[1].engine.clone();
        let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        tokio::spawn(async move {
            host::handle(&engine, http::Request::get(uri).body(RequestBody::empty()).unwrap(), addr()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The owner leaves: a clean goodbye, then it is off the bus.
    nodes[0].hub.announce_leaving();
    tokio::time::sleep(Duration::from_millis(10)).await;
    members[0].leave();
    drop(nodes.remove(0));
    let started = tokio::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    if res.status() == 400 {
        assert_eq!(serde_json::from_slice::<Value>(res.body()).unwrap()["code"], 1);
    } else {
        assert_eq!(text(&res), "2", "the owner's ping, sent before it went");
    }
    assert!(started.elapsed() < PING, "{:?}", started.elapsed());
    // From then on its sessions are unknown everywhere, at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for node in &nodes {
        let started = tokio::time::Instant::now();
        assert_eq!(error_code(&get(node, &format!("&sid={sid}")).await), 1);
        assert_eq!(error_code(&post(node, &sid, "42[\"echo\"]").await), 1);
        assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_never_answers_fails_at_the_deadline_with_session_unknown() {
    // A node that beats like a Tidewire node but answers nothing.
    let bus = MemoryBus::new();
    let (mute, _mute_inbound) = bus.node(1024);
    let mute = Arc::new(mute);
    let mute_uid = tidewire::engine::new_id();
    let (node, inbound) = bus.node(1024);
    let alive = join(Arc::new(node), inbound).await;
    let beat = {
        let mute = mute.clone();
        let uid = mute_uid.clone();
        tokio::spawn(async move {
            loop {
                let beat = format!(r#"{{"uid":"{uid}"}}"#);
                let _ = mute.publish("socket.io-tidewire#nodes#", Bytes::from(beat));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let sid = format!("{}{mute_uid}", tidewire::engine::new_id());
    let started = tokio::time::Instant::now();
    assert_eq!(error_code(&post(&alive, &sid, "40").await), 1);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(2), "{waited:?}");
    let stats = alive.hub.cluster_stats().unwrap();
    assert_eq!(stats.forward_failed.load(std::sync::atomic::Ordering::Relaxed), 1);
    beat.abort();
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message other than a ping, answering the pings.
async fn ws_next(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("timed out") {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next text message other than a ping.
async fn ws_text(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_on_another_node_is_relayed_to_the_owner() {
    let (_bus, nodes) = memory_cluster(2).await;
    let sid = connect_round_robin(&nodes).await;
    let server = Server::builder().mount("/socket.io/", nodes[1].engine.clone()).bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "3probe");
    // The pending poll (on any node) gets its noop; then the switch.
    let noop = get(&nodes[0], &format!("&sid={sid}")).await;
    assert_eq!(text(&noop), "6");
    ws.send(Message::text("5")).await.unwrap();
    // Events and acks over the relayed WebSocket, in order; binary too.
    for i in 0..20 {
        ws.send(Message::text(format!("42{i}[\"echo\",{i}]"))).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(ws_text(&mut ws).await);
    }
    assert_eq!(got, (0..20).map(|i| format!("43{i}[{i}]")).collect::<Vec<_>>());
    ws.send(Message::text("451-77[\"echo\",{\"_placeholder\":true,\"num\":0}]")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "461-77[{\"_placeholder\":true,\"num\":0}]");
    let Message::Binary(bin) = ws_next(&mut ws).await else { panic!("binary expected") };
    assert_eq!(&bin[..], [1, 2, 3]);
    // The session is on the WebSocket now: polling it is refused.
    assert_eq!(error_code(&get(&nodes[0], &format!("&sid={sid}")).await), 3);
    // The pings of the owner arrive over the relay and the session lives
    // past its ping timeout when they are answered.
    tokio::time::sleep(PING * 2).await;
    ws.send(Message::text("42100[\"echo\",\"still\"]")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "43100[\"still\"]");
    // The client closes: the owner's session closes.
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(nodes[0].engine.session_count(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_relays_no_new_websocket_and_the_owner_upgrades_it() {
    let (_bus, nodes) = memory_cluster(2).await;
    let sid = connect_round_robin(&nodes).await;
    let servers = [
        Server::builder().mount("/socket.io/", nodes[0].engine.clone()).bind("127.0.0.1:0").await.unwrap(),
        Server::builder().mount("/socket.io/", nodes[1].engine.clone()).bind("127.0.0.1:0").await.unwrap(),
    ];
    let url = |i: usize| format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}", servers[i].local_addr());
    // Node 1 drains (it has no client of its own): a relay through it would
    // end with it, so the upgrade is refused with the 503 a balancer
    // retries on another node.
    let report = nodes[1].hub.drain(tidewire::hub::DrainOptions::default()).await;
    assert_eq!(report.connections, 0);
    match tokio_tungstenite::connect_async(url(1)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 503);
            let body: Value = serde_json::from_slice(res.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["code"], "server_shutting_down");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    // Polling through it still reaches the owner meanwhile.
    assert_eq!(text(&post(&nodes[1], &sid, "42[\"shout\",1]").await), "ok");
    // The retry on the owner upgrades.
    let (mut ws, _) = tokio_tungstenite::connect_async(url(0)).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("421[\"echo\",\"up\"]")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "431[\"up\"]");
    for s in servers {
        s.shutdown().await;
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use common::RedisServer;
    use tidewire::bus::{RedisBus, RedisBusConfig};

    async fn redis_cluster(redis: &RedisServer, n: usize) -> (Vec<Node>, Vec<Arc<RedisBus>>) {
        let mut nodes = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..n {
            let (bus, inbound) = RedisBus::connect(&redis.url(), RedisBusConfig::default()).unwrap();
            let bus = Arc::new(bus);
            assert!(bus.wait_connected(Duration::from_secs(5)).await);
            nodes.push(join(bus.clone(), inbound).await);
            buses.push(bus);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        (nodes, buses)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_redis_polling_goes_round_robin_and_a_dead_owner_is_unknown() {
        let redis = RedisServer::start();
        let (nodes, buses) = redis_cluster(&redis, 3).await;
        let sid = connect_round_robin(&nodes).await;
        for i in 0..9 {
            assert_eq!(text(&post(&nodes[i % 3], &sid, format!("42{i}[\"echo\",{i}]")).await), "ok");
            assert_eq!(poll_packets(&nodes[(i + 2) % 3], &sid).await, vec![format!("43{i}[{i}]")]);
        }
        // A broadcast from a socket of another node reaches this one through
        // its forwarded polls.
        let other = handshake(&nodes[1]).await;
        assert_eq!(text(&post(&nodes[2], &other, "40").await), "ok");
        assert!(poll_packets(&nodes[0], &other).await[0].starts_with("40"));
        assert_eq!(text(&post(&nodes[0], &other, "42[\"shout\",\"hey\"]").await), "ok");
        assert_eq!(poll_packets(&nodes[2], &sid).await, vec!["42[\"shouted\",\"hey\"]".to_owned()]);
        // Over the size bound: refused where it arrived, closed on the owner.
        assert_eq!(post(&nodes[2], &other, format!("4{}", "y".repeat(20_000))).await.status(), 413);
        // The owner of `sid` dies without a word: its bus connection goes
        // and its heartbeats stop; within three of them its sessions are
        // unknown to the others.
        let (mut nodes, buses) = (nodes, buses);
        buses[0].close();
        drop(nodes.remove(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
        for node in &nodes {
            let started = tokio::time::Instant::now();
            assert_eq!(error_code(&get(node, &format!("&sid={sid}")).await), 1);
            assert!(started.elapsed() < Duration::from_millis(200), "at once: {:?}", started.elapsed());
        }
    }
}
