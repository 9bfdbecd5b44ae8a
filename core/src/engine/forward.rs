//! Sessions of other nodes: the seam through which a cluster lets any node
//! answer a request for a session another node owns (see
//! `cluster::forward`).
//!
//! A session id made by an engine that has a [`Forward`] ends with the
//! owner's node id, so the node a load balancer picked knows at once where
//! the session lives: a request for it is passed on over the bus and
//! answered from the owner, exactly as the owner would have answered it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

/// A complete HTTP answer from the owner: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
}

/// What is asked of the owner of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// A long-polling `GET`, held at most this long.
    Get(Duration),
    /// A long-polling `POST` with its whole body (at most `max_payload`).
    Post(Bytes),
    /// The body of a `POST` was refused here (too large, broken, late):
    /// the owner closes the session, as it would have.
    Abort,
    /// A WebSocket upgrade here sent `2probe`: the owner starts the upgrade
    /// (its pending `GET` is answered with a noop).
    Probe,
    /// The client sent `5`: the session's traffic now goes through the
    /// WebSocket of the node that relays it.
    Upgrade,
    /// The probe failed: the session stays on long-polling.
    AbortUpgrade,
    /// The next packets of an upgraded session, waiting at most this long.
    Pull(Duration),
    /// Packets the client sent on the relayed WebSocket (a polling payload).
    Push(Bytes),
    /// The relayed WebSocket closed (`true`: on a protocol error).
    Close(bool),
}

/// Who owns a session id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This node (or the id names no node): answered here.
    Here,
    /// Another node of the cluster, alive.
    Remote(String),
    /// A node that is gone (or no cluster to reach it): the session is
    /// unknown.
    Gone,
}

/// A future answered by a [`Forward`].
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Option<Reply>> + Send>>;

/// Passes requests for sessions of other nodes to their owners.
pub(crate) trait Forward: Send + Sync + 'static {
    /// What session ids made here end with (this node's id).
    fn tag(&self) -> &str;

    /// Who owns `sid`.
    fn owner(&self, sid: &str) -> Owner;

    /// Sends `op` for `sid` to `owner` and waits for the answer, at most
    /// the op's own time plus the cluster's request timeout. `None`: no
    /// answer (the owner is gone or too slow, or too many requests are
    /// waiting here).
    fn send(&self, owner: &str, sid: &str, op: Op) -> ReplyFuture;
}
