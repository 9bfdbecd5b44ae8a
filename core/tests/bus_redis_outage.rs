//! No message lost across nodes after a short Redis outage: a `redis-server`
//! of the test's own (free loopback port) is killed with SIGKILL under
//! steady traffic and restarted on the same port, several times. Whatever a
//! node accepted (held during the outage, or published right after the
//! restart) must reach every node that was subscribed before, exactly once
//! and in order, even when that node's subscriber reconnects later than the
//! publisher's connection does. (Redis's own window, a message it answered
//! and had not yet written to the subscribers when killed, is closed by
//! pausing its writers before the kill: see `RedisServer::crash`.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::RedisServer;
use tidewire::bus::{Bus, BusMessage, RedisBus, RedisBusConfig};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);
const CHANNEL: &str = "socket.io#/#room#";

/// The publisher's node: reconnects quickly.
fn quick() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe(Duration::from_millis(200), Duration::from_millis(500))
}

/// The member's node: its subscriber may come back well after the
/// publisher's connection (its backoff grew during the outage), as on a
/// real cluster whose nodes reconnect at different moments.
fn slow() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(100), Duration::from_millis(1600))
        .probe(Duration::from_millis(500), Duration::from_millis(1000))
}

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Collects the sequence numbers `rx` receives on [`CHANNEL`].
fn collect(mut rx: mpsc::Receiver<BusMessage>) -> Arc<Mutex<Vec<u64>>> {
    let got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if m.channel == CHANNEL {
                let n = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                sink.lock().unwrap().push(n);
            }
        }
    });
    got
}

/// Restarts Redis on `port` without blocking the runtime.
async fn restart(port: u16) -> RedisServer {
    tokio::task::spawn_blocking(move || RedisServer::start_on(port)).await.unwrap()
}

/// Waits until `got` holds `last` (or `STEP` passes), then a little more
/// for stragglers and duplicates.
async fn settle(got: &Mutex<Vec<u64>>, last: Option<u64>) {
    let deadline = tokio::time::Instant::now() + STEP;
    while let Some(last) = last
        && !got.lock().unwrap().contains(&last)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// What went wrong between `accepted` and `got`: missing, duplicated, out of order.
fn losses(accepted: &[u64], got: &[u64]) -> (usize, usize, bool) {
    let missing = accepted.iter().filter(|n| !got.contains(n)).count();
    let mut seen = std::collections::HashSet::new();
    let duplicated = got.iter().filter(|n| !seen.insert(**n)).count();
    let ordered = got.windows(2).all(|w| w[0] < w[1]);
    (missing, duplicated, ordered)
}

/// A member's node `a` and a sender's node `b` on one Redis; `b` publishes
/// every 20 ms; Redis is SIGKILLed and restarted on the same port 1.5 s
/// later, five times. Every accepted message reaches `a` once, in order.
async fn steady_traffic_through_outages(sharded: bool, rounds: usize) {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let (a, a_rx) = RedisBus::connect(&redis.url(), slow().sharded(sharded)).unwrap();
    let (b, _b_rx) = RedisBus::connect(&redis.url(), quick().sharded(sharded)).unwrap();
    // Like cluster nodes: each on its request channel, the member on the room.
    a.subscribe(&channels(&["socket.io-request#/#", CHANNEL])).await.unwrap();
    b.subscribe(&channels(&["socket.io-request#/#"])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    let got = collect(a_rx);

    let b = Arc::new(b);
    let accepted: Arc<Mutex<Vec<u64>>> = Arc::default();
    let publishing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let (b, accepted, publishing) = (b.clone(), accepted.clone(), publishing.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0u64.. {
                tick.tick().await;
                if !publishing.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if b.publish(CHANNEL, Bytes::from(n.to_string())).is_ok() {
                    accepted.lock().unwrap().push(n);
                }
            }
        })
    };

    let mut report = Vec::new();
    for round in 0..rounds {
        let from = accepted.lock().unwrap().len();
        let received_from = got.lock().unwrap().len();
        // A different phase against the publisher's ticks each round.
        tokio::time::sleep(Duration::from_millis(500 + 37 * round as u64)).await;
        let at_kill = accepted.lock().unwrap().last().copied();
        let mut crashing = redis;
        tokio::task::spawn_blocking(move || crashing.crash()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis = restart(port).await;
        let at_restart = accepted.lock().unwrap().last().copied();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let last = accepted.lock().unwrap().last().copied();
        settle(&got, last).await;
        // This round's: up to the last message waited for.
        let upto = |n: &&u64| last.is_some_and(|last| **n <= last);
        let sent: Vec<u64> = accepted.lock().unwrap()[from..].iter().filter(upto).copied().collect();
        let received: Vec<u64> = got.lock().unwrap()[received_from..].iter().filter(upto).copied().collect();
        let (missing, duplicated, ordered) = losses(&sent, &received);
        let lost: Vec<u64> = sent.iter().filter(|n| !received.contains(n)).copied().collect();
        report.push(format!(
            "round {round}: {} accepted, {missing} missing, {duplicated} duplicated, in order: {ordered} \
             (last accepted at the kill {at_kill:?}, at the restart {at_restart:?}; missing {lost:?})",
            sent.len()
        ));
    }
    publishing.store(false, std::sync::atomic::Ordering::Relaxed);
    sender.await.unwrap();
    let last = accepted.lock().unwrap().last().copied();
    settle(&got, last).await;

    let accepted = accepted.lock().unwrap().clone();
    let got = got.lock().unwrap().clone();
    let (missing, duplicated, ordered) = losses(&accepted, &got);
    let report = report.join("\n");
    eprintln!(
        "{report}\ntotal: {} accepted, {missing} missing, {duplicated} duplicated; subscriber connections made: {}",
        accepted.len(),
        a.connections_made()
    );
    assert_eq!(b.dropped_outbound(), 0, "the outages fitted in the outbound bound");
    assert_eq!((missing, duplicated), (0, 0), "every accepted message reached a exactly once\n{report}");
    assert!(ordered, "in publication order\n{report}");
    assert_eq!(got, accepted);
    assert_eq!(b.unconfirmed_outbound(), 0, "no message went out before its subscribers were back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_redis_restarts() {
    steady_traffic_through_outages(false, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_redis_restarts_sharded() {
    steady_traffic_through_outages(true, 3).await;
}

/// Nothing was held: the publisher's connection comes back (here through a
/// subscriber count) before the member's subscriber does, and a message is
/// published at once. It waits for the member, then goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_right_after_a_restart_waits_for_the_subscribers() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    // The member reconnects only after 1.5 s of backoff.
    let member = RedisBusConfig::default().backoff(Duration::from_millis(1500), Duration::from_millis(1500));
    let (a, mut a_rx) = RedisBus::connect(&redis.url(), member).unwrap();
    let (b, _b_rx) = RedisBus::connect(&redis.url(), quick()).unwrap();
    a.subscribe(&channels(&[CHANNEL])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    b.publish(CHANNEL, Bytes::from_static(b"before")).unwrap();
    let m = tokio::time::timeout(STEP, a_rx.recv()).await.unwrap().unwrap();
    assert_eq!(m.payload, "before");

    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _redis = restart(port).await;
    // b is back (it can count) while a is not yet.
    let count = tokio::time::timeout(STEP, async {
        loop {
            if let Ok(n) = b.subscriber_count(CHANNEL).await {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(count, 0, "the member has not resubscribed yet");
    b.publish(CHANNEL, Bytes::from_static(b"right after")).unwrap();
    let m = tokio::time::timeout(STEP, a_rx.recv()).await.expect("delivered once a is back").unwrap();
    assert_eq!(m.payload, "right after");
    assert_eq!(b.unconfirmed_outbound(), 0);
}

/// A subscriber that never comes back: the held messages wait at most
/// `resubscribe_wait`, then go out, and are counted as unconfirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_subscribers_is_bounded_and_counted() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let (a, mut a_rx) = RedisBus::connect(&redis.url(), quick()).unwrap();
    let (b, _b_rx) = RedisBus::connect(&redis.url(), quick().resubscribe_wait(Duration::from_millis(800))).unwrap();
    a.subscribe(&channels(&[CHANNEL])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    b.publish(CHANNEL, Bytes::from_static(b"before")).unwrap();
    assert_eq!(tokio::time::timeout(STEP, a_rx.recv()).await.unwrap().unwrap().payload, "before");

    // The member goes away during the outage.
    a.close();
    drop(a);
    redis.kill();
    for i in 0..3u8 {
        b.publish(CHANNEL, Bytes::from(vec![i])).unwrap();
    }
    let _redis = restart(port).await;
    let started = tokio::time::Instant::now();
    assert!(b.flush(STEP).await, "the held messages go out");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "waited for the member: {waited:?}");
    assert!(waited < Duration::from_secs(5), "but not for ever: {waited:?}");
    assert_eq!(b.unconfirmed_outbound(), 3, "each held message reached fewer nodes than before");
    // Later traffic is not held again.
    let started = tokio::time::Instant::now();
    b.publish(CHANNEL, Bytes::from_static(b"later")).unwrap();
    assert!(b.flush(STEP).await);
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// A node that only subscribes (publishes nothing) keeps its subscriber
/// after a restart: its probes get a new command connection instead of
/// failing on the broken one and replacing a healthy subscriber (a window
/// in which messages to it are lost) again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_only_subscribes_keeps_its_subscriber_after_a_restart() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let (a, _a_rx) = RedisBus::connect(&redis.url(), quick()).unwrap();
    a.subscribe(&channels(&[CHANNEL])).await.unwrap();
    assert!(a.wait_connected(STEP).await);
    // A probe or two before the outage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.connections_made(), 1);
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _redis = restart(port).await;
    assert!(a.wait_connected(STEP).await);
    // Several probe periods (200 ms, 500 ms timeout) later: still the one
    // subscriber made after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.connections_made(), 2, "the subscriber was replaced only by the restart");
}
