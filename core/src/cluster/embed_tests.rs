//! Tests of the cluster link over the in-process bus.

use super::*;
use crate::bus::MemoryBus;

fn link(bus: &MemoryBus, events: Arc<Mutex<Vec<LinkEvent>>>) -> ClusterLink {
    let (node, inbound) = bus.node(1024);
    ClusterLink::join(Arc::new(node), inbound, ClusterConfig::default(), move |e| lock(&events).push(e))
}

#[tokio::test]
async fn broadcasts_and_requests_reach_the_other_host() {
    let bus = MemoryBus::new();
    let (ea, eb) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (a, b) = (link(&bus, ea.clone()), link(&bus, eb.clone()));
    a.add_namespace("/").await.unwrap();
    b.add_namespace("/").await.unwrap();
    let json = r#"{"packet":{"data":["hi",{"_placeholder":true,"num":0}]},"opts":{"rooms":["r1","r2"],"except":[],"flags":{}}}"#;
    a.broadcast("/", json, &[Bytes::from_static(b"\x01")]).unwrap();
    a.notify("/", r#"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["x"]}"#, &[]).unwrap();
    let b2 = b.clone();
    let fetch = tokio::spawn(async move { b2.request("/", r#"{"type":5,"opts":{"rooms":["r1"]}}"#, &[], None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events = lock(&eb).clone();
    assert!(lock(&ea).iter().any(|e| matches!(e, LinkEvent::Request(c) if c.json.contains("\"type\":5"))));
    match &events[0] {
        LinkEvent::Broadcast(c) => {
            assert_eq!(c.attachments, vec![Bytes::from_static(b"\x01")]);
            assert!(c.json.contains(r#""rooms":["r1","r2"]"#), "{}", c.json);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&events[1], LinkEvent::Request(c) if c.json.contains(r#""rooms":["x"]"#)));
    let LinkEvent::Request(req) = lock(&ea).last().cloned().unwrap() else { panic!() };
    let parsed: Value = serde_json::from_str(&req.json).unwrap();
    let answer = json!({"type":5,"requestId":parsed["requestId"],"sockets":[{"id":"s1","handshake":{},"rooms":["s1","r1"],"data":{"_placeholder":true,"num":0}}]});
    a.respond("/", parsed["uid"].as_str(), &answer.to_string(), &[Bytes::from_static(b"\x02")]).unwrap();
    let gathered = fetch.await.unwrap().unwrap();
    assert!(gathered.replies.complete());
    let sockets: Value = serde_json::from_str(&gathered.value.0).unwrap();
    assert_eq!(sockets[0]["id"], "s1");
    // REMOTE_FETCH answers are JSON: a Buffer arrives as Node's JSON of it, as from an official node.
    assert_eq!(sockets[0]["data"], json!({"type":"Buffer","data":[2]}));
}

#[tokio::test]
async fn bad_input_is_refused() {
    let bus = MemoryBus::new();
    let a = link(&bus, Arc::default());
    assert!(matches!(a.broadcast("/", "nope", &[]), Err(LinkError::Invalid(_))));
    assert!(matches!(
        a.broadcast("/", r#"{"packet":{"data":[{"_placeholder":true,"num":3}]}}"#, &[]),
        Err(LinkError::Invalid(_))
    ));
    assert!(matches!(a.notify("/", r#"{"type":9}"#, &[]), Err(LinkError::Unsupported(_))));
    assert!(matches!(a.notify("/", r#"{"type":5,"opts":{}}"#, &[]), Err(LinkError::Unsupported(_))));
    assert!(matches!(a.respond("/", None, r#"{"type":5}"#, &[]), Err(LinkError::Invalid(_))));
}

#[tokio::test]
async fn a_session_hand_off_goes_answer_marker_echo_tail() {
    let bus = MemoryBus::new();
    let (ea, eb) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (holder, taker) = (link(&bus, ea.clone()), link(&bus, eb.clone()));
    holder.add_namespace("/").await.unwrap();
    taker.add_namespace("/").await.unwrap();
    // Broadcasts name their node.
    holder.broadcast("/", r#"{"packet":{"data":["x"]},"opts":{"rooms":[],"except":[],"flags":{}}}"#, &[]).unwrap();

    let asking = {
        let taker = taker.clone();
        tokio::spawn(async move { taker.take_session("/", "p1", Some("o1")).await })
    };
    let wanted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(LinkEvent::SessionWanted(c)) =
                lock(&ea).iter().find(|e| matches!(e, LinkEvent::SessionWanted(_))).cloned()
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let question: Value = serde_json::from_str(&wanted.json).unwrap();
    assert_eq!((question["pid"].as_str(), question["offset"].as_str()), (Some("p1"), Some("o1")));
    let (request_id, from) = (question["requestId"].as_str().unwrap(), question["from"].as_str().unwrap());
    assert_eq!(from, taker.uid());
    holder.give_session(from, request_id, r#"{"sid":"s","rooms":["r"],"missedPackets":[]}"#, &[], true).unwrap();
    let taken = asking.await.unwrap().unwrap().expect("the holder's session");
    assert_eq!(taken.holder.as_deref(), Some(holder.uid()), "a hand-off names its holder");
    assert_eq!(taken.request_id, request_id);

    taker.release_session("/", holder.uid(), request_id, "p1").unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let released = lock(&ea).iter().find_map(|e| match e {
        LinkEvent::SessionReleased(c) => Some(serde_json::from_str::<Value>(&c.json).unwrap()),
        _ => None,
    });
    assert_eq!(released, Some(json!({"requestId": request_id, "from": taker.uid(), "pid": "p1"})));
    holder
        .give_tail(
            taker.uid(),
            request_id,
            "/",
            r#"[["late",{"_placeholder":true,"num":0}]]"#,
            &[Bytes::from_static(b"\x07")],
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events = lock(&eb).clone();
    let uid_of_broadcast = events.iter().find_map(|e| match e {
        LinkEvent::Broadcast(c) => serde_json::from_str::<Value>(&c.json).unwrap()["uid"].as_str().map(str::to_owned),
        _ => None,
    });
    assert_eq!(uid_of_broadcast.as_deref(), Some(holder.uid()));
    let echo = events.iter().position(|e| matches!(e, LinkEvent::SessionEcho(c) if c.json.contains(request_id)));
    let tail = events.iter().position(|e| matches!(e, LinkEvent::SessionTail(_)));
    assert!(echo.is_some() && tail.is_some() && echo < tail, "the marker comes back before the tail: {events:?}");
    let LinkEvent::SessionTail(c) = &events[tail.unwrap()] else { unreachable!() };
    assert_eq!(c.attachments, vec![Bytes::from_static(b"\x07")]);
    assert!(c.json.contains("late"), "{}", c.json);
    // The holder never hears its own marker's echo, nor a third node one not meant for it.
    assert!(!lock(&ea).iter().any(|e| matches!(e, LinkEvent::SessionEcho(_))));
}

#[tokio::test]
async fn broadcasts_are_delivered_by_the_core_while_the_host_has_nothing_to_apply() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::embed::fanout::tests::{session, texts};
    use crate::embed::fanout::{Fanout, RoomChange};
    use crate::engine::{Engine, EngineConfig, Silent};

    let bus = MemoryBus::new();
    let a = link(&bus, Arc::default());
    let wakes = Arc::new(AtomicUsize::new(0));
    let (node, inbound) = bus.node(1024);
    let woken = wakes.clone();
    let (b, queue) = ClusterLink::join_queued(Arc::new(node), inbound, ClusterConfig::default(), move || {
        woken.fetch_add(1, Ordering::SeqCst);
    });
    a.add_namespace("/").await.unwrap();
    b.add_namespace("/").await.unwrap();
    let engine = Engine::new(EngineConfig::default(), Arc::new(Silent));
    let (s1, s2) = (session(&engine).await, session(&engine).await);
    let fanout = Arc::new(Fanout::default());
    fanout.update([RoomChange::Join("s1".into(), "r".into()), RoomChange::Join("s2".into(), "q".into())]);
    for (id, s) in [("s1", &s1), ("s2", &s2)] {
        s.drain();
        fanout.attach(id.into(), s.clone());
    }
    b.listen("/", &["r".to_owned()]).await;
    b.deliver_directly("/", Some(fanout.clone()));
    let to_r = |event: &str| {
        format!(r#"{{"packet":{{"data":["{event}",1]}},"opts":{{"rooms":["r"],"except":[],"flags":{{}}}}}}"#)
    };
    let settle = || tokio::time::sleep(Duration::from_millis(50));
    let directly = || b.stats().delivered_directly.load(Ordering::Relaxed);

    // Nothing for the host: written to the room's sessions by the core, binary parts too.
    a.broadcast("/", &to_r("one"), &[]).unwrap();
    let binary =
        r#"{"packet":{"data":["bin",{"_placeholder":true,"num":0}]},"opts":{"rooms":[],"except":["q"],"flags":{}}}"#;
    a.broadcast("/", binary, &[Bytes::from_static(b"\x09")]).unwrap();
    settle().await;
    assert_eq!(texts(&s1), [r#"42["one",1]"#, r#"451-["bin",{"_placeholder":true,"num":0}]"#, "<1 bytes>"]);
    assert!(texts(&s2).is_empty(), "except q");
    assert!(queue.take().is_empty());
    assert_eq!((directly(), wakes.load(Ordering::SeqCst)), (2, 0));

    // A request waits for the host: the broadcast after it waits too, in order.
    a.notify("/", r#"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["r"]}"#, &[]).unwrap();
    a.broadcast("/", &to_r("two"), &[]).unwrap();
    settle().await;
    assert!(texts(&s1).is_empty());
    let taken = queue.take();
    assert!(
        matches!(&taken[..], [LinkEvent::Request(_), LinkEvent::Broadcast(c)] if c.json.contains("two")),
        "{taken:?}"
    );
    assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake-up for the batch");
    // Taken but not applied yet: still the host's.
    a.broadcast("/", &to_r("three"), &[]).unwrap();
    settle().await;
    assert!(texts(&s1).is_empty());
    assert!(matches!(&queue.take()[..], [LinkEvent::Broadcast(c)] if c.json.contains("three")));
    // Applied: the core delivers again.
    queue.settled();
    a.broadcast("/", &to_r("four"), &[]).unwrap();
    settle().await;
    assert_eq!(texts(&s1), [r#"42["four",1]"#]);
    assert_eq!(directly(), 3);

    // What the core does not encode itself (no event name) is the host's.
    a.broadcast("/", r#"{"packet":{"data":[7]},"opts":{"rooms":[],"except":[],"flags":{}}}"#, &[]).unwrap();
    settle().await;
    assert_eq!(queue.take().len(), 1);
    queue.settled();
    // No route: the host's again.
    b.deliver_directly("/", None);
    a.broadcast("/", &to_r("five"), &[]).unwrap();
    settle().await;
    assert!(texts(&s1).is_empty());
    assert!(matches!(&queue.take()[..], [LinkEvent::Broadcast(c)] if c.json.contains("five")));
    assert_eq!(directly(), 3);
}
