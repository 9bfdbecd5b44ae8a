//! `RedisBus` against a real `redis-server` that each test starts on a free
//! loopback port (and kills and restarts, for the fault tests).

mod common;

use std::time::Duration;

use common::RedisServer;

use bytes::Bytes;
use tidewire::bus::{Bus, BusError, BusMessage, RedisBus, RedisBusConfig};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);

fn fast() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe(Duration::from_millis(200), Duration::from_millis(500))
}

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

async fn next(rx: &mut mpsc::Receiver<BusMessage>) -> BusMessage {
    tokio::time::timeout(STEP, rx.recv()).await.expect("a message in time").expect("the bus is open")
}

#[tokio::test]
async fn two_nodes_publish_subscribe_and_count() {
    let redis = RedisServer::start();
    let (a, mut a_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    a.subscribe(&channels(&["x"])).await.unwrap();
    b.subscribe(&channels(&["x", "y"])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    assert_eq!(a.subscriber_count("x").await.unwrap(), 2);
    assert_eq!(a.subscriber_count("y").await.unwrap(), 1);
    for i in 0..100u8 {
        a.publish("x", Bytes::from(vec![i])).unwrap();
    }
    // Order holds per publisher: everything from `a` arrives in order.
    for rx in [&mut a_rx, &mut b_rx] {
        for i in 0..100u8 {
            let m = next(rx).await;
            assert_eq!((m.channel.as_str(), &m.payload[..]), ("x", &[i][..]), "in order");
        }
    }
    b.publish("y", Bytes::from_static(b"for b")).unwrap();
    assert_eq!(next(&mut b_rx).await.payload, "for b");
    b.unsubscribe(&channels(&["x"])).await.unwrap();
    assert_eq!(a.subscriber_count("x").await.unwrap(), 1);
}

#[tokio::test]
async fn redis_down_at_start_then_up() {
    let port = RedisServer::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (a, mut a_rx) = RedisBus::connect(&url, fast()).unwrap();
    a.subscribe(&channels(&["late"])).await.unwrap();
    // No server: a clear error where an answer is needed, no panic.
    assert!(matches!(a.subscriber_count("late").await, Err(BusError::Backend(_))));
    assert!(!a.wait_connected(Duration::from_millis(300)).await);
    // Published meanwhile: kept, and sent once Redis is up.
    a.publish("late", Bytes::from_static(b"queued")).unwrap();
    let _redis = RedisServer::start_on(port);
    assert!(a.wait_connected(STEP).await, "connects once Redis is up");
    a.publish("late", Bytes::from_static(b"live")).unwrap();
    // The queued message may have gone out before the subscription was
    // made again (pub/sub keeps nothing); the live one always arrives.
    let mut got = vec![next(&mut a_rx).await.payload];
    if got[0] != "live" {
        got.push(next(&mut a_rx).await.payload);
    }
    assert_eq!(got.last().unwrap(), &Bytes::from_static(b"live"));
}

#[tokio::test]
async fn redis_killed_and_restarted_under_traffic() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let config = fast().outbound_bound(50);
    let (a, _a_rx) = RedisBus::connect(&redis.url(), config.clone()).unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), config).unwrap();
    b.subscribe(&channels(&["t"])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    a.publish("t", Bytes::from_static(b"before")).unwrap();
    assert_eq!(next(&mut b_rx).await.payload, "before");

    redis.kill();
    // During the outage: 50 wait in the queue, the rest are refused and counted.
    let mut refused = 0;
    for i in 0..80u32 {
        match a.publish("t", Bytes::from(i.to_string())) {
            Ok(()) => {}
            Err(BusError::Full(50)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused >= 29, "refused {refused}");
    assert_eq!(a.dropped_outbound(), refused);

    let _redis = RedisServer::start_on(port);
    assert!(b.wait_connected(STEP).await, "b resubscribes");
    // The queue drains once Redis is back (until then it stays full); then
    // traffic is live.
    tokio::time::timeout(STEP, async {
        loop {
            match a.publish("t", Bytes::from_static(b"after")) {
                Ok(()) | Err(BusError::Full(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await
                && m.payload == "after"
            {
                break;
            }
        }
    })
    .await
    .expect("live traffic after the restart");
    assert!(b.connections_made() >= 2, "the subscriber reconnected");
}

#[tokio::test]
async fn a_killed_subscriber_connection_is_replaced_and_resubscribed() {
    let redis = RedisServer::start();
    let (a, _a_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    b.subscribe(&channels(&["k"])).await.unwrap();
    assert!(b.wait_connected(STEP).await);
    // Kill every pub/sub connection server-side.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut c).await.unwrap();
    tokio::time::timeout(STEP, async {
        loop {
            a.publish("k", Bytes::from_static(b"again")).unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await
                && m.payload == "again"
            {
                break;
            }
        }
    })
    .await
    .expect("messages flow again after the subscriber was killed");
    assert!(b.connections_made() >= 2);
    assert_eq!(a.subscriber_count("k").await.unwrap(), 1, "resubscribed once, not twice");
}

#[tokio::test]
async fn flush_waits_until_everything_published_is_written() {
    let redis = RedisServer::start();
    let (a, _a_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    b.subscribe(&channels(&["f"])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await);
    assert!(a.flush(Duration::from_millis(1)).await, "nothing to flush");
    for i in 0..2000u32 {
        a.publish("f", Bytes::from(i.to_be_bytes().to_vec())).unwrap();
    }
    assert!(a.flush(STEP).await);
    a.close();
    // Written before the close: all of it arrives.
    for i in 0..2000u32 {
        assert_eq!(&next(&mut b_rx).await.payload[..], &i.to_be_bytes()[..]);
    }
}

#[tokio::test]
async fn sharded_pub_sub_counts_and_survives_a_restart() {
    let port = RedisServer::free_port();
    let mut redis = RedisServer::start_on(port);
    let sharded = || fast().sharded(true);
    let (a, mut a_rx) = RedisBus::connect(&redis.url(), sharded()).unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), sharded()).unwrap();
    let (classic, mut classic_rx) = RedisBus::connect(&redis.url(), fast()).unwrap();
    a.subscribe(&channels(&["s#"])).await.unwrap();
    b.subscribe(&channels(&["s#", "t#"])).await.unwrap();
    classic.subscribe(&channels(&["s#"])).await.unwrap();
    assert!(a.wait_connected(STEP).await && b.wait_connected(STEP).await && classic.wait_connected(STEP).await);
    assert_eq!(a.subscriber_count("s#").await.unwrap(), 2, "SHARDNUMSUB: the sharded subscribers only");
    assert_eq!(classic.subscriber_count("s#").await.unwrap(), 1, "NUMSUB: the classic one");
    for i in 0..50u8 {
        a.publish("s#", Bytes::from(vec![i])).unwrap();
    }
    for rx in [&mut a_rx, &mut b_rx] {
        for i in 0..50u8 {
            assert_eq!(&next(rx).await.payload[..], &[i], "in order");
        }
    }
    b.publish("t#", Bytes::from_static(b"only b")).unwrap();
    assert_eq!(next(&mut b_rx).await.payload, "only b");
    b.unsubscribe(&channels(&["t#"])).await.unwrap();
    assert_eq!(a.subscriber_count("t#").await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(classic_rx.try_recv().is_err(), "SPUBLISH never reaches a classic subscriber");

    // Redis restarts: the shard subscriptions come back.
    redis.kill();
    let _redis = RedisServer::start_on(port);
    let made = b.connections_made();
    tokio::time::timeout(STEP, async {
        while b.connections_made() == made || a.subscriber_count("s#").await.ok() != Some(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("resubscribed after the restart");
    a.publish("s#", Bytes::from_static(b"after")).unwrap();
    assert_eq!(next(&mut b_rx).await.payload, "after");
}

/// A node closed while its subscription is busy (a flood arrives on its
/// channel) leaves Redis: its subscriber connection does not stay
/// subscribed, so the other nodes stop counting it. Before the fix the
/// subscriber task, busy reading when the close came, missed it and kept
/// the subscription for good (a closed node went on being counted by the
/// adapter's `serverCount` and by every request's expected answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_closed_while_its_subscription_is_busy_leaves_redis() {
    let redis = RedisServer::start();
    for config in [fast(), fast().sharded(true)] {
        let (a, _a_rx) = RedisBus::connect(&redis.url(), config.clone()).unwrap();
        let a = std::sync::Arc::new(a);
        assert!(a.wait_connected(STEP).await);
        let flood = {
            let a = a.clone();
            tokio::spawn(async move {
                loop {
                    for _ in 0..64 {
                        let _ = a.publish("busy#", Bytes::from_static(b"x"));
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        };
        for round in 0..5 {
            let (b, _b_rx) = RedisBus::connect(&redis.url(), config.clone()).unwrap();
            b.subscribe(&channels(&["busy#"])).await.unwrap();
            assert!(b.wait_connected(STEP).await);
            assert_eq!(a.subscriber_count("busy#").await.unwrap(), 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.close();
            let left = tokio::time::timeout(STEP, async {
                while a.subscriber_count("busy#").await.unwrap() != 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(left.is_ok(), "round {round}: the closed node is still subscribed (sharded: {})", config.sharded);
        }
        flood.abort();
    }
}
