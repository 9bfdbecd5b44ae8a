//! Connection-state recovery across the nodes of a cluster.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Node, flow};
use crate::bus::MemoryBus;
use crate::hub::tests::{args, connect_reply, offset_of};
use crate::hub::*;

async fn recovery_node(bus: &MemoryBus, window: Duration) -> Node {
    let hub_config = HubConfig::default()
        .unlimited()
        .connection_state_recovery(crate::recovery::RecoveryConfig::default().max_disconnection_duration(window));
    let (hub, engine) = crate::hub::tests::users_hub(hub_config);
    let (node, inbound) = bus.node(4096);
    hub.join_cluster(Arc::new(node), inbound, super::config()).await.unwrap();
    Node { hub, engine }
}

#[tokio::test]
async fn a_session_cut_on_one_node_is_restored_on_another_with_what_it_missed() {
    let bus = MemoryBus::new();
    let window = Duration::from_secs(5);
    let (a, b, c) =
        (recovery_node(&bus, window).await, recovery_node(&bus, window).await, recovery_node(&bus, window).await);
    let first = a.client();
    let (reply, _) = connect_reply(&first, json!({ "user": "ann" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    let socket = a.hub.of("/").socket(&sid).unwrap();
    // The only member of "news" on a.
    socket.join("news").unwrap();
    socket.set_data(json!({ "score": 7 }));
    flow().await;
    c.hub.to("news").emit("news", args(json!([1])));
    flow().await;
    let got = first.recv();
    assert_eq!(got.len(), 1, "{got:?}");
    let last_seen = offset_of(&got[0]);

    // The connection drops; meanwhile the room gets more, from c and from b.
    first.session.close(crate::engine::CloseReason::TransportClose);
    flow().await;
    c.hub.to("news").emit("news", args(json!([2])));
    b.hub.to("elsewhere").emit("other", args(json!([3])));
    b.hub.to(sid.as_str()).emit("direct", args(json!([4])));
    b.hub.emit("all", args(json!([5])));
    flow().await;

    // The client comes back to b.
    let back = b.client();
    let (reply, missed) = connect_reply(&back, json!({ "user": "ann", "pid": pid, "offset": last_seen })).await;
    assert_eq!(reply["sid"], sid.as_str(), "same socket id");
    let events: Vec<&str> = missed.iter().map(|p| &p[..p.find(',').unwrap()]).collect();
    assert_eq!(events, vec![r#"2["news""#, r#"2["direct""#, r#"2["all""#], "in order, nothing else: {missed:?}");
    assert!(missed[0].starts_with(r#"2["news",2,"#));
    let restored = b.hub.of("/").socket(&sid).unwrap();
    assert!(restored.recovered());
    assert!(restored.in_room("news") && restored.in_room("user:ann"));
    assert_eq!(restored.data(), json!({ "score": 7 }));
    assert_eq!(b.hub.stats().recovered.load(std::sync::atomic::Ordering::Relaxed), 1);

    // Restored on b, it now gets b's packets; a let the session go.
    c.hub.to("news").emit("news", args(json!([6])));
    flow().await;
    assert!(back.recv().iter().any(|p| p.starts_with(r#"2["news",6,"#)));
    let again = c.client();
    let (reply, _) = connect_reply(&again, json!({ "user": "ann", "pid": pid, "offset": last_seen })).await;
    assert_ne!(reply["sid"], sid.as_str(), "one use only");
}

#[tokio::test]
async fn sessions_unknown_expired_or_of_another_user_are_not_restored_across_nodes() {
    let bus = MemoryBus::new();
    let window = Duration::from_millis(150);
    let (a, b) = (recovery_node(&bus, window).await, recovery_node(&bus, window).await);
    // Unknown everywhere: a new session, without waiting for the timeout.
    let start = std::time::Instant::now();
    let (reply, _) = connect_reply(&b.client(), json!({ "user": "x", "pid": "nope", "offset": "1-1" })).await;
    assert!(reply["sid"].is_string());
    assert!(start.elapsed() < Duration::from_millis(250), "every node said no: {:?}", start.elapsed());
    assert!(!b.hub.of("/").socket(reply["sid"].as_str().unwrap()).unwrap().recovered());

    // Another user: refused.
    let first = a.client();
    let (reply, _) = connect_reply(&first, json!({ "user": "ann" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    first.session.close(crate::engine::CloseReason::TransportClose);
    flow().await;
    let (reply, _) = connect_reply(&b.client(), json!({ "user": "mallory", "pid": pid })).await;
    assert_ne!(reply["sid"], sid.as_str());
    // ... and the session is still there for its owner, on either node.
    let (reply, _) = connect_reply(&b.client(), json!({ "user": "ann", "pid": pid })).await;
    assert_eq!(reply["sid"], sid.as_str(), "the thief's try did not destroy it");

    // Too late: the window passed.
    let first = a.client();
    let (reply, _) = connect_reply(&first, json!({ "user": "bo" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    first.session.close(crate::engine::CloseReason::PingTimeout);
    flow().await;
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    let (reply, _) = connect_reply(&b.client(), json!({ "user": "bo", "pid": pid })).await;
    assert_ne!(reply["sid"], sid.as_str());
    assert!(!b.hub.of("/").socket(reply["sid"].as_str().unwrap()).unwrap().recovered());
}

/// The number a `2["n",<number>,<offset>]` packet carries.
fn number_of(packet: &str) -> Option<u64> {
    let args: Value = serde_json::from_str(packet.strip_prefix('2')?).ok()?;
    (args[0] == "n").then(|| args[1].as_u64()).flatten()
}

/// A session handed from node to node while a third node broadcasts to its
/// room without pause: whatever the moment of each hand-off, the client
/// gets every number once, in order (the holder's missed packets, then
/// what it logged until the taker listened, then the taker's own).
/// Before the hand-off, one packet per hand-off fell between the nodes.
async fn hand_offs_under_broadcast(from_every_node: bool) {
    let bus = MemoryBus::new();
    let window = Duration::from_secs(5);
    let nodes = [recovery_node(&bus, window).await, recovery_node(&bus, window).await];
    let sender = recovery_node(&bus, window).await;
    let first = nodes[0].client();
    let (reply, _) = connect_reply(&first, json!({ "user": "ann" })).await;
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_owned(), reply["pid"].as_str().unwrap().to_owned());
    nodes[0].hub.of("/").socket(&sid).unwrap().join("news").unwrap();
    flow().await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = {
        let hubs = if from_every_node {
            vec![sender.hub.clone(), nodes[0].hub.clone(), nodes[1].hub.clone()]
        } else {
            vec![sender.hub.clone()]
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                hubs[n as usize % hubs.len()].to("news").emit("n", args(json!([n])));
                tokio::task::yield_now().await;
            }
            n
        })
    };

    let mut got: Vec<u64> = Vec::new();
    let mut last_offset: Option<String> = None;
    let mut client = first;
    for round in 0..12 {
        // Some traffic on the current node, then the connection drops.
        for _ in 0..3 {
            flow().await;
            for p in client.recv() {
                if let Some(n) = number_of(&p) {
                    got.push(n);
                    last_offset = Some(offset_of(&p));
                }
            }
        }
        client.session.close(crate::engine::CloseReason::TransportClose);
        // Back on the other node, mid-stream.
        client = nodes[(round + 1) % 2].client();
        let auth = json!({ "user": "ann", "pid": pid, "offset": last_offset });
        let (reply, missed) = connect_reply(&client, auth).await;
        assert_eq!(reply["sid"], sid.as_str(), "round {round}: restored");
        for p in missed {
            if let Some(n) = number_of(&p) {
                got.push(n);
                last_offset = Some(offset_of(&p));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = emitter.await.unwrap();
    for _ in 0..4 {
        flow().await;
    }
    got.extend(client.recv().iter().filter_map(|p| number_of(p)));
    let expected: Vec<u64> = (1..=sent).collect();
    if from_every_node {
        // From several nodes, order holds per sender only.
        got.sort_unstable();
    }
    if got != expected {
        let missing: Vec<u64> = expected.iter().copied().filter(|n| !got.contains(n)).collect();
        let mut seen = std::collections::HashSet::new();
        let doubled: Vec<u64> = got.iter().copied().filter(|n| !seen.insert(*n)).collect();
        panic!("{} sent, {} received; missing {missing:?}; doubled {doubled:?}", sent, got.len());
    }
    let recovered = |n: &Node| n.hub.stats().recovered.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(recovered(&nodes[0]) + recovered(&nodes[1]), 12);
}

#[tokio::test]
async fn nothing_broadcast_during_a_hand_off_is_lost_or_doubled() {
    hand_offs_under_broadcast(false).await;
}

/// The same with the two nodes themselves broadcasting too: the taker's
/// own packets around its marker are neither lost nor doubled.
#[tokio::test]
async fn nothing_any_node_broadcasts_during_a_hand_off_is_lost_or_doubled() {
    hand_offs_under_broadcast(true).await;
}
