//! Interest-based subscriptions: what this node listens to follows the
//! namespaces and rooms it holds, in batches.

use std::collections::HashMap;
use std::sync::Weak;

use tokio::sync::mpsc;

use super::Cluster;
use crate::hub::lock;

/// A change of what this node listens to.
pub(super) enum Interest {
    Sub(String),
    Unsub(String),
}

/// Applies subscription changes in batches: of what is waiting, the last
/// change of each channel wins.
pub(super) async fn interest_task(cluster: Weak<Cluster>, mut rx: mpsc::UnboundedReceiver<Interest>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let Some(cluster) = cluster.upgrade() else { return };
        let mut last: HashMap<String, bool> = HashMap::with_capacity(batch.len());
        let mut order = Vec::with_capacity(batch.len());
        for change in batch.drain(..) {
            let (channel, on) = match change {
                Interest::Sub(c) => (c, true),
                Interest::Unsub(c) => (c, false),
            };
            if last.insert(channel.clone(), on).is_none() {
                order.push(channel);
            }
        }
        let (subscribe, unsubscribe): (Vec<String>, Vec<String>) = order.into_iter().partition(|c| last[c]);
        if !subscribe.is_empty()
            && let Err(e) = cluster.bus.subscribe(&subscribe).await
        {
            tracing::warn!(error = %e, channels = subscribe.len(), "cluster: subscribe failed");
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
