//! Long-polling and WebSocket upgrades behind any load balancer: a request
//! for a session another node owns is passed on to the owner over the bus
//! and answered from there, so a balancer need not pin clients to nodes
//! (no IP hash, no sticky cookie).
//!
//! * **Who owns a session**: the hub's engines end each session id with
//!   the node's id (`engine::forward`); a node knows the other Tidewire
//!   nodes alive from their heartbeats (`membership.rs`). An id whose node
//!   is not alive (stopped, killed: three missed heartbeats, or its clean
//!   `bye`) is unknown: `400 {"code":1,"message":"Session ID unknown"}`, and
//!   the client reconnects.
//! * **On the bus**: each node listens on a channel of its own,
//!   `<prefix>-tidewire#forward#<uid>#`, for requests to it and answers to
//!   it; official socket.io nodes never subscribe there. A message is a
//!   JSON head, a newline, then the body bytes (a `POST` body, the owner's
//!   answer).
//! * **Bounds**: a `POST` body is read on the receiving node with the local
//!   limits (`max_payload`, the body deadline) before it travels; a `GET`
//!   is held by the owner at most `ping_interval` (then answered with a
//!   noop) and awaited at most that plus the request timeout; at most
//!   [`MAX_IN_FLIGHT`] requests wait on one node (past that: unknown
//!   session); messages over [`MAX_MESSAGE_BYTES`] are dropped. While a
//!   request waits, its owner is checked every heartbeat: a node that
//!   stops beating fails its requests at once.
//!
//! The transport side (what is passed on, and the owner's answers) is in
//! `transport::forward`; the WebSocket relay in `transport::relay`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Cluster;
use super::config::add;
use crate::engine::forward::{Forward, Op, Owner, Reply, ReplyFuture};
use crate::engine::{Engine, new_id};
use crate::hub::{Hub, HubInner, lock};

/// Most forwarded requests waiting for their answers on one node.
pub(crate) const MAX_IN_FLIGHT: usize = 65_536;

/// Largest forward message accepted from the bus (a `POST` body is at most
/// `max_payload`, an answer at most a session's queue).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The length of an id made by [`new_id`]: a session id longer than that
/// ends with its node's id.
const ID_LEN: usize = 20;

/// This node's forwarding state.
#[derive(Debug)]
pub(crate) struct Forwards {
    /// Where this node hears requests and answers.
    pub(crate) channel: String,
    /// This node's requests waiting for answers.
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
}

/// The channel of node `uid`'s forwarded requests and answers.
fn channel(prefix: &str, uid: &str) -> String {
    format!("{prefix}-tidewire#forward#{uid}#")
}

impl Forwards {
    pub(crate) fn new(prefix: &str, uid: &str) -> Forwards {
        Forwards { channel: channel(prefix, uid), pending: Mutex::default() }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Head {
    /// A request of node `from` for session `sid`.
    Req {
        id: String,
        from: String,
        sid: String,
        op: Kind,
        /// How long a `get` or `pull` may wait, in ms.
        #[serde(default)]
        ms: u64,
        /// A `close` on a protocol error.
        #[serde(default)]
        error: bool,
    },
    /// The answer to request `id`.
    Ans { id: String, status: u16, ctype: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Get,
    Post,
    Abort,
    Probe,
    Upgrade,
    AbortUpgrade,
    Pull,
    Push,
    Close,
}

fn encode(head: &Head, body: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(head).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

fn split(payload: &Bytes) -> Option<(Head, Bytes)> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let head = serde_json::from_slice(&payload[..nl]).ok()?;
    Some((head, payload.slice(nl + 1..)))
}

/// What a request carries: its kind, wait, flag and body.
fn parts(op: Op) -> (Kind, u64, bool, Bytes) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match op {
        Op::Get(d) => (Kind::Get, ms(d), false, Bytes::new()),
        Op::Post(b) => (Kind::Post, 0, false, b),
        Op::Abort => (Kind::Abort, 0, false, Bytes::new()),
        Op::Probe => (Kind::Probe, 0, false, Bytes::new()),
        Op::Upgrade => (Kind::Upgrade, 0, false, Bytes::new()),
        Op::AbortUpgrade => (Kind::AbortUpgrade, 0, false, Bytes::new()),
        Op::Pull(d) => (Kind::Pull, ms(d), false, Bytes::new()),
        Op::Push(b) => (Kind::Push, 0, false, b),
        Op::Close(e) => (Kind::Close, 0, e, Bytes::new()),
    }
}

fn op(kind: Kind, ms: u64, error: bool, body: Bytes) -> Op {
    let d = Duration::from_millis(ms);
    match kind {
        Kind::Get => Op::Get(d),
        Kind::Post => Op::Post(body),
        Kind::Abort => Op::Abort,
        Kind::Probe => Op::Probe,
        Kind::Upgrade => Op::Upgrade,
        Kind::AbortUpgrade => Op::AbortUpgrade,
        Kind::Pull => Op::Pull(d),
        Kind::Push => Op::Push(body),
        Kind::Close => Op::Close(error),
    }
}

/// Makes `engine` forward requests for other nodes' sessions through the
/// cluster `hub` joins (now or later), and find this node's sessions for
/// requests other nodes forward here.
pub(crate) fn attach(hub: &Hub, engine: &Engine) {
    lock(&hub.inner().engines).push(engine.downgrade());
    engine.set_forward(Arc::new(HubForward { hub: hub.downgrade(), tag: hub.node_id().clone() }));
}

/// The [`Forward`] of a hub's engine.
struct HubForward {
    hub: Weak<HubInner>,
    tag: Arc<str>,
}

impl HubForward {
    fn cluster(&self) -> Option<Arc<Cluster>> {
        Hub::from_inner(self.hub.upgrade()?).cluster()
    }
}

impl Forward for HubForward {
    fn tag(&self) -> &str {
        &self.tag
    }

    fn owner(&self, sid: &str) -> Owner {
        let Some(owner) = sid.get(ID_LEN..).filter(|o| !o.is_empty()) else { return Owner::Here };
        if owner == &*self.tag {
            return Owner::Here;
        }
        match self.cluster() {
            Some(c) if c.is_live(owner) => Owner::Remote(owner.to_owned()),
            _ => Owner::Gone,
        }
    }

    fn send(&self, owner: &str, sid: &str, op: Op) -> ReplyFuture {
        let Some(cluster) = self.cluster() else { return Box::pin(async { None }) };
        cluster.forward_request(owner, sid, op)
    }
}

impl Cluster {
    /// Whether Tidewire node `uid` beat within the last three heartbeats.
    fn is_live(&self, uid: &str) -> bool {
        let horizon = self.config.heartbeat_interval * 3;
        lock(&self.peers).get(uid).is_some_and(|t| t.elapsed() <= horizon)
    }

    /// Publishes `op` for `sid` to `owner` now, and returns the wait for
    /// its answer.
    fn forward_request(self: Arc<Self>, owner: &str, sid: &str, op: Op) -> ReplyFuture {
        let wait = match op {
            Op::Get(d) | Op::Pull(d) => d,
            _ => Duration::ZERO,
        };
        let (kind, ms, error, body) = parts(op);
        let id = new_id();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.forward.pending);
            if pending.len() >= MAX_IN_FLIGHT {
                add(&self.stats.forward_refused);
                tracing::warn!("forwarding: {MAX_IN_FLIGHT} requests already wait for their owners; refused");
                return Box::pin(async { None });
            }
            pending.insert(id.clone(), tx);
        }
        let head = Head::Req { id: id.clone(), from: self.uid().to_owned(), sid: sid.to_owned(), op: kind, ms, error };
        if self.publish(&channel(self.prefix(), owner), encode(&head, &body)).is_err() {
            lock(&self.forward.pending).remove(&id);
            return Box::pin(async { None });
        }
        add(&self.stats.forwarded);
        let owner = owner.to_owned();
        Box::pin(async move {
            let deadline = tokio::time::sleep(wait + self.request_timeout());
            tokio::pin!(deadline);
            let mut check = tokio::time::interval(self.config.heartbeat_interval);
            check.tick().await;
            let mut rx = rx;
            let reply = loop {
                tokio::select! {
                    reply = &mut rx => break reply.ok(),
                    () = &mut deadline => break None,
                    _ = check.tick() => if !self.is_live(&owner) { break None },
                }
            };
            if reply.is_none() {
                lock(&self.forward.pending).remove(&id);
                add(&self.stats.forward_failed);
                tracing::debug!(owner, "forwarding: no answer from the session's node");
            }
            reply
        })
    }

    /// A message on this node's forward channel: a request to answer, or
    /// the answer to one of this node's requests.
    pub(crate) fn on_forward_message(self: &Arc<Self>, hub: &Hub, payload: &Bytes) {
        if payload.len() > MAX_MESSAGE_BYTES {
            return self.malformed("forward message", &"too large");
        }
        let Some((head, body)) = split(payload) else {
            return self.malformed("forward message", &"no head");
        };
        match head {
            Head::Ans { id, status, ctype } => {
                if let Some(tx) = lock(&self.forward.pending).remove(&id) {
                    let _ = tx.send(Reply { status, content_type: ctype, body });
                }
            }
            Head::Req { id, from, sid, op: kind, ms, error } => {
                let engines: Vec<Engine> =
                    lock(&hub.inner().engines).iter().filter_map(crate::engine::WeakEngine::upgrade).collect();
                // The engine that holds the session (sids are unique).
                let engine = engines.iter().find(|e| e.session(&sid).is_some()).or(engines.first()).cloned();
                let cluster = self.clone();
                let op = op(kind, ms, error, body);
                tokio::spawn(async move {
                    let answer = match engine {
                        Some(engine) => crate::transport::forward::serve(&engine, &sid, op).await,
                        None => crate::transport::forward::unknown(),
                    };
                    let Reply { status, content_type, body } = Reply::of(answer);
                    let head = Head::Ans { id, status, ctype: content_type };
                    let _ = cluster.publish(&channel(cluster.prefix(), &from), encode(&head, &body));
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_a_json_head_a_newline_and_the_body() {
        let head =
            Head::Req { id: "r1".into(), from: "a".into(), sid: "s".into(), op: Kind::Post, ms: 0, error: false };
        let bytes = Bytes::from(encode(&head, b"4hi\n\x1e4there"));
        assert!(bytes.starts_with(br#"{"t":"req","id":"r1","from":"a","sid":"s","op":"post","ms":0,"error":false}"#));
        let (head, body) = split(&bytes).unwrap();
        assert!(matches!(head, Head::Req { op: Kind::Post, .. }));
        assert_eq!(&body[..], b"4hi\n\x1e4there", "newlines in the body are kept");
        assert!(split(&Bytes::from_static(b"no head")).is_none());
        assert!(split(&Bytes::from_static(b"{\"t\":\"what\"}\n")).is_none());
    }
}
