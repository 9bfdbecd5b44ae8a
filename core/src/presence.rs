//! User-level presence per room: who is here, on how many connections, with
//! what status.
//!
//! Socket.IO itself only knows sockets; an app that shows "who is online"
//! must count a user once however many tabs or devices they have open. This
//! module does that bookkeeping as pure data (no I/O, no locks, no clock):
//! the hub wraps a [`Presence`] in its lock and forwards the diffs.
//!
//! # Semantics
//!
//! * A room's presence is a set of **users**. Each present user has the list
//!   of their **connections** (socket ids) in that room, and each connection
//!   carries a small metadata value (e.g. `{"device":"ios","status":"away"}`)
//!   and the id of the node that owns it, so that a cluster can drop a dead
//!   node's entries with [`Presence::remove_node`].
//! * A user joins a room on their first connection there and leaves it with
//!   their last. Every mutation returns the [`PresenceDiff`]s it caused:
//!   [`Join`](PresenceDiff::Join) only for the first connection of a user in
//!   a room, [`Leave`](PresenceDiff::Leave) only when the last one goes,
//!   [`Update`](PresenceDiff::Update) when the metadata of a present
//!   connection changes. Extra connections of a present user, and a repeated
//!   join with unchanged metadata, produce no diff. Metadata compare as JSON
//!   values: an object with the same entries in another key order is no
//!   change.
//! * A connection belongs to exactly one user. The hub never reuses a
//!   connection id for another user; if [`Presence::join`] sees that anyway,
//!   it panics in debug builds and, in release builds, drops the old
//!   connection from every room (its diffs are lost) before joining.
//! * Rooms and users are removed as soon as they have no connection left, so
//!   an index whose connections all left is [empty](Presence::is_empty).
//! * Orders are stable: [`Presence::list`] gives users in order of arrival
//!   (the time they became present, not their latest connection) and each
//!   user's connections in order of arrival; the rooms of a connection are in
//!   the order it joined them, the rooms of a user in the order they became
//!   present there.
//!
//! # Costs
//!
//! Besides a few hash lookups, `join` costs a scan of the user's connections
//! in the room; `leave` also scans the connection's rooms (and the user's
//! rooms when they leave), which are few; `update` and `remove_connection`
//! cost that per room of the connection. `list` sorts the room's users by
//! arrival (O(users log users)) and clones every metadata value; counts are
//! O(1). `remove_node` scans every entry, as a node going away is rare.
//!
//! Room names and user ids may come from clients, so their maps keep the
//! standard DoS-resistant hash; connection ids are made by the server and
//! use the Fx hash.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::rooms::Room;

/// A user id, as the app authenticated it. Cheap to clone.
pub type UserId = Arc<str>;
/// A connection (socket) id. Cheap to clone.
pub type ConnId = Arc<str>;
/// The id of the cluster node that owns a connection. Cheap to clone.
pub type NodeId = Arc<str>;

/// One connection of a present user, as [`Presence::list`] reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentConnection {
    /// The connection (socket) id.
    pub id: ConnId,
    /// The node that owns the connection.
    pub node: NodeId,
    /// The connection's metadata.
    pub meta: Value,
}

/// A user present in a room, with their connections there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentUser {
    /// The user.
    pub user_id: UserId,
    /// The user's connections in the room, in order of arrival.
    pub connections: Vec<PresentConnection>,
}

/// A change of a room's presence, returned by every mutation.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceDiff {
    /// `user` became present in `room` (their first connection there).
    Join {
        /// The room.
        room: Room,
        /// The user.
        user: UserId,
        /// The metadata of the user's first connection.
        meta: Value,
    },
    /// `user` is no longer present in `room` (their last connection left).
    Leave {
        /// The room.
        room: Room,
        /// The user.
        user: UserId,
    },
    /// The metadata of connection `conn` of `user` in `room` changed.
    Update {
        /// The room.
        room: Room,
        /// The user.
        user: UserId,
        /// The connection.
        conn: ConnId,
        /// The new metadata.
        meta: Value,
    },
}

/// A present user in one room.
#[derive(Debug, Clone)]
struct UserEntry {
    /// Arrival order in the room; a plain map plus a sort in `list` keeps
    /// removal O(1) where an order-preserving vector would shift.
    seq: u64,
    /// Never empty: the user leaves with their last connection.
    conns: Vec<PresentConnection>,
}

/// The presence of one room.
#[derive(Debug, Clone, Default)]
struct RoomPresence {
    users: HashMap<UserId, UserEntry>,
    /// Kept so that `connection_count` is O(1).
    connections: usize,
}

/// What the index knows of one connection.
#[derive(Debug, Clone)]
struct ConnEntry {
    user: UserId,
    /// Never empty; in order of joining, which `remove_connection` and
    /// `update` report in.
    rooms: Vec<Room>,
}

/// User-level presence of every room of a namespace (see the
/// [module docs](self) for the semantics).
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tidewire::presence::{ConnId, NodeId, Presence, PresenceDiff, UserId};
/// use tidewire::rooms::Room;
///
/// let mut presence = Presence::new();
/// let room: Room = "doc:42".into();
/// let alice: UserId = "alice".into();
/// let node: NodeId = "node-1".into();
/// let (tab1, tab2): (ConnId, ConnId) = ("sock-1".into(), "sock-2".into());
///
/// // Alice's first tab: she joins.
/// let diff = presence.join(&room, &alice, &tab1, &node, json!({"device": "web"}));
/// assert_eq!(diff, Some(PresenceDiff::Join { room: room.clone(), user: alice.clone(), meta: json!({"device": "web"}) }));
///
/// // Her second tab: no diff, still one user, now with two connections.
/// assert_eq!(presence.join(&room, &alice, &tab2, &node, json!({"device": "web"})), None);
/// assert_eq!((presence.user_count("doc:42"), presence.connection_count("doc:42")), (1, 2));
///
/// // The second tab goes idle.
/// let diffs = presence.update("sock-2", json!({"device": "web", "status": "away"}));
/// assert_eq!(diffs.len(), 1);
///
/// // Closing one tab keeps her present; closing the last one makes her leave.
/// assert_eq!(presence.leave("doc:42", "sock-1"), None);
/// assert!(presence.is_online("alice"));
/// assert_eq!(presence.remove_connection("sock-2"), vec![PresenceDiff::Leave { room, user: alice }]);
/// assert!(presence.is_empty());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Presence {
    rooms: HashMap<Room, RoomPresence>,
    conns: FxHashMap<ConnId, ConnEntry>,
    /// The rooms each user is present in, in order of becoming present.
    users: HashMap<UserId, Vec<Room>>,
    /// The next arrival number of a user in a room.
    next_seq: u64,
}

impl Presence {
    /// An empty index.
    pub fn new() -> Presence {
        Presence::default()
    }

    /// Adds `conn` of `user` (owned by `node`) to `room` with `meta`.
    ///
    /// Returns [`Join`](PresenceDiff::Join) if this is the user's first
    /// connection in the room, [`Update`](PresenceDiff::Update) if `conn` is
    /// already there with different metadata, and `None` otherwise (another
    /// connection of a present user, or a repeated join with the same
    /// metadata). A repeated join takes the new `node`.
    ///
    /// `conn` must not already belong to another user: that panics in debug
    /// builds; in release builds the old connection is first removed from
    /// every room, and the `Leave` diffs this causes are not reported.
    pub fn join(
        &mut self,
        room: &Room,
        user: &UserId,
        conn: &ConnId,
        node: &NodeId,
        meta: Value,
    ) -> Option<PresenceDiff> {
        if let Some(known) = self.conns.get(&**conn)
            && known.user != *user
        {
            debug_assert!(false, "connection {conn} joined as user {user} but belongs to user {}", known.user);
            self.remove_connection(conn);
        }
        let presence = self.rooms.entry(room.clone()).or_default();
        match presence.users.entry(user.clone()) {
            Entry::Occupied(mut e) => {
                let entry = e.get_mut();
                if let Some(c) = entry.conns.iter_mut().find(|c| c.id == *conn) {
                    if c.node != *node {
                        c.node = node.clone();
                    }
                    if c.meta == meta {
                        return None;
                    }
                    c.meta = meta.clone();
                    return Some(PresenceDiff::Update {
                        room: room.clone(),
                        user: user.clone(),
                        conn: conn.clone(),
                        meta,
                    });
                }
                entry.conns.push(PresentConnection { id: conn.clone(), node: node.clone(), meta });
                presence.connections += 1;
                self.add_room_of_conn(room, user, conn);
                None
            }
            Entry::Vacant(e) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let first = PresentConnection { id: conn.clone(), node: node.clone(), meta: meta.clone() };
                e.insert(UserEntry { seq, conns: vec![first] });
                presence.connections += 1;
                self.add_room_of_conn(room, user, conn);
                self.users.entry(user.clone()).or_default().push(room.clone());
                Some(PresenceDiff::Join { room: room.clone(), user: user.clone(), meta })
            }
        }
    }

    /// Removes `conn` from `room`.
    ///
    /// Returns [`Leave`](PresenceDiff::Leave) if it was its user's last
    /// connection there, `None` otherwise (including an unknown room or
    /// connection, which changes nothing).
    pub fn leave(&mut self, room: &str, conn: &str) -> Option<PresenceDiff> {
        let entry = self.conns.get_mut(conn)?;
        let at = entry.rooms.iter().position(|r| &**r == room)?;
        let room = entry.rooms.remove(at);
        let user = entry.user.clone();
        if entry.rooms.is_empty() {
            self.conns.remove(conn);
        }
        self.remove_entry(room, user, conn)
    }

    /// Removes `conn` from every room (its disconnect); diffs in room order
    /// of joining.
    pub fn remove_connection(&mut self, conn: &str) -> Vec<PresenceDiff> {
        let Some(entry) = self.conns.remove(conn) else { return Vec::new() };
        entry.rooms.into_iter().filter_map(|room| self.remove_entry(room, entry.user.clone(), conn)).collect()
    }

    /// Replaces `conn`'s metadata in every room it is in; one
    /// [`Update`](PresenceDiff::Update) per room where it changed, in room
    /// order of joining. Nothing for an unknown connection.
    pub fn update(&mut self, conn: &str, meta: Value) -> Vec<PresenceDiff> {
        let mut diffs = Vec::new();
        let Some(entry) = self.conns.get(conn) else { return diffs };
        for room in &entry.rooms {
            let Some(c) = self
                .rooms
                .get_mut(room)
                .and_then(|p| p.users.get_mut(&entry.user))
                .and_then(|u| u.conns.iter_mut().find(|c| &*c.id == conn))
            else {
                continue;
            };
            if c.meta != meta {
                c.meta = meta.clone();
                diffs.push(PresenceDiff::Update {
                    room: room.clone(),
                    user: entry.user.clone(),
                    conn: c.id.clone(),
                    meta: Value::Null,
                });
            }
        }
        // The diffs' copies are filled in last so that the final one takes
        // `meta` itself: one clone fewer.
        if let Some((last, init)) = diffs.split_last_mut() {
            for diff in init {
                set_meta(diff, meta.clone());
            }
            set_meta(last, meta);
        }
        diffs
    }

    /// Removes every connection owned by `node` (a node that died or shut
    /// down). A user whose last connection in a room goes gets a
    /// [`Leave`](PresenceDiff::Leave) there; diffs are ordered by room name,
    /// then connection id, so that every caller sees the same sequence.
    ///
    /// This scans every entry: nodes go away rarely.
    pub fn remove_node(&mut self, node: &str) -> Vec<PresenceDiff> {
        let gone = self.entries_of_node(node);
        gone.into_iter().filter_map(|(room, conn)| self.leave(&room, &conn)).collect()
    }

    /// The users present in `room`, in order of arrival, each with their
    /// connections there in order of arrival. Empty for an unknown room.
    pub fn list(&self, room: &str) -> Vec<PresentUser> {
        let Some(presence) = self.rooms.get(room) else { return Vec::new() };
        let mut users: Vec<(&UserId, &UserEntry)> = presence.users.iter().collect();
        users.sort_unstable_by_key(|(_, u)| u.seq);
        users.into_iter().map(|(id, u)| PresentUser { user_id: id.clone(), connections: u.conns.clone() }).collect()
    }

    /// How many users are present in `room`.
    pub fn user_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |p| p.users.len())
    }

    /// How many connections are present in `room`, over all its users.
    pub fn connection_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |p| p.connections)
    }

    /// Whether `user` is present in at least one room.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The rooms `user` is present in, in the order they became present.
    pub fn rooms_of_user(&self, user: &str) -> Vec<Room> {
        self.users.get(user).cloned().unwrap_or_default()
    }

    /// Every `(room, connection)` entry owned by `node`, sorted.
    pub fn entries_of_node(&self, node: &str) -> Vec<(Room, ConnId)> {
        let mut out: Vec<(Room, ConnId)> = self
            .rooms
            .iter()
            .flat_map(|(room, p)| p.users.values().flat_map(|u| &u.conns).map(move |c| (room, c)))
            .filter(|(_, c)| &*c.node == node)
            .map(|(room, c)| (room.clone(), c.id.clone()))
            .collect();
        out.sort_unstable();
        out
    }

    /// Every entry owned by `node` with its user and metadata, sorted by
    /// room and connection.
    pub fn entries_with_meta_of_node(&self, node: &str) -> Vec<(Room, ConnId, UserId, Value)> {
        let mut out: Vec<(Room, ConnId, UserId, Value)> = self
            .rooms
            .iter()
            .flat_map(|(room, p)| {
                p.users.iter().flat_map(move |(user, u)| u.conns.iter().map(move |c| (room, user, c)))
            })
            .filter(|(_, _, c)| &*c.node == node)
            .map(|(room, user, c)| (room.clone(), c.id.clone(), user.clone(), c.meta.clone()))
            .collect();
        out.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The rooms `conn` is in, in the order it joined them.
    pub fn rooms_of_connection(&self, conn: &str) -> Vec<Room> {
        self.conns.get(conn).map(|e| e.rooms.clone()).unwrap_or_default()
    }

    /// How many rooms have at least one present user.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The number of users present in at least one room.
    pub fn online_user_count(&self) -> usize {
        self.users.len()
    }

    /// The number of connections present in at least one room.
    pub fn online_connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether the index holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.conns.is_empty() && self.users.is_empty()
    }

    /// Records that `conn` (of `user`) is now in `room`.
    fn add_room_of_conn(&mut self, room: &Room, user: &UserId, conn: &ConnId) {
        self.conns
            .entry(conn.clone())
            .or_insert_with(|| ConnEntry { user: user.clone(), rooms: Vec::new() })
            .rooms
            .push(room.clone());
    }

    /// Removes `conn` of `user` from `room`'s presence (the connection's own
    /// entry is the caller's), dropping the user and the room once empty.
    fn remove_entry(&mut self, room: Room, user: UserId, conn: &str) -> Option<PresenceDiff> {
        let presence = self.rooms.get_mut(&room)?;
        let entry = presence.users.get_mut(&user)?;
        let at = entry.conns.iter().position(|c| &*c.id == conn)?;
        entry.conns.remove(at);
        presence.connections -= 1;
        if !entry.conns.is_empty() {
            return None;
        }
        presence.users.remove(&user);
        if presence.users.is_empty() {
            self.rooms.remove(&room);
        }
        if let Some(rooms) = self.users.get_mut(&user) {
            rooms.retain(|r| *r != room);
            if rooms.is_empty() {
                self.users.remove(&user);
            }
        }
        Some(PresenceDiff::Leave { room, user })
    }
}

/// Fills the metadata of an [`Update`](PresenceDiff::Update) diff.
fn set_meta(diff: &mut PresenceDiff, meta: Value) {
    if let PresenceDiff::Update { meta: m, .. } = diff {
        *m = meta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> Arc<str> {
        s.into()
    }

    fn join(p: &mut Presence, room: &str, user: &str, conn: &str, node: &str, meta: Value) -> Option<PresenceDiff> {
        p.join(&id(room), &id(user), &id(conn), &id(node), meta)
    }

    fn joined(room: &str, user: &str, meta: Value) -> PresenceDiff {
        PresenceDiff::Join { room: id(room), user: id(user), meta }
    }

    fn left(room: &str, user: &str) -> PresenceDiff {
        PresenceDiff::Leave { room: id(room), user: id(user) }
    }

    fn updated(room: &str, user: &str, conn: &str, meta: Value) -> PresenceDiff {
        PresenceDiff::Update { room: id(room), user: id(user), conn: id(conn), meta }
    }

    fn rooms(names: &[&str]) -> Vec<Room> {
        names.iter().map(|n| id(n)).collect()
    }

    #[test]
    fn multi_tab_joins_once_and_leaves_once() {
        let mut p = Presence::new();
        let meta = json!({"device": "web"});
        assert_eq!(join(&mut p, "doc", "alice", "s1", "n1", meta.clone()), Some(joined("doc", "alice", meta.clone())));
        assert_eq!(join(&mut p, "doc", "alice", "s2", "n1", json!({"device": "ios"})), None);
        assert_eq!((p.user_count("doc"), p.connection_count("doc"), p.room_count()), (1, 2, 1));
        // A repeated join with the same meta is a no-op.
        assert_eq!(join(&mut p, "doc", "alice", "s2", "n1", json!({"device": "ios"})), None);
        assert_eq!(p.connection_count("doc"), 2);
        assert_eq!(p.leave("doc", "s1"), None);
        assert_eq!((p.user_count("doc"), p.connection_count("doc")), (1, 1));
        assert!(p.is_online("alice"));
        assert_eq!(p.leave("doc", "s2"), Some(left("doc", "alice")));
        assert_eq!((p.user_count("doc"), p.connection_count("doc"), p.room_count()), (0, 0, 0));
        assert!(!p.is_online("alice"));
        assert!(p.is_empty());
    }

    #[test]
    fn rejoin_with_new_meta_is_an_update() {
        let mut p = Presence::new();
        join(&mut p, "doc", "alice", "s1", "n1", json!({"status": "here"}));
        assert_eq!(
            join(&mut p, "doc", "alice", "s1", "n2", json!({"status": "away"})),
            Some(updated("doc", "alice", "s1", json!({"status": "away"})))
        );
        let list = p.list("doc");
        assert_eq!(
            list[0].connections,
            vec![PresentConnection { id: id("s1"), node: id("n2"), meta: json!({"status": "away"}) }]
        );
        assert_eq!(p.connection_count("doc"), 1);
    }

    #[test]
    fn list_order_metas_and_updates() {
        let mut p = Presence::new();
        join(&mut p, "doc", "bob", "b1", "n1", json!({"device": "ios"}));
        join(&mut p, "doc", "alice", "a1", "n1", json!({"device": "web"}));
        join(&mut p, "doc", "bob", "b2", "n2", json!({"device": "web"}));
        join(&mut p, "chat", "alice", "a1", "n1", json!({"device": "web"}));
        let conn = |c: &str, n: &str, meta: Value| PresentConnection { id: id(c), node: id(n), meta };
        assert_eq!(
            p.list("doc"),
            vec![
                PresentUser {
                    user_id: id("bob"),
                    connections: vec![
                        conn("b1", "n1", json!({"device": "ios"})),
                        conn("b2", "n2", json!({"device": "web"}))
                    ],
                },
                PresentUser { user_id: id("alice"), connections: vec![conn("a1", "n1", json!({"device": "web"}))] },
            ]
        );

        // Bob's first tab leaving and coming back does not change his rank.
        assert_eq!(p.leave("doc", "b1"), None);
        assert_eq!(join(&mut p, "doc", "bob", "b1", "n1", json!({"device": "ios"})), None);
        let order: Vec<_> = p.list("doc").into_iter().map(|u| (u.user_id, u.connections.len())).collect();
        assert_eq!(order, vec![(id("bob"), 2), (id("alice"), 1)]);
        assert_eq!(p.list("doc")[0].connections[0].id, id("b2"), "connections in order of arrival");

        // An update touches only that connection, once per room.
        let away = json!({"device": "web", "status": "away"});
        assert_eq!(
            p.update("a1", away.clone()),
            vec![updated("doc", "alice", "a1", away.clone()), updated("chat", "alice", "a1", away.clone())]
        );
        assert_eq!(p.list("doc")[1].connections[0].meta, away);
        assert_eq!(p.list("chat")[0].connections[0].meta, away);
        assert_eq!(
            p.list("doc")[0].connections[0],
            PresentConnection { id: id("b2"), node: id("n2"), meta: json!({"device": "web"}) }
        );
        // The same meta again: nothing.
        assert_eq!(p.update("a1", away.clone()), vec![]);
        // Key order does not make a change.
        assert_eq!(p.update("a1", json!({"status": "away", "device": "web"})), vec![]);
        // Unknown connection: nothing.
        assert_eq!(p.update("zz", away), vec![]);
        // Only the room where the meta differs reports.
        assert_eq!(
            join(&mut p, "chat", "alice", "a1", "n1", json!({})),
            Some(updated("chat", "alice", "a1", json!({})))
        );
        assert_eq!(p.update("a1", json!({})), vec![updated("doc", "alice", "a1", json!({}))]);
    }

    #[test]
    fn serializes_camel_case() {
        let mut p = Presence::new();
        join(&mut p, "doc", "alice", "a1", "n1", json!({"device": "web"}));
        assert_eq!(
            serde_json::to_value(p.list("doc")).ok(),
            Some(json!([{"userId": "alice", "connections": [{"id": "a1", "node": "n1", "meta": {"device": "web"}}]}]))
        );
    }

    #[test]
    fn remove_connection_across_rooms() {
        let mut p = Presence::new();
        for room in ["r1", "r2", "r3"] {
            join(&mut p, room, "alice", "a1", "n1", json!(null));
        }
        join(&mut p, "r2", "alice", "a2", "n1", json!(null));
        join(&mut p, "r3", "bob", "b1", "n1", json!(null));
        assert_eq!(p.rooms_of_connection("a1"), rooms(&["r1", "r2", "r3"]));
        assert_eq!(p.rooms_of_user("alice"), rooms(&["r1", "r2", "r3"]));
        // Alice keeps r2 through a2; diffs come in room order of joining.
        assert_eq!(p.remove_connection("a1"), vec![left("r1", "alice"), left("r3", "alice")]);
        assert_eq!(p.rooms_of_connection("a1"), rooms(&[]));
        assert_eq!(p.rooms_of_user("alice"), rooms(&["r2"]));
        assert_eq!(p.rooms_of_connection("a2"), rooms(&["r2"]));
        assert!(p.is_online("alice"));
        assert_eq!((p.room_count(), p.user_count("r3"), p.user_count("r1")), (2, 1, 0));
        assert_eq!(p.remove_connection("a1"), vec![], "already gone");
        assert_eq!(p.remove_connection("a2"), vec![left("r2", "alice")]);
        assert!(!p.is_online("alice"));
        assert_eq!(p.remove_connection("b1"), vec![left("r3", "bob")]);
        assert!(p.is_empty());
    }

    #[test]
    fn remove_node_drops_only_its_entries() {
        let mut p = Presence::new();
        join(&mut p, "r1", "alice", "a1", "n1", json!(1)); // alice: n1 and n2 in r1
        join(&mut p, "r1", "alice", "a2", "n2", json!(2));
        join(&mut p, "r2", "alice", "a1", "n1", json!(1)); // only n1 in r2
        join(&mut p, "r1", "bob", "b1", "n2", json!(3)); // bob only on n2
        join(&mut p, "r2", "carol", "c1", "n1", json!(4));
        join(&mut p, "r3", "carol", "c1", "n1", json!(4));
        assert_eq!(p.remove_node("n1"), vec![left("r2", "alice"), left("r2", "carol"), left("r3", "carol")]);
        assert!(p.is_online("alice"));
        assert!(p.is_online("bob"));
        assert!(!p.is_online("carol"));
        assert_eq!(p.rooms_of_user("alice"), rooms(&["r1"]));
        assert_eq!(p.rooms_of_connection("a1"), rooms(&[]));
        assert_eq!(p.rooms_of_connection("a2"), rooms(&["r1"]));
        assert_eq!((p.room_count(), p.user_count("r1"), p.connection_count("r1")), (1, 2, 2));
        assert_eq!(p.remove_node("n1"), vec![]);
        assert_eq!(p.remove_node("n2"), vec![left("r1", "alice"), left("r1", "bob")]);
        assert!(p.is_empty());
    }

    #[test]
    fn unknown_room_or_connection_changes_nothing() {
        let mut p = Presence::new();
        join(&mut p, "r1", "alice", "a1", "n1", json!({"x": 1}));
        let before = p.list("r1");
        assert_eq!(p.leave("r2", "a1"), None);
        assert_eq!(p.leave("r1", "zz"), None);
        assert_eq!(p.leave("nope", "zz"), None);
        assert_eq!(p.remove_connection("zz"), vec![]);
        assert_eq!(p.remove_node("n9"), vec![]);
        assert_eq!(p.list("r1"), before);
        assert_eq!(p.list("r2"), vec![]);
        assert_eq!((p.room_count(), p.connection_count("r1"), p.connection_count("r2")), (1, 1, 0));
        assert_eq!(p.rooms_of_connection("a1"), rooms(&["r1"]));
        assert!(!p.is_online("zz"));
        assert_eq!(p.rooms_of_user("zz"), rooms(&[]));
    }

    /// A connection id reused for another user: a bug of the caller, caught
    /// in debug builds; release builds move the connection to the new user.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "belongs to user alice"))]
    fn reused_connection_moves_to_the_new_user() {
        let mut p = Presence::new();
        join(&mut p, "r1", "alice", "s1", "n1", json!(1));
        join(&mut p, "r2", "alice", "s1", "n1", json!(1));
        assert_eq!(join(&mut p, "r1", "bob", "s1", "n1", json!(2)), Some(joined("r1", "bob", json!(2))));
        assert!(!p.is_online("alice"));
        assert_eq!(p.rooms_of_connection("s1"), rooms(&["r1"]));
        assert_eq!(p.remove_connection("s1"), vec![left("r1", "bob")]);
        assert!(p.is_empty());
    }

    const USERS: usize = 20;
    const CONNS: usize = 50;
    const ROOMS: usize = 10;
    const NODES: usize = 3;

    /// Marsaglia's xorshift64: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// The naive model: connection `c` belongs to user `c % USERS` on node
    /// `c % NODES`; `entries` maps (room, conn) to (meta, arrival) and
    /// `arrivals` (room, user) to the user's arrival in the room.
    #[derive(Default)]
    struct Model {
        entries: HashMap<(usize, usize), (Value, u64)>,
        arrivals: HashMap<(usize, usize), u64>,
        seq: u64,
        /// Joins and leaves of an extra connection of a present user.
        quiet: [usize; 2],
    }

    /// A model entry grouped for a check: (arrival, connection, meta).
    type Arrived<'a> = (u64, usize, &'a Value);

    struct Names {
        rooms: Vec<Room>,
        users: Vec<UserId>,
        conns: Vec<ConnId>,
        nodes: Vec<NodeId>,
    }

    impl Model {
        fn tick(&mut self) -> u64 {
            self.seq += 1;
            self.seq
        }

        fn join(&mut self, n: &Names, r: usize, c: usize, meta: Value) -> Option<PresenceDiff> {
            let u = c % USERS;
            if let Some((m, _)) = self.entries.get_mut(&(r, c)) {
                if *m == meta {
                    return None;
                }
                *m = meta.clone();
                return Some(PresenceDiff::Update {
                    room: n.rooms[r].clone(),
                    user: n.users[u].clone(),
                    conn: n.conns[c].clone(),
                    meta,
                });
            }
            let seq = self.tick();
            self.entries.insert((r, c), (meta.clone(), seq));
            if self.arrivals.contains_key(&(r, u)) {
                self.quiet[0] += 1;
                return None;
            }
            self.arrivals.insert((r, u), seq);
            Some(PresenceDiff::Join { room: n.rooms[r].clone(), user: n.users[u].clone(), meta })
        }

        fn leave(&mut self, n: &Names, r: usize, c: usize) -> Option<PresenceDiff> {
            let u = c % USERS;
            self.entries.remove(&(r, c))?;
            if self.entries.keys().any(|&(r2, c2)| r2 == r && c2 % USERS == u) {
                self.quiet[1] += 1;
                return None;
            }
            self.arrivals.remove(&(r, u));
            Some(PresenceDiff::Leave { room: n.rooms[r].clone(), user: n.users[u].clone() })
        }

        /// The rooms of connection `c`, in order of joining.
        fn rooms_of(&self, c: usize) -> Vec<usize> {
            let mut rooms: Vec<(u64, usize)> =
                self.entries.iter().filter(|((_, c2), _)| *c2 == c).map(|(&(r, _), &(_, seq))| (seq, r)).collect();
            rooms.sort_unstable();
            rooms.into_iter().map(|(_, r)| r).collect()
        }

        fn remove_connection(&mut self, n: &Names, c: usize) -> Vec<PresenceDiff> {
            self.rooms_of(c).into_iter().filter_map(|r| self.leave(n, r, c)).collect()
        }

        fn update(&mut self, n: &Names, c: usize, meta: &Value) -> Vec<PresenceDiff> {
            let mut diffs = Vec::new();
            for r in self.rooms_of(c) {
                if let Some((m, _)) = self.entries.get_mut(&(r, c))
                    && m != meta
                {
                    *m = meta.clone();
                    diffs.push(PresenceDiff::Update {
                        room: n.rooms[r].clone(),
                        user: n.users[c % USERS].clone(),
                        conn: n.conns[c].clone(),
                        meta: meta.clone(),
                    });
                }
            }
            diffs
        }

        fn remove_node(&mut self, n: &Names, node: usize) -> Vec<PresenceDiff> {
            let mut gone: Vec<(usize, usize)> =
                self.entries.keys().copied().filter(|&(_, c)| c % NODES == node).collect();
            gone.sort_unstable_by(|a, b| (&n.rooms[a.0], &n.conns[a.1]).cmp(&(&n.rooms[b.0], &n.conns[b.1])));
            gone.into_iter().filter_map(|(r, c)| self.leave(n, r, c)).collect()
        }

        /// Every query of `p` agrees with the model.
        fn check(&self, n: &Names, p: &Presence, step: usize) {
            // The model grouped in one pass per map (a scan per room, user
            // and connection makes the test slow in debug builds), each group
            // sorted by arrival.
            let mut conns_of: Vec<Vec<Vec<Arrived<'_>>>> = vec![vec![Vec::new(); USERS]; ROOMS];
            let mut rooms_of_conn: Vec<Vec<(u64, usize)>> = vec![Vec::new(); CONNS];
            for (&(r, c), (meta, seq)) in &self.entries {
                conns_of[r][c % USERS].push((*seq, c, meta));
                rooms_of_conn[c].push((*seq, r));
            }
            let mut users_of: Vec<Vec<(u64, usize)>> = vec![Vec::new(); ROOMS];
            let mut rooms_of_user: Vec<Vec<(u64, usize)>> = vec![Vec::new(); USERS];
            for (&(r, u), &seq) in &self.arrivals {
                users_of[r].push((seq, u));
                rooms_of_user[u].push((seq, r));
            }
            conns_of.iter_mut().flatten().for_each(|v| v.sort_unstable_by_key(|&(seq, _, _)| seq));
            rooms_of_conn.iter_mut().chain(&mut users_of).chain(&mut rooms_of_user).for_each(|v| v.sort_unstable());
            let room_names =
                |rooms: &[(u64, usize)]| rooms.iter().map(|&(_, r)| n.rooms[r].clone()).collect::<Vec<_>>();

            for r in 0..ROOMS {
                let expected: Vec<PresentUser> = users_of[r]
                    .iter()
                    .map(|&(_, u)| PresentUser {
                        user_id: n.users[u].clone(),
                        connections: conns_of[r][u]
                            .iter()
                            .map(|&(_, c, meta)| PresentConnection {
                                id: n.conns[c].clone(),
                                node: n.nodes[c % NODES].clone(),
                                meta: meta.clone(),
                            })
                            .collect(),
                    })
                    .collect();
                assert_eq!(p.list(&n.rooms[r]), expected, "list of room {r} at step {step}");
                assert_eq!(p.user_count(&n.rooms[r]), users_of[r].len(), "step {step}");
                let connections: usize = conns_of[r].iter().map(Vec::len).sum();
                assert_eq!(p.connection_count(&n.rooms[r]), connections, "step {step}");
            }
            assert_eq!(p.room_count(), users_of.iter().filter(|u| !u.is_empty()).count(), "step {step}");
            for (u, rooms) in rooms_of_user.iter().enumerate() {
                assert_eq!(p.is_online(&n.users[u]), !rooms.is_empty(), "step {step}");
                assert_eq!(p.rooms_of_user(&n.users[u]), room_names(rooms), "rooms of user {u} at step {step}");
            }
            for (c, rooms) in rooms_of_conn.iter().enumerate() {
                assert_eq!(p.rooms_of_connection(&n.conns[c]), room_names(rooms), "rooms of conn {c} at step {step}");
            }
            assert_eq!(p.is_empty(), self.entries.is_empty(), "step {step}");
        }
    }

    #[test]
    fn random_operations_match_a_naive_model() {
        let names = Names {
            rooms: (0..ROOMS).map(|r| id(&format!("r{r}"))).collect(),
            users: (0..USERS).map(|u| id(&format!("u{u}"))).collect(),
            conns: (0..CONNS).map(|c| id(&format!("c{c}"))).collect(),
            nodes: (0..NODES).map(|n| id(&format!("n{n}"))).collect(),
        };
        let n = &names;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut p = Presence::new();
        let mut model = Model::default();
        let mut seen = [0usize; 4]; // joins, leaves, updates, rooms emptied
        for step in 0..10_000 {
            // Filling phases make multi-tab rooms common; draining phases
            // empty rooms.
            let filling = !(1_000..1_600).contains(&(step % 2_000));
            let (joins, leaves, updates) = if filling { (600, 850, 950) } else { (50, 600, 700) };
            let (r, c) = (rng.below(ROOMS), rng.below(CONNS));
            // Small metas keep the full check of every step fast in debug builds.
            let meta = json!(rng.below(3));
            let (got, want) = match rng.below(1000) {
                k if k < joins => {
                    let got = p.join(&n.rooms[r], &n.users[c % USERS], &n.conns[c], &n.nodes[c % NODES], meta.clone());
                    (got.into_iter().collect(), model.join(n, r, c, meta).into_iter().collect())
                }
                k if k < leaves => (
                    p.leave(&n.rooms[r], &n.conns[c]).into_iter().collect(),
                    model.leave(n, r, c).into_iter().collect(),
                ),
                k if k < updates => (p.update(&n.conns[c], meta.clone()), model.update(n, c, &meta)),
                ..998 => (p.remove_connection(&n.conns[c]), model.remove_connection(n, c)),
                _ => {
                    let node = rng.below(NODES);
                    (p.remove_node(&n.nodes[node]), model.remove_node(n, node))
                }
            };
            assert_eq!(got, want, "diffs at step {step}");
            for diff in &got {
                match diff {
                    PresenceDiff::Join { .. } => seen[0] += 1,
                    PresenceDiff::Leave { room, .. } => {
                        seen[1] += 1;
                        seen[3] += usize::from(p.user_count(room) == 0);
                    }
                    PresenceDiff::Update { .. } => seen[2] += 1,
                }
            }
            model.check(n, &p, step);
        }
        assert!(seen[..3].iter().all(|&k| k > 100) && seen[3] > 20, "every kind of diff exercised: {seen:?}");
        assert!(model.quiet.iter().all(|&k| k > 100), "multi-tab joins and leaves exercised: {:?}", model.quiet);
        assert!(!p.is_empty());
        for c in 0..CONNS {
            assert_eq!(p.remove_connection(&n.conns[c]), model.remove_connection(n, c));
        }
        assert!(p.is_empty());
        assert_eq!(p.room_count(), 0);
        assert!(model.entries.is_empty() && model.arrivals.is_empty());
    }
}
