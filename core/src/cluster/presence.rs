//! Presence across the nodes of a cluster: one presence list, and
//! `presence:join` / `presence:leave` once per user for the whole cluster.
//!
//! Every Tidewire node keeps the whole cluster's presence in memory (the
//! pure [`Presence`](crate::presence::Presence), whose entries carry the
//! node that owns them), so reading it costs the same whatever the size of
//! the cluster. Nodes replicate it over the bus, on a channel of their own
//! that official socket.io nodes never see:
//!
//! * each change of a local connection (join, leave, metadata) is
//!   published as it happens, and every node applies it; the changes of one
//!   node arrive in order, and those of different nodes concern different
//!   connections, so every node reaches the same state;
//! * every node sends its members the events of the diffs it computes, to
//!   its own sockets only: each member hears each join or leave once;
//! * **leases**: a node's entries live as long as its heartbeats (the
//!   cluster's, every [`ClusterConfig::heartbeat_interval`](super::ClusterConfig::heartbeat_interval),
//!   5 s by default); three missed ones (15 s) and the other nodes remove
//!   them, sending the leaves; a clean shutdown
//!   ([`Hub::announce_leaving`](Hub::announce_leaving)) removes them
//!   at once; a restarted node has a new id, so its old entries expire like
//!   those of a dead node;
//! * **anti-entropy**: a heartbeat carries a digest of the sender's own
//!   entries; a node whose copy differs (a message lost in a Redis outage)
//!   asks for a snapshot, which replaces its copy, diffs and all. A node
//!   that joins asks everyone for one.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Cluster;
use crate::hub::presence::Delta;
use crate::hub::{Hub, Namespace};
use crate::presence::{ConnId, NodeId, UserId};
use crate::rooms::Room;

/// A presence message between Tidewire nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Message {
    /// Changes of the sender's connections in namespace `nsp`.
    Deltas { uid: String, nsp: String, deltas: Vec<Delta> },
    /// Asks `to` (everyone when absent) for a snapshot of its entries.
    Sync { uid: String, to: Option<String> },
    /// Every entry of the sender in namespace `nsp`: `(room, conn, user, meta)`.
    Snapshot { uid: String, nsp: String, entries: Vec<(Room, ConnId, UserId, Value)> },
}

/// The order-independent digest of a set of entries.
pub(crate) fn digest<'a>(entries: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> u64 {
    entries
        .map(|(nsp, room, conn)| {
            // Fx: deterministic on every node (no random seed).
            let mut h = rustc_hash::FxHasher::default();
            (nsp, room, conn).hash(&mut h);
            h.finish()
        })
        .fold(0, |acc, h| acc ^ h)
}

impl Cluster {
    /// Publishes the changes of this node's connections in `nsp`.
    pub(crate) fn publish_presence(&self, nsp: &str, deltas: Vec<Delta>) {
        if deltas.is_empty() {
            return;
        }
        self.publish_presence_message(&Message::Deltas { uid: self.uid().to_owned(), nsp: nsp.to_owned(), deltas });
    }

    pub(crate) fn publish_presence_message(&self, message: &Message) {
        let payload = serde_json::to_vec(message).unwrap_or_default();
        let _ = self.publish(self.presence_channel(), payload);
    }

    /// Asks for snapshots: from `to`, or from everyone.
    pub(crate) fn request_presence_sync(&self, to: Option<&str>) {
        self.publish_presence_message(&Message::Sync { uid: self.uid().to_owned(), to: to.map(str::to_owned) });
    }

    /// A presence message from another node.
    pub(crate) fn on_presence_message(&self, hub: &Hub, payload: &[u8]) {
        let message: Message = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => return self.malformed("presence message", &e),
        };
        match message {
            Message::Deltas { uid, nsp, deltas } => {
                if uid == self.uid() {
                    return;
                }
                // Its entries expire with its heartbeats, even if no beat was seen yet.
                self.seen(&uid);
                if let Some(ns) = hub.namespace(&nsp) {
                    ns.apply_remote_presence(&uid.into(), deltas);
                }
            }
            Message::Sync { uid, to } => {
                if uid == self.uid() || to.as_deref().is_some_and(|t| t != self.uid()) {
                    return;
                }
                for ns in hub.presence_namespaces() {
                    let entries = ns.local_presence_entries();
                    let snapshot = Message::Snapshot { uid: self.uid().to_owned(), nsp: ns.name().to_owned(), entries };
                    self.publish_presence_message(&snapshot);
                }
            }
            Message::Snapshot { uid, nsp, entries } => {
                if uid == self.uid() {
                    return;
                }
                self.seen(&uid);
                if let Some(ns) = hub.namespace(&nsp) {
                    ns.replace_remote_presence(&uid.into(), entries);
                }
            }
        }
    }

    /// The digest of this node's own entries, for its heartbeat.
    pub(crate) fn own_presence_digest(&self, hub: &Hub) -> u64 {
        hub.presence_namespaces().iter().fold(0, |acc, ns| acc ^ ns.presence_digest(self.uid()))
    }

    /// A heartbeat of `uid` said its entries digest to `theirs`: asks for
    /// a snapshot when this node's copy differs.
    pub(crate) fn check_presence_digest(&self, hub: &Hub, uid: &str, theirs: u64) {
        let ours = hub.presence_namespaces().iter().fold(0, |acc, ns| acc ^ ns.presence_digest(uid));
        if ours != theirs {
            tracing::debug!(node = uid, "presence: copy out of date, asking for a snapshot");
            self.request_presence_sync(Some(uid));
        }
    }

    /// `uid` is gone (its lease ran out, or it said goodbye): its entries go.
    pub(crate) fn forget_presence_of(&self, hub: &Hub, uid: &str) {
        for ns in hub.presence_namespaces() {
            ns.remove_remote_presence(uid);
        }
    }
}

impl Hub {
    /// The namespaces with presence on.
    pub(crate) fn presence_namespaces(&self) -> Vec<Namespace> {
        self.namespaces().into_iter().filter(|ns| ns.presence_prefix().is_some()).collect()
    }
}

impl Namespace {
    /// Applies another node's changes; the events go to this node's members.
    pub(crate) fn apply_remote_presence(&self, node: &NodeId, deltas: Vec<Delta>) {
        let change = self.with_tracker(|tracker| {
            let mut diffs = Vec::new();
            for delta in deltas {
                match delta {
                    Delta::Join { room, conn, user, meta } => {
                        if tracker.tracks_remote(&room) {
                            diffs.extend(tracker.state.join(&room, &user, &conn, node, meta));
                        }
                    }
                    Delta::Leave { room, conn } => diffs.extend(tracker.state.leave(&room, &conn)),
                    Delta::Update { conn, meta } => diffs.extend(tracker.state.update(&conn, meta)),
                }
            }
            diffs
        });
        self.publish_tracked(change);
    }

    /// Replaces every entry of `node` with `entries` (a snapshot); only the
    /// differences make events.
    pub(crate) fn replace_remote_presence(&self, node: &NodeId, entries: Vec<(Room, ConnId, UserId, Value)>) {
        let change = self.with_tracker(|tracker| {
            let wanted: HashSet<(Room, ConnId)> = entries.iter().map(|(r, c, _, _)| (r.clone(), c.clone())).collect();
            let mut diffs = Vec::new();
            for (room, conn) in tracker.state.entries_of_node(node) {
                if !wanted.contains(&(room.clone(), conn.clone())) {
                    diffs.extend(tracker.state.leave(&room, &conn));
                }
            }
            for (room, conn, user, meta) in entries {
                if tracker.tracks_remote(&room) {
                    diffs.extend(tracker.state.join(&room, &user, &conn, node, meta));
                }
            }
            diffs
        });
        self.publish_tracked(change);
    }

    /// Removes every entry of `node`.
    pub(crate) fn remove_remote_presence(&self, node: &str) {
        let change = self.with_tracker(|tracker| tracker.state.remove_node(node));
        self.publish_tracked(change);
    }

    /// This node's entries, for a snapshot.
    pub(crate) fn local_presence_entries(&self) -> Vec<(Room, ConnId, UserId, Value)> {
        self.read_tracker(|tracker| tracker.state.entries_with_meta_of_node(&tracker.node)).unwrap_or_default()
    }

    /// The digest of `node`'s entries in this namespace.
    pub(crate) fn presence_digest(&self, node: &str) -> u64 {
        self.read_tracker(|tracker| {
            let entries = tracker.state.entries_of_node(node);
            digest(entries.iter().map(|(room, conn)| (self.name(), &**room, &**conn)))
        })
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_order_and_see_any_difference() {
        let a = [("/", "room:1", "c1"), ("/", "room:2", "c1"), ("/chat", "room:1", "c2")];
        let mut b = a;
        b.reverse();
        assert_eq!(digest(a.into_iter()), digest(b.into_iter()));
        assert_ne!(digest(a.into_iter()), digest(a[..2].iter().copied()));
        assert_eq!(digest(std::iter::empty()), 0);
    }

    #[test]
    fn messages_are_tagged_json() {
        let m = Message::Deltas {
            uid: "n1".into(),
            nsp: "/".into(),
            deltas: vec![Delta::Leave { room: "room:1".into(), conn: "c".into() }],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"type":"deltas","uid":"n1","nsp":"/","deltas":[{"op":"leave","room":"room:1","conn":"c"}]}"#
        );
        assert!(serde_json::from_str::<Message>(r#"{"type":"nope"}"#).is_err());
    }
}
