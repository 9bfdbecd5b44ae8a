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
