//! The cluster-faults campaign (issue 22): two nodes on a real
//! `redis-server` of the test's own, a member of a room on node `a` (which
//! reaches Redis through a TCP proxy, `common::proxy`) and a sender on node
//! `b` emitting a numbered message to the room every 10 ms, while a fault
//! is injected and healed, `ROUNDS` times:
//!
//! * Redis paused: `CLIENT PAUSE <ms> ALL`, and `CLIENT PAUSE <ms> WRITE`;
//! * Redis killed (SIGKILL, writers paused first: Redis's own window, see
//!   `RedisServer::crash`) and restarted on the same port;
//! * latency, a stall (nothing forwarded, connections kept) and a cut
//!   (connections closed) between `a` and Redis;
//! * node `a` frozen (its process SIGSTOPped, then SIGCONTed): `a` runs in
//!   a process of its own for this one (this binary run again).
//!
//! Each asserts what the issue demands: every message is delivered once,
//! in order, or counted by the sender's bus as dropped (refused when its
//! outage buffer was full), unconfirmed (sent after its wait for the
//! subscribers gave up) or missed (by a node that was resubscribing), or,
//! for a cut or stalled link, lost within the bus's documented bound (the
//! gap until the member's node resubscribes); requests made during the fault (`fetch_sockets`,
//! `server_side_emit_with_ack`, `server_count`) end within their timeout
//! plus the bus's bound on a Redis command (partial results, not a hang);
//! presence converges (each node lists both users again).
//!
//! The tests are the campaign, run by `make cluster-faults` (many rounds,
//! figures) and `make cluster-faults-smoke` (one round each, in `make
//! test`): `TIDEWIRE_FAULT_ROUNDS` sets the rounds, and each test appends
//! its figures as a JSON line to `TIDEWIRE_FAULT_FIGURES` when set.

#![cfg(all(feature = "redis", feature = "client", feature = "server"))]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::RedisServer;
use common::cluster::{NodeProcess, Peer, REQUEST_TIMEOUT, ROOM, STEP, within};
use common::proxy::Proxy;
use serde_json::json;
use tidewire::hub::Hub;
use tidewire::protocol::socketio::Payload;

/// How much longer than the request timeout a request may take during a
/// fault: counting the nodes is one Redis command, which the bus bounds
/// (the redis crate's response timeout, 500 ms, after a connection attempt
/// of at most 1 s).
const REQUEST_SLACK: Duration = Duration::from_millis(2000);
/// Every message of the sender.
const SEND_EVERY: Duration = Duration::from_millis(10);
/// Messages of the sender that may be on their way when a fault starts (100 ms).
const IN_FLIGHT: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    PauseAll,
    PauseWrite,
    RedisKilled,
    Latency,
    Stall,
    Cut,
    NodeFrozen,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::PauseAll => "CLIENT PAUSE ALL 1500 ms",
            Fault::PauseWrite => "CLIENT PAUSE WRITE 1500 ms",
            Fault::RedisKilled => "Redis SIGKILL, restarted 1.5 s later",
            Fault::Latency => "proxy a<->Redis: +100 ms latency for 2 s",
            Fault::Stall => "proxy a<->Redis: stalled 2 s",
            Fault::Cut => "proxy a<->Redis: connections cut",
            Fault::NodeFrozen => "node a SIGSTOP 3 s, SIGCONT",
        }
    }
}

fn rounds() -> usize {
    std::env::var("TIDEWIRE_FAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// Node `a`: in this process, or in its own (to be frozen).
enum MemberNode {
    Here(Box<common::cluster::Node>),
    Process(NodeProcess),
}

impl MemberNode {
    fn url(&self) -> &str {
        match self {
            MemberNode::Here(n) => &n.url,
            MemberNode::Process(p) => &p.url,
        }
    }
    /// Subscriber connections its bus made (`None` in another process).
    fn subscriptions(&self) -> Option<u64> {
        match self {
            MemberNode::Here(n) => Some(n.bus.connections_made()),
            MemberNode::Process(_) => None,
        }
    }
}

/// The helper test a [`NodeProcess`] runs.
#[test]
#[ignore = "node a's process in the frozen-node fault; serves only when that test starts it"]
fn node_process() {
    common::cluster::serve_node_process();
}

/// One request made during a fault: how long it took and what it said.
#[derive(Debug, serde::Serialize)]
struct Asked {
    what: &'static str,
    ms: u128,
    complete: bool,
    detail: String,
}

/// Asks `hub` for sockets, server-side acks and the node count, each
/// timed.
async fn ask_during_fault(hub: &Hub) -> Vec<Asked> {
    let ns = hub.of("/");
    let mut out = Vec::new();
    let started = tokio::time::Instant::now();
    let fetched = ns.broadcast().fetch_sockets().await;
    out.push(Asked {
        what: "fetch_sockets",
        ms: started.elapsed().as_millis(),
        complete: fetched.replies.complete(),
        detail: format!("{} sockets, {:?}", fetched.len(), fetched.replies),
    });
    let started = tokio::time::Instant::now();
    let acked = ns.server_side_emit_with_ack("load?", &Payload::default(), None).await;
    out.push(Asked {
        what: "server_side_emit_with_ack",
        ms: started.elapsed().as_millis(),
        complete: acked.replies.complete(),
        detail: format!("{:?}, {:?}", acked.value, acked.replies),
    });
    let started = tokio::time::Instant::now();
    let count = ns.server_count().await;
    out.push(Asked {
        what: "server_count",
        ms: started.elapsed().as_millis(),
        complete: count.is_ok(),
        detail: format!("{count:?}"),
    });
    out
}

/// What one round measured.
#[derive(Debug, Default, serde::Serialize)]
struct Round {
    /// From healing to the first message sent after it reaching the member.
    delivery_ms: Option<u128>,
    /// From healing to a complete `fetch_sockets`.
    requests_ms: Option<u128>,
    /// From healing to both nodes listing both users.
    presence_ms: Option<u128>,
    /// The users `b` listed in the room at the end of the fault.
    presence_during: usize,
    /// Subscriber connections `a` made during the round (`None`: in
    /// another process): each one a gap in its subscription.
    resubscribed: Option<u64>,
    /// The requests `b` made during the fault.
    asked: Vec<Asked>,
}

async fn campaign(fault: Fault) {
    let rounds = rounds();
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let proxy = Proxy::start(port).await;
    let a = match fault {
        Fault::NodeFrozen => {
            // Blocking until it serves: off the runtime, whose tasks carry its Redis traffic.
            let url = proxy.url();
            let started = tokio::task::spawn_blocking(move || NodeProcess::start("node_process", &url));
            MemberNode::Process(started.await.unwrap())
        }
        _ => MemberNode::Here(Box::new(common::cluster::Node::start(&proxy.url()).await)),
    };
    let b = common::cluster::Node::start(&redis.url()).await;
    let b_hub = b.server.hub().clone();
    let ns = b_hub.of("/");
    let two_nodes = within(STEP, async || ns.server_count().await.ok() == Some(2)).await;
    assert!(two_nodes.is_some(), "two nodes");
    let pa = Peer::connect(a.url(), "ann").await;
    let pb = Peer::connect(&b.url, "bob").await;
    pa.join(ROOM).await;
    pb.join(ROOM).await;
    let converged = async || ns.presence_count(ROOM).users == 2 && pa.present_users(ROOM).await == Some(2);
    assert!(within(STEP, converged).await.is_some(), "presence before the faults");

    // The sender: b emits a numbered message to the room every 10 ms.
    let sent = Arc::new(AtomicU64::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (hub, sent, sending) = (b_hub.clone(), sent.clone(), sending.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SEND_EVERY);
            for n in 0u64.. {
                tick.tick().await;
                if !sending.load(Ordering::Relaxed) {
                    return;
                }
                hub.to(ROOM).emit("news", Payload::json(vec![json!(n)]));
                sent.store(n + 1, Ordering::Relaxed);
            }
        })
    };
    assert!(within(STEP, async || !pa.received().is_empty()).await.is_some(), "news flowing");

    let mut report = Vec::new();
    let mut windows = Vec::new();
    for round in 0..rounds {
        // A different phase against the sender's ticks each round.
        tokio::time::sleep(Duration::from_millis(300 + 37 * (round as u64 % 10))).await;
        let during = {
            let hub = b_hub.clone();
            async move {
                // Into the fault a little, then ask.
                tokio::time::sleep(Duration::from_millis(300)).await;
                ask_during_fault(&hub).await
            }
        };
        let fault_from = sent.load(Ordering::Relaxed);
        let subscriptions_before = a.subscriptions();
        let asked = match fault {
            Fault::PauseAll | Fault::PauseWrite => {
                let ends = tokio::time::Instant::now() + Duration::from_millis(1500);
                redis.pause(1500, if fault == Fault::PauseAll { "ALL" } else { "WRITE" });
                let asked = during.await;
                tokio::time::sleep_until(ends).await;
                asked
            }
            Fault::RedisKilled => {
                let mut crashing = redis;
                tokio::task::spawn_blocking(move || crashing.crash()).await.unwrap();
                let asked = during.await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                redis = tokio::task::spawn_blocking(move || RedisServer::start_on(port)).await.unwrap();
                asked
            }
            Fault::Latency => {
                proxy.delay(Duration::from_millis(100));
                let asked = during.await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.delay(Duration::ZERO);
                asked
            }
            Fault::Stall => {
                proxy.stall(true);
                let asked = during.await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.stall(false);
                asked
            }
            Fault::Cut => {
                proxy.cut();
                during.await
            }
            Fault::NodeFrozen => {
                let MemberNode::Process(p) = &a else { unreachable!() };
                p.freeze();
                let asked = during.await;
                tokio::time::sleep(Duration::from_millis(3000)).await;
                p.thaw();
                asked
            }
        };
        let presence_during = ns.presence_count(ROOM).users;
        // Healed: how long until each part works again.
        let healed_at = sent.load(Ordering::Relaxed);
        let resumed_at = AtomicU64::new(u64::MAX);
        let (delivery, requests, presence) = tokio::join!(
            within(STEP, async || {
                let back = pa.received().iter().any(|n| *n >= healed_at);
                if back {
                    resumed_at.store(sent.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                back
            }),
            within(STEP, async || ns.broadcast().fetch_sockets().await.replies.complete()),
            within(STEP, converged),
        );
        // Messages sent in the 100 ms before the fault may be in flight on
        // the connection it breaks.
        windows.push(fault_from.saturating_sub(IN_FLIGHT)..resumed_at.load(Ordering::Relaxed));
        let measured = Round {
            delivery_ms: delivery.map(|d| d.as_millis()),
            requests_ms: requests.map(|d| d.as_millis()),
            presence_ms: presence.map(|d| d.as_millis()),
            presence_during,
            resubscribed: a.subscriptions().zip(subscriptions_before).map(|(now, before)| now - before),
            asked,
        };
        eprintln!("{} round {round}: {measured:?}", fault.name());
        report.push(measured);
    }
    sending.store(false, Ordering::Relaxed);
    sender.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(b.bus.flush(STEP).await, "b's bus flushed");
    let _ = within(STEP, async || pa.received().contains(&(sent - 1))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Delivered once in order, or counted.
    let got = pa.received();
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = got.iter().copied().filter(|n| seen.insert(*n)).collect();
    let duplicated = got.len() - firsts.len();
    let missing: Vec<u64> = (0..sent).filter(|n| !seen.contains(n)).collect();
    let in_order = firsts.windows(2).all(|w| w[0] < w[1]);
    let stats = b_hub.cluster_stats().unwrap();
    let refused = stats.publish_failed.load(Ordering::Relaxed);
    let counted = b.bus.dropped_outbound() + b.bus.unconfirmed_outbound() + b.bus.missed_outbound() + refused;
    // A node whose subscription is lost misses what is published to it
    // until a new one gets through (the bus's documented bound): when its
    // connection is cut, what was on its way in it, which Redis counted as
    // delivered (the rest the publisher counts as missed); when it goes
    // silent, everything until the probes give up, Redis still counting
    // the silent one. Those losses must lie between the fault and the
    // member hearing again, each such gap shown by a new subscriber
    // connection of its bus.
    let gaps_allowed = matches!(fault, Fault::Stall | Fault::Cut);
    let (in_gaps, outside): (Vec<u64>, Vec<u64>) =
        missing.iter().partition(|n| gaps_allowed && windows.iter().any(|w| w.contains(*n)));
    let figures = json!({
        "fault": fault.name(),
        "rounds": rounds,
        "sent": sent,
        "delivered": firsts.len(),
        "missing": missing.len(),
        "lost_in_subscription_gaps": in_gaps.len(),
        "duplicated": duplicated,
        "in_order": in_order,
        "dropped_outbound": b.bus.dropped_outbound(),
        "unconfirmed_outbound": b.bus.unconfirmed_outbound(),
        "missed_outbound": b.bus.missed_outbound(),
        "publish_failed": refused,
        "rounds_detail": report,
    });
    eprintln!("cluster-faults: {figures}");
    if let Ok(path) = std::env::var("TIDEWIRE_FAULT_FIGURES") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(f, "{figures}").unwrap();
    }
    let first_missing: Vec<&u64> = outside.iter().take(20).collect();
    assert!(
        outside.len() as u64 <= counted,
        "{} of {sent} messages neither delivered nor counted (counted {counted}) nor in a subscription gap; \
         first: {first_missing:?}; fault windows: {windows:?}",
        outside.len()
    );
    assert!(in_order, "delivered in publication order: {got:?}");
    let mut once = HashSet::new();
    let twice: Vec<u64> = got.iter().copied().filter(|n| !once.insert(*n)).collect();
    let at: Vec<usize> = twice.iter().filter_map(|n| got.iter().rposition(|g| g == n)).collect();
    assert_eq!(duplicated, 0, "each message once: {twice:?} again at positions {at:?} of {}", got.len());
    for (i, round) in report.iter().enumerate() {
        for asked in &round.asked {
            let bound = REQUEST_TIMEOUT + REQUEST_SLACK;
            assert!(asked.ms <= bound.as_millis(), "round {i}: {} took {} ms: {}", asked.what, asked.ms, asked.detail);
        }
        assert!(round.delivery_ms.is_some(), "round {i}: delivery resumed");
        assert!(round.requests_ms.is_some(), "round {i}: requests complete again");
        assert!(round.presence_ms.is_some(), "round {i}: presence converged");
        if gaps_allowed {
            assert!(round.resubscribed.is_some_and(|n| n >= 1), "round {i}: a's gap is visible: {round:?}");
        }
    }
    if fault == Fault::NodeFrozen {
        // The frozen node cannot answer: partial results, in time.
        for (i, round) in report.iter().enumerate() {
            let fetch = &round.asked[0];
            assert!(!fetch.complete, "round {i}: {fetch:?}");
            // Silent for more than three heartbeats: its user left b's list.
            assert_eq!(round.presence_during, 1, "round {i}: ann left while a was frozen");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn redis_paused_all() {
    campaign(Fault::PauseAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn redis_paused_write() {
    campaign(Fault::PauseWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn redis_killed_and_restarted() {
    campaign(Fault::RedisKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn latency_between_a_node_and_redis() {
    campaign(Fault::Latency).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn stall_between_a_node_and_redis() {
    campaign(Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn connections_cut_between_a_node_and_redis() {
    campaign(Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the cluster-faults campaign: make cluster-faults (or cluster-faults-smoke)"]
async fn a_node_frozen_and_resumed() {
    campaign(Fault::NodeFrozen).await;
}
