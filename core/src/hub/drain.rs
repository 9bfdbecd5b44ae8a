//! Graceful shutdown: stop accepting, tell clients in batches, let
//! in-flight acks finish, then close.
//!
//! Closing every connection at once makes the whole fleet reconnect at
//! once, to the servers that remain. [`Hub::drain`] spreads it out:
//!
//! 1. New handshakes are refused at once (HTTP 503, code
//!    `server_shutting_down`); connected clients keep working meanwhile.
//! 2. Connections are handled in batches of [`DrainOptions::batch_size`],
//!    [`DrainOptions::batch_interval`] apart. Events the batch's clients
//!    sent and still await an ack for get until
//!    [`DrainOptions::ack_deadline`] (counted from the start of the drain)
//!    to be answered; events arriving from then on are answered at once
//!    with `{status: "error", code: "server_shutting_down"}`, so every event
//!    the server took gets its answer before the close.
//! 3. Then each socket of the batch gets [`DRAIN_NOTICE`]
//!    `{reason, reconnectAfterMs}`: a hint, random within
//!    [`DrainOptions::reconnect_jitter`], for clients that want to wait
//!    before reconnecting (socket.io clients reconnect by themselves with
//!    their own backoff).
//! 4. The batch's connections close once their queues are written: the
//!    clients see `transport close` and reconnect, elsewhere. Not a
//!    namespace DISCONNECT (`io server disconnect`), unlike the other cuts
//!    (`tidewire:disconnect`): a socket.io client does not reconnect after
//!    one, and a drained client must come back on another node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use super::socket::Closing;
use super::{Hub, Socket};
use crate::engine::{CloseReason, Session};

/// The event each socket gets when its connection is about to be closed by
/// a drain: `{reason: "server shutting down", reconnectAfterMs}`.
pub const DRAIN_NOTICE: &str = "tidewire:drain";

/// How a [`Hub::drain`] proceeds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DrainOptions {
    /// Connections closed per batch (default 500).
    pub batch_size: usize,
    /// Time between batches (default 100 ms).
    pub batch_interval: Duration,
    /// How long, from the start, in-flight acks may take (default 5 s).
    pub ack_deadline: Duration,
    /// The spread of the `reconnectAfterMs` hint (default 5 s).
    pub reconnect_jitter: Duration,
}

impl Default for DrainOptions {
    fn default() -> DrainOptions {
        DrainOptions {
            batch_size: 500,
            batch_interval: Duration::from_millis(100),
            ack_deadline: Duration::from_secs(5),
            reconnect_jitter: Duration::from_secs(5),
        }
    }
}

impl DrainOptions {
    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets [`batch_interval`](Self::batch_interval).
    pub fn batch_interval(mut self, d: Duration) -> Self {
        self.batch_interval = d;
        self
    }
    /// Sets [`ack_deadline`](Self::ack_deadline).
    pub fn ack_deadline(mut self, d: Duration) -> Self {
        self.ack_deadline = d;
        self
    }
    /// The defaults with each given setting (milliseconds) replacing
    /// its default: the form the language bindings pass.
    pub fn from_millis(
        batch_size: Option<usize>,
        batch_interval_ms: Option<u64>,
        ack_deadline_ms: Option<u64>,
    ) -> Self {
        let mut options = DrainOptions::default();
        if let Some(n) = batch_size {
            options = options.batch_size(n);
        }
        if let Some(ms) = batch_interval_ms {
            options = options.batch_interval(Duration::from_millis(ms));
        }
        if let Some(ms) = ack_deadline_ms {
            options = options.ack_deadline(Duration::from_millis(ms));
        }
        options
    }
    /// Sets [`reconnect_jitter`](Self::reconnect_jitter).
    pub fn reconnect_jitter(mut self, d: Duration) -> Self {
        self.reconnect_jitter = d;
        self
    }
}

/// What a drain did. Serializes with camelCase keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DrainReport {
    /// Connections closed.
    pub connections: usize,
    /// Batches used.
    pub batches: usize,
    /// Acks still unanswered at the deadline (their clients never get them).
    pub acks_abandoned: u32,
}

impl Hub {
    /// Whether [`drain`](Self::drain) has started (new connections are refused).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Sessions this node keeps for connection-state recovery (none when
    /// recovery is off). In a cluster a drained node keeps serving them
    /// until the nodes its clients came back to have taken them: see
    /// [`hand_off`](Self::hand_off).
    pub fn kept_sessions(&self) -> usize {
        self.namespaces().iter().filter_map(|ns| ns.recovery().map(|r| super::lock(&r.store).len())).sum()
    }

    /// After a [`drain`](Self::drain) in a cluster with connection-state
    /// recovery: waits until every session kept here has been taken by the
    /// node its client reconnected to (or has expired), at most `max`, so
    /// the clients of a rolling restart resume elsewhere without losing a
    /// message. Returns the sessions still kept at the end.
    pub async fn hand_off(&self, max: Duration) -> usize {
        let deadline = Instant::now() + max;
        loop {
            let kept = self.kept_sessions();
            if kept == 0 || Instant::now() >= deadline {
                return kept;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts the hub down gracefully (see [`drain`](super::drain) for the
    /// steps). Resolves once every connection it found has been closed.
    ///
    /// # Examples
    /// ```
    /// # async fn example() {
    /// use std::time::Duration;
    /// use tidewire::hub::{DrainOptions, Hub};
    /// let hub = Hub::default();
    /// let report = hub.drain(DrainOptions::default().batch_size(200).batch_interval(Duration::from_millis(50))).await;
    /// assert_eq!(report.connections, 0);
    /// assert!(hub.is_draining());
    /// # }
    /// ```
    pub async fn drain(&self, options: DrainOptions) -> DrainReport {
        self.inner.draining.store(true, Ordering::Release);
        let start = Instant::now();
        let deadline = start + options.ack_deadline;
        // Connections in a stable order, each with its sockets.
        let mut order: Vec<Arc<str>> = Vec::new();
        let mut connections: HashMap<Arc<str>, (Session, Vec<Socket>)> = HashMap::new();
        for name in self.namespace_names() {
            let Some(ns) = self.namespace(&name) else { continue };
            for socket in ns.sockets() {
                let sid: Arc<str> = socket.session().sid().into();
                let entry = connections.entry(sid.clone()).or_insert_with(|| {
                    order.push(sid);
                    (socket.session().clone(), Vec::new())
                });
                entry.1.push(socket);
            }
        }
        let mut report = DrainReport::default();
        let jitter_ms = u64::try_from(options.reconnect_jitter.as_millis()).unwrap_or(u64::MAX);
        for (i, batch) in order.chunks(options.batch_size.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(options.batch_interval).await;
            }
            report.batches += 1;
            let batch: Vec<&(Session, Vec<Socket>)> = batch.iter().filter_map(|sid| connections.get(sid)).collect();
            for (_, sockets) in &batch {
                for s in sockets {
                    // Events that arrive from now on are answered with
                    // `server_shutting_down` instead of reaching a handler
                    // whose answer could come after the close.
                    s.begin_closing(Closing::ShuttingDown);
                }
            }
            let sockets: Vec<Socket> = batch.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
            super::socket::wait_for_answers(&sockets, deadline, || false).await;
            // Every answer is queued before the notice, the notice before
            // the close: a client reads them in that order.
            for (_, sockets) in &batch {
                for s in sockets {
                    let after = if jitter_ms == 0 { 0 } else { rand::rng().random_range(0..jitter_ms) };
                    let notice = json!({ "reason": "server shutting down", "reconnectAfterMs": after });
                    let _ = s.emit_notice(DRAIN_NOTICE, notice);
                }
            }
            report.acks_abandoned += sockets.iter().map(Socket::acks_in_flight).sum::<u32>();
            for (session, _) in &batch {
                session.close_after_flush(CloseReason::ServerShutdown);
                report.connections += 1;
            }
        }
        // Every close completes within the flush timeout.
        for (session, _) in connections.values() {
            session.closed().await;
        }
        report
    }
}
