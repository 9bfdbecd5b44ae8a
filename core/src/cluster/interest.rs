//! Interest-based subscriptions: what this node listens to follows the
//! namespaces and rooms it holds, in batches.

use std::collections::HashMap;
use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use crate::hub::lock;
use crate::rooms::Room;

/// A change of what this node listens to.
pub(super) enum Interest {
    Sub(String),
    Unsub(String),
    /// Subscribe to these, and say so once the bus confirmed.
    Listen(Vec<String>, oneshot::Sender<()>),
}

impl Cluster {
    /// Resolves once the channels of `rooms` are subscribed and the bus
    /// confirmed it, for at most the request timeout. The subscription
    /// goes through the interest task like any other change, so it keeps
    /// its place among them (an earlier unsubscribe of the same channel
    /// does not undo it).
    pub(super) async fn listen(&self, nsp: &str, rooms: &[Room]) {
        let channels: Vec<String> = rooms.iter().filter_map(|r| self.room_channel(nsp, r)).collect();
        if channels.is_empty() {
            return;
        }
        let (done, confirmed) = oneshot::channel();
        if self.interest.send(Interest::Listen(channels, done)).is_err() {
            return;
        }
        if tokio::time::timeout(self.config.request_timeout, confirmed).await.is_err() {
            tracing::warn!("cluster: the bus did not confirm a subscription in time");
        }
    }
}

/// Applies subscription changes in batches: of what is waiting, the last
/// change of each channel wins; those who wait for theirs are told once
/// the batch's subscriptions are confirmed.
pub(super) async fn interest_task(cluster: Weak<Cluster>, mut rx: mpsc::UnboundedReceiver<Interest>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let Some(cluster) = cluster.upgrade() else { return };
        let mut last: HashMap<String, bool> = HashMap::with_capacity(batch.len());
        let mut order = Vec::with_capacity(batch.len());
        let mut waiting = Vec::new();
        let mut set = |channel: String, on: bool, order: &mut Vec<String>| {
            if last.insert(channel.clone(), on).is_none() {
                order.push(channel);
            }
        };
        for change in batch.drain(..) {
            match change {
                Interest::Sub(c) => set(c, true, &mut order),
                Interest::Unsub(c) => set(c, false, &mut order),
                Interest::Listen(channels, done) => {
                    for c in channels {
                        set(c, true, &mut order);
                    }
                    waiting.push(done);
                }
            }
        }
        let (subscribe, unsubscribe): (Vec<String>, Vec<String>) = order.into_iter().partition(|c| last[c]);
        if !subscribe.is_empty()
            && let Err(e) = cluster.bus.subscribe(&subscribe).await
        {
            tracing::warn!(error = %e, channels = subscribe.len(), "cluster: subscribe failed");
        }
        for done in waiting {
            let _ = done.send(());
        }
        if !unsubscribe.is_empty()
            && let Err(e) = cluster.bus.unsubscribe(&unsubscribe).await
        {
            tracing::warn!(error = %e, channels = unsubscribe.len(), "cluster: unsubscribe failed");
        }
        // Namespaces whose request channel was just subscribed are ready.
        let mut ready = lock(&cluster.ready);
        for c in &subscribe {
            if let Some(nsp) = cluster.codec.request_channel_of(c) {
                ready.insert(nsp.to_owned());
            }
        }
    }
}
