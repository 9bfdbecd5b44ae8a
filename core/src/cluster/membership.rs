//! Membership: the Tidewire nodes of a cluster know each other from a
//! heartbeat on a channel of their own (official nodes never see it), and
//! forget a node silent for three intervals.

use std::sync::Weak;

use super::Cluster;
use crate::hub::{Hub, HubInner, lock};

impl Cluster {
    /// Forgets the Tidewire nodes silent for three heartbeats; returns them.
    pub(super) fn expire_peers(&self) -> Vec<String> {
        let horizon = self.config.heartbeat_interval * 3;
        let mut gone = Vec::new();
        lock(&self.peers).retain(|uid, t| {
            let alive = t.elapsed() <= horizon;
            if !alive {
                gone.push(uid.clone());
            }
            alive
        });
        gone
    }

    /// Another Tidewire node is alive (it beat, or answered naming itself).
    /// Official nodes' uids, seen on their requests, are not recorded: they
    /// answer without naming themselves, so they would look silent.
    pub(crate) fn seen(&self, uid: &str) {
        if uid != &*self.uid {
            let mut peers = lock(&self.peers);
            match peers.get_mut(uid) {
                Some(t) => *t = crate::time::now(),
                None => {
                    peers.insert(uid.to_owned(), crate::time::now());
                }
            }
        }
    }

    /// The Tidewire nodes heard of within three heartbeats.
    pub(super) fn recent_peers(&self) -> Vec<String> {
        let horizon = self.config.heartbeat_interval * 3;
        lock(&self.peers).iter().filter(|(_, t)| t.elapsed() <= horizon).map(|(uid, _)| uid.clone()).collect()
    }

    /// Tidewire nodes not in `answered` that were heard of recently, now
    /// or when the request started (`asked`): a node that froze during the
    /// request is forgotten before it ends, and is still one that did not
    /// answer it.
    pub(super) fn silent(&self, answered: &[String], asked: &[String]) -> Vec<String> {
        let mut silent: Vec<String> = self
            .recent_peers()
            .into_iter()
            .chain(asked.iter().cloned())
            .filter(|uid| !answered.contains(uid))
            .collect();
        silent.sort_unstable();
        silent.dedup();
        silent
    }
}

/// Tells the other Tidewire nodes this one is alive.
pub(super) async fn heartbeat_task(hub: Weak<HubInner>) {
    let interval = match hub.upgrade().and_then(|h| Hub::from_inner(h).cluster().map(|c| c.config.heartbeat_interval)) {
        Some(i) => i,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub::from_inner(inner);
        if let Some(c) = hub.cluster() {
            c.beat(c.own_presence_digest(&hub), false);
            c.renew_lease().await;
            c.expire_retained(&hub);
            for uid in c.expire_peers() {
                tracing::info!(node = uid, "cluster: a Tidewire node stopped beating; its presence goes");
                c.forget_presence_of(&hub, &uid);
            }
        }
    }
}
