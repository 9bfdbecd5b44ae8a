//! The Redis bus under the faults of the cluster-faults campaign
//! (`cluster_faults.rs`) that a single bus shows on its own: a node that
//! stops running for a while (a process SIGSTOPped, a starved runtime)
//! keeps its subscription and reads what Redis buffered meanwhile.

#![cfg(feature = "redis")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::RedisServer;
use common::proxy::Proxy;
use tidewire::bus::{Bus, RedisBus, RedisBusConfig};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);
const CHANNEL: &str = "socket.io#/#room#";

fn config() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe(Duration::from_millis(200), Duration::from_millis(500))
}

/// A bus node on a runtime of its own, on one thread, which the test can
/// stop dead for a while, as SIGSTOP stops a process.
struct Stoppable {
    bus: Arc<RedisBus>,
    got: Arc<Mutex<Vec<u64>>>,
    freeze: mpsc::UnboundedSender<Duration>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stoppable {
    fn start(url: String) -> Stoppable {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (freeze, mut freezes) = mpsc::unbounded_channel::<Duration>();
        let got: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink = got.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let (bus, mut rx) = RedisBus::connect(&url, config()).unwrap();
                let bus = Arc::new(bus);
                bus.subscribe(&[CHANNEL.to_owned()]).await.unwrap();
                assert!(bus.wait_connected(STEP).await);
                tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        sink.lock().unwrap().push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap());
                    }
                });
                ready_tx.send(bus.clone()).unwrap();
                // Blocking the only thread stops every task of this runtime.
                while let Some(d) = freezes.recv().await {
                    std::thread::sleep(d);
                }
                bus.close();
            });
        });
        let bus = ready_rx.recv_timeout(STEP).expect("the node started");
        Stoppable { bus, got, freeze, thread: Some(thread) }
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.freeze = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A probe of the member's subscription is on its way when the member
/// stops (its link to Redis is slow: 150 ms each way, so one almost always
/// is); when it runs again, the probe's deadline has long passed, but the
/// probe's echo and every message published meanwhile wait in its socket.
/// The subscription is alive: it must be read, not replaced (which drops
/// everything buffered in it, counted by nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_running_for_a_while_keeps_what_redis_buffered() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    proxy.delay(Duration::from_millis(150));
    let member = tokio::task::spawn_blocking({
        let url = proxy.url();
        move || Stoppable::start(url)
    })
    .await
    .unwrap();
    let (sender, _rx) = RedisBus::connect(&redis.url(), config()).unwrap();
    assert!(sender.wait_connected(STEP).await);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for round in 0..3 {
        for _ in 0..100 {
            tick.tick().await;
            sender.publish(CHANNEL, Bytes::from(sent.to_string())).unwrap();
            sent += 1;
        }
        member.freeze.send(Duration::from_millis(1500 + 50 * round)).unwrap();
    }
    assert!(sender.flush(STEP).await);
    let deadline = tokio::time::Instant::now() + STEP;
    while member.got.lock().unwrap().len() < sent as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = member.got.lock().unwrap().clone();
    let missing = (0..sent).filter(|n| !got.contains(n)).count();
    assert_eq!(missing, 0, "{missing} of {sent} lost; subscriber connections: {}", member.bus.connections_made());
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "once each, in order");
    assert_eq!(member.bus.connections_made(), 1, "the subscription was kept");
}

/// The member's connections to Redis are cut while nothing is on its way,
/// and its new ones are held (stalled) for a while before they get
/// through. What the sender published meanwhile reached nobody there:
/// Redis keeps nothing, so it is lost, but the sender, whose own
/// connection was fine, counts each such message as missed once the member
/// is counted again, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_misses_while_it_resubscribes_is_counted_by_the_sender() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let (member, mut member_rx) = RedisBus::connect(&proxy.url(), config()).unwrap();
    member.subscribe(&[CHANNEL.to_owned()]).await.unwrap();
    let (sender, _rx) = RedisBus::connect(&redis.url(), config()).unwrap();
    assert!(member.wait_connected(STEP).await && sender.wait_connected(STEP).await);
    let got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        while let Some(m) = member_rx.recv().await {
            sink.lock().unwrap().push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap());
        }
    });
    let mut sent = 0u64;
    let mut publish = async |n: u64| {
        for _ in 0..n {
            sender.publish(CHANNEL, Bytes::from(sent.to_string())).unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    publish(20).await;
    assert!(sender.flush(STEP).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(got.lock().unwrap().len(), 20, "all before the cut");
    proxy.stall(true);
    proxy.cut();
    let counted = async |n: usize| {
        let deadline = tokio::time::Instant::now() + STEP;
        while sender.subscriber_count(CHANNEL).await.ok() != Some(n) {
            assert!(tokio::time::Instant::now() < deadline, "{n} subscribers counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    counted(0).await;
    // While the member is away, then after it is back.
    publish(15).await;
    proxy.stall(false);
    counted(1).await;
    publish(30).await;
    assert!(sender.flush(STEP).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = got.lock().unwrap().clone();
    let missing = (0..sent).filter(|n| !got.contains(n)).count() as u64;
    assert_eq!(missing, 15, "the member missed what was published while it was away: {got:?}");
    assert_eq!(sender.missed_outbound(), missing, "each message it missed is counted, no other");
    assert_eq!(member.connections_made(), 2, "the gap shows on the member's side");
}
