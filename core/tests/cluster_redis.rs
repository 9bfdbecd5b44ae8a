//! Hubs joined over a real `redis-server` (each test starts its own on a
//! free loopback port), served over loopback and reached by the core's
//! Socket.IO client: the cluster features, and the faults (Redis killed
//! and restarted under traffic, a node going away, Redis down at start).

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::RedisServer;
use serde_json::{Value, json};
use tidewire::bus::{Bus, RedisBus, RedisBusConfig};
use tidewire::client::{Client, ClientConfig, ClientState};
use tidewire::cluster::ClusterConfig;
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, ServerAck, Socket};
use tidewire::protocol::socketio::Payload;

const STEP: Duration = Duration::from_secs(10);

struct Node {
    server: Embedded,
    url: String,
    bus: Arc<RedisBus>,
}

fn fast() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe(Duration::from_millis(200), Duration::from_millis(500))
}

async fn node(redis_url: &str, limits: Option<&str>) -> Node {
    node_with(redis_url, limits, fast()).await
}

async fn node_with(redis_url: &str, limits: Option<&str>, bus_config: RedisBusConfig) -> Node {
    let server = Embedded::new(EmbedOptions { limits: limits.map(str::to_owned), ..EmbedOptions::default() }).unwrap();
    let hub = server.hub().clone();
    let ns = hub.of("/");
    ns.on("join", |s: Socket, ev: Event| async move {
        let room = ev.args.data.first().and_then(Value::as_str).unwrap_or("lobby").to_owned();
        let _ = s.join(room);
        if let Some(ack) = ev.ack {
            let _ = ack.send(Payload::json(vec![json!(true)]));
        }
    });
    ns.on("shout", |s: Socket, ev: Event| async move {
        s.broadcast().emit("shouted", ev.args);
    });
    let counted = ns.clone();
    ns.on_server_event("load?", move |_args: Payload, ack: Option<ServerAck>| {
        let n = counted.socket_count();
        async move {
            if let Some(ack) = ack {
                ack.send(&json!({ "sockets": n }));
            }
        }
    });
    let (bus, inbound) = RedisBus::connect(redis_url, bus_config).unwrap();
    let bus = Arc::new(bus);
    let config =
        ClusterConfig::default().request_timeout(Duration::from_secs(1)).heartbeat_interval(Duration::from_millis(200));
    hub.join_cluster(bus.clone(), inbound, config).await.unwrap();
    let addr = server.listen().await.unwrap();
    Node { server, url: format!("http://{addr}"), bus }
}

/// A connected client and what it received, by event.
struct Peer {
    client: Client,
    got: Arc<Mutex<Vec<(String, Payload)>>>,
}

impl Peer {
    async fn connect(node: &Node) -> Peer {
        let mut config = ClientConfig::new(&node.url);
        config.connect_timeout = STEP;
        let client = Client::connect(config).await.unwrap();
        let got: Arc<Mutex<Vec<(String, Payload)>>> = Arc::default();
        for event in ["news", "all", "tick", "shouted"] {
            let sink = got.clone();
            client.on(event, move |name: &str, args: Payload| sink.lock().unwrap().push((name.to_owned(), args)));
        }
        Peer { client, got }
    }

    fn sid(&self) -> String {
        match self.client.state() {
            ClientState::Connected { sid } => sid,
            other => panic!("not connected: {other:?}"),
        }
    }

    async fn join(&self, room: &str) {
        self.client.emit_with_ack("join", Payload::json(vec![json!(room)]), Some(STEP)).await.unwrap();
    }

    fn received(&self, event: &str) -> Vec<Payload> {
        self.got.lock().unwrap().iter().filter(|(e, _)| e == event).map(|(_, p)| p.clone()).collect()
    }
}

/// Polls `cond` every 20 ms until it holds (or fails after 10 s).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn server_count(node: &Node) -> Option<usize> {
    node.server.hub().of("/").server_count().await.ok()
}

/// Waits until Redis counts `n` subscribers of `room`'s channel.
async fn room_subscribers(node: &Node, room: &str, n: usize) {
    let channel = format!("socket.io#/#{room}#");
    until(&format!("{n} subscribers of {channel}"), async || node.bus.subscriber_count(&channel).await.ok() == Some(n))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_fetches_room_changes_and_server_side_events_over_redis() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis.url(), None).await, node(&redis.url(), None).await);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let (pa, pb) = (Peer::connect(&a).await, Peer::connect(&b).await);
    pb.join("room").await;
    room_subscribers(&a, "room", 1).await;

    // A room's broadcast, with a binary argument, reaches the other node's member.
    let mut news = Payload::json(vec![json!("headline")]);
    news.push_binary(Bytes::from_static(b"\x00\x01\xff"));
    assert_eq!(a.server.hub().to("room").emit("news", news.clone()), 0, "no member on a");
    until("news on b", async || pb.received("news").len() == 1).await;
    assert_eq!(pb.received("news")[0], news);
    assert!(pa.received("news").is_empty());
    a.server.hub().emit("all", Payload::json(vec![json!(1)]));
    until("all on both", async || pa.received("all").len() == 1 && pb.received("all").len() == 1).await;

    // fetch_sockets from a names b and finds its socket.
    let fetched = a.server.hub().of("/").broadcast().fetch_sockets().await;
    assert!(fetched.replies.complete(), "{:?}", fetched.replies);
    assert_eq!(fetched.replies.nodes, vec![b.server.hub().node_id().to_string()]);
    let mut ids: Vec<String> = fetched.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let mut want = vec![pa.sid(), pb.sid()];
    want.sort();
    assert_eq!(ids, want);

    // sockets_join from a makes b's socket join; a broadcast to the new room reaches it.
    a.server.hub().to(pb.sid()).sockets_join(["vip"]);
    until("b's socket in vip", async || b.server.hub().of("/").socket(&pb.sid()).is_some_and(|s| s.in_room("vip")))
        .await;

    // A server-side event answered by b.
    let answers = a.server.hub().of("/").server_side_emit_with_ack("load?", &Payload::default(), None).await;
    assert!(answers.replies.complete());
    assert_eq!(answers.value, vec![json!({"sockets": 1})]);

    // disconnect_sockets from a closes b's socket.
    a.server.hub().to("vip").disconnect_sockets(false);
    until("b's client disconnected", async || !pb.client.is_connected()).await;
    assert!(pa.client.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_right_after_sockets_join_reaches_a_node_new_to_the_room() {
    // b listens to a room's channel once it holds a member; the broadcast
    // that follows a sockets_join at once must not miss it meanwhile.
    let redis = RedisServer::start();
    let (a, b) = (node(&redis.url(), None).await, node(&redis.url(), None).await);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let pb = Peer::connect(&b).await;
    room_subscribers(&a, &pb.sid(), 1).await;
    for round in 0..20 {
        let room = format!("new-{round}");
        a.server.hub().to(pb.sid()).sockets_join([room.clone()]);
        a.server.hub().to(room).emit("news", Payload::json(vec![json!(round)]));
    }
    until("every broadcast on b", async || pb.received("news").len() == 20).await;
    let got: Vec<Value> = pb.received("news").iter().map(|p| p.data[0].clone()).collect();
    assert_eq!(got, (0..20).map(|i| json!(i)).collect::<Vec<_>>(), "in order");
    // b listens to the rooms' own channels now.
    room_subscribers(&a, "new-19", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_before_anything_is_published() {
    let redis = RedisServer::start();
    let limits = r#"{"rateSocket": "5/s:5", "maxViolations": 0}"#;
    let (a, b) = (node(&redis.url(), Some(limits)).await, node(&redis.url(), None).await);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let (pa, pb) = (Peer::connect(&a).await, Peer::connect(&b).await);
    room_subscribers(&a, &pb.sid(), 1).await;
    for i in 0..50 {
        pa.client.emit("shout", Payload::json(vec![json!(i)])).unwrap();
    }
    let stats = a.server.hub().stats();
    until("every shout judged", async || stats.events_in.load(Ordering::Relaxed) == 50).await;
    let refused = stats.rate_limited.load(Ordering::Relaxed) as usize;
    assert!((40..50).contains(&refused), "{refused} refused");
    until("the accepted shouts on b", async || pb.received("shouted").len() == 50 - refused).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pb.received("shouted").len(), 50 - refused, "a refused event never reaches the bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_heals_after_redis_is_killed_and_restarted_under_traffic() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let (a, b) = (node(&redis.url(), None).await, node(&redis.url(), None).await);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let pb = Peer::connect(&b).await;
    pb.join("ticks").await;
    room_subscribers(&a, "ticks", 1).await;

    let hub = a.server.hub().clone();
    let ticker = tokio::spawn(async move {
        for i in 0u64.. {
            hub.to("ticks").emit("tick", Payload::json(vec![json!(i)]));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    until("ticks flowing", async || pb.received("tick").len() >= 20).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pb.received("tick").len();
    let _redis = RedisServer::start_on(port);
    until("ticks flowing again", async || pb.received("tick").len() >= before + 50).await;
    ticker.abort();

    let ticks: Vec<u64> = pb.received("tick").iter().map(|p| p.data[0].as_u64().unwrap()).collect();
    assert!(ticks.windows(2).all(|w| w[0] <= w[1]), "in publication order: {ticks:?}");
    assert!(b.bus.connections_made() >= 2, "b's subscriber reconnected");
    until("two nodes again", async || server_count(&a).await == Some(2)).await;
    assert_eq!(a.bus.dropped_outbound(), 0, "the outage fitted in the outbound bound");
}

/// Issue 14: a room's member on node a, a sender on node b emitting to the
/// room every 20 ms; Redis is SIGKILLed and restarted on the same port
/// 1.5 s later, three times, and a's subscriber comes back later than b's
/// connection (its backoff grew longer). Every message reaches the member,
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_member_gets_every_message_from_another_node_across_redis_restarts() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let slow = RedisBusConfig::default()
        .backoff(Duration::from_millis(100), Duration::from_millis(1600))
        .probe(Duration::from_millis(500), Duration::from_millis(1000));
    let (a, b) = (node_with(&redis.url(), None, slow).await, node(&redis.url(), None).await);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let pa = Peer::connect(&a).await;
    pa.join("chat").await;
    room_subscribers(&b, "chat", 1).await;

    let hub = b.server.hub().clone();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for i in 0u64.. {
                tick.tick().await;
                hub.to("chat").emit("news", Payload::json(vec![json!(i)]));
                sent.store(i + 1, Ordering::Relaxed);
            }
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Writers paused first: see `RedisServer::crash` (Redis's own window).
        let mut crashing = redis;
        tokio::task::spawn_blocking(move || crashing.crash()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis = tokio::task::spawn_blocking(move || RedisServer::start_on(port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    sender.abort();
    // Ended, not only told to: on the other worker thread it may be between
    // an emit and its count (it stops at its next await).
    let _ = sender.await;
    let sent = sent.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + STEP;
    while (pa.received("news").len() as u64) < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got: Vec<u64> = pa.received("news").iter().map(|p| p.data[0].as_u64().unwrap()).collect();
    let missing = (0..sent).filter(|i| !got.contains(i)).count();
    assert_eq!(missing, 0, "{missing} of {sent} messages never reached a");
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "every message once, in order");
    let stats = b.server.hub().cluster_stats().unwrap();
    assert_eq!(stats.publish_failed.load(Ordering::Relaxed), 0);
    assert_eq!(b.bus.unconfirmed_outbound(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_leaves_the_count_and_answers_stay_complete() {
    let redis = RedisServer::start();
    let (a, b, c) = (node(&redis.url(), None).await, node(&redis.url(), None).await, node(&redis.url(), None).await);
    until("three nodes", async || server_count(&a).await == Some(3)).await;
    let _pb = Peer::connect(&b).await;
    c.server.close().await;
    c.bus.close();
    drop(c);
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let started = std::time::Instant::now();
    let fetched = a.server.hub().of("/").broadcast().fetch_sockets().await;
    assert!(fetched.replies.complete(), "{:?}", fetched.replies);
    assert_eq!(fetched.len(), 1);
    assert!(started.elapsed() < Duration::from_millis(900), "no wait for a node that left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_retried_and_the_node_serves_meanwhile() {
    let port = RedisServer::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let a = node(&url, None).await;
    assert!(!a.bus.wait_connected(Duration::from_millis(200)).await);
    assert!(a.server.hub().of("/").server_count().await.is_err(), "no count without Redis: an error, not a guess");
    let pa = Peer::connect(&a).await;
    a.server.hub().emit("all", Payload::json(vec![json!("alone")]));
    until("a local broadcast", async || pa.received("all").len() == 1).await;

    let _redis = RedisServer::start_on(port);
    assert!(a.bus.wait_connected(STEP).await);
    let b = node(&url, None).await;
    until("two nodes", async || server_count(&a).await == Some(2)).await;
    let pb = Peer::connect(&b).await;
    room_subscribers(&a, &pb.sid(), 1).await;
    a.server.hub().emit("all", Payload::json(vec![json!("together")]));
    until("b hears a", async || pb.received("all").len() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_counts_subscribers_over_its_nodes() {
    let cluster = common::RedisCluster::start(3);
    // Each node connects through a different seed, so their subscriptions
    // live on different cluster nodes.
    let mut nodes = Vec::new();
    for i in 0..3 {
        let server = Embedded::new(EmbedOptions::default()).unwrap();
        let hub = server.hub().clone();
        let seeds = [cluster.url(i), cluster.url((i + 1) % 3)];
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let (bus, inbound) = RedisBus::connect_cluster(&seeds, fast()).unwrap();
        let bus = Arc::new(bus);
        hub.join_cluster(bus.clone(), inbound, ClusterConfig::default().request_timeout(Duration::from_secs(1)))
            .await
            .unwrap();
        assert!(bus.wait_connected(STEP).await);
        let addr = server.listen().await.unwrap();
        nodes.push(Node { server, url: format!("http://{addr}"), bus });
    }
    until("three nodes counted over the cluster", async || server_count(&nodes[0]).await == Some(3)).await;
    let single = RedisBus::connect(&cluster.url(0), fast()).unwrap().0;
    let one_node = single.subscriber_count("socket.io-request#/#").await.unwrap();
    assert!(one_node < 3, "a single node of the cluster sees only its own subscribers ({one_node})");

    // Broadcasts and requests work across cluster nodes.
    let pc = Peer::connect(&nodes[2]).await;
    until("c's room subscribed", async || {
        nodes[0].bus.subscriber_count(&format!("socket.io#/#{}#", pc.sid())).await.ok() == Some(1)
    })
    .await;
    nodes[0].server.hub().to(pc.sid()).emit("news", Payload::json(vec![json!("via the cluster")]));
    until("c hears a", async || pc.received("news").len() == 1).await;
    let fetched = nodes[1].server.hub().of("/").broadcast().fetch_sockets().await;
    assert!(fetched.replies.complete() && fetched.replies.expected == 2, "{:?}", fetched.replies);
    assert_eq!(fetched.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![pc.sid()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cap_holds_across_nodes_over_redis() {
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let server = Embedded::new(EmbedOptions::default()).unwrap();
        let hub = server.hub().clone();
        hub.of("/").use_middleware(|h: Arc<tidewire::hub::Handshake>| async move {
            let user = h.auth["user"].as_str().unwrap_or("anon").to_owned();
            Ok(tidewire::hub::Admission::user(user))
        });
        let (bus, inbound) = RedisBus::connect(&redis.url(), fast()).unwrap();
        let bus = Arc::new(bus);
        let config = ClusterConfig::default().connection_caps(Some(2), None);
        hub.join_cluster(bus.clone(), inbound, config).await.unwrap();
        let addr = server.listen().await.unwrap();
        nodes.push(Node { server, url: format!("http://{addr}"), bus });
    }
    let connect = |node: &Node, user: &str| {
        let mut config = ClientConfig::new(&node.url);
        config.auth = Some(json!({ "user": user }));
        config.connect_timeout = STEP;
        Client::connect(config)
    };
    let first = connect(&nodes[0], "ann").await.unwrap();
    let _second = connect(&nodes[1], "ann").await.unwrap();
    let refused = connect(&nodes[0], "ann").await;
    assert!(refused.is_err(), "a third connection of ann, on either node, is refused");
    assert!(connect(&nodes[1], "ann").await.is_err());
    let _bob = connect(&nodes[1], "bob").await.expect("bob is not capped by ann");
    first.disconnect();
    until("ann's unit back", async || connect(&nodes[1], "ann").await.is_ok()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_rate_holds_across_nodes_over_redis() {
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let server = Embedded::new(EmbedOptions::default()).unwrap();
        let hub = server.hub().clone();
        let ns = hub.of("/");
        ns.use_middleware(|h: Arc<tidewire::hub::Handshake>| async move {
            Ok(tidewire::hub::Admission::user(h.auth["user"].as_str().unwrap_or("anon").to_owned()))
        });
        ns.on("chat", |_s: Socket, ev: Event| async move {
            if let Some(ack) = ev.ack {
                let _ = ack.send(Payload::json(vec![json!("ok")]));
            }
        });
        let (bus, inbound) = RedisBus::connect(&redis.url(), fast()).unwrap();
        let bus = Arc::new(bus);
        let rate = tidewire::limits::Rate::per(Duration::from_secs(60), 4);
        hub.join_cluster(bus.clone(), inbound, ClusterConfig::default().user_rate(Some(rate))).await.unwrap();
        let addr = server.listen().await.unwrap();
        nodes.push(Node { server, url: format!("http://{addr}"), bus });
    }
    let mut clients = Vec::new();
    for node in &nodes {
        let mut config = ClientConfig::new(&node.url);
        config.auth = Some(json!({ "user": "ann" }));
        config.connect_timeout = STEP;
        clients.push(Client::connect(config).await.unwrap());
    }
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..3 {
        for c in &clients {
            let answer = c.emit_with_ack("chat", Payload::json(vec![json!(i)]), Some(STEP)).await.unwrap();
            match &answer.data[0] {
                Value::String(s) if s == "ok" => ok += 1,
                other => {
                    assert_eq!(other["code"], "rate_limited", "{other}");
                    assert!(other["retryAfterMs"].as_u64().is_some());
                    limited += 1;
                }
            }
        }
    }
    assert_eq!((ok, limited), (4, 2), "4 a minute for ann across both nodes");
}
