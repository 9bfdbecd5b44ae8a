//! The room index of one namespace: room -> members and member -> rooms,
//! and the resolution of broadcast targets.
//!
//! Pure data, no I/O and no locks: the hub wraps it. Every change returns
//! the [`RoomEvent`]s it caused (a room created on its first member and
//! deleted with its last one, a member joining or leaving), so presence and
//! the cluster bus can follow rooms without polling.
//!
//! Members are identified by a small `Copy` key (the hub uses a per-namespace
//! counter), which keeps both maps compact and target resolution cheap. Sets
//! of members use the Fx hash: member keys are assigned by the server, not
//! chosen by clients, so they need no DoS-resistant hashing; room names,
//! which clients may influence, keep the standard SipHash.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

/// A room name. Cheap to clone.
pub type Room = Arc<str>;

/// What a change to the index did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent<K> {
    /// The room got its first member.
    Created(Room),
    /// The room lost its last member.
    Deleted(Room),
    /// `member` joined `room`.
    Joined {
        /// The room.
        room: Room,
        /// The member.
        member: K,
    },
    /// `member` left `room`.
    Left {
        /// The room.
        room: Room,
        /// The member.
        member: K,
    },
}

/// Which members a broadcast reaches: the union of `rooms` (every member
/// when empty), minus the members of any room in `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Rooms whose members are reached; empty means everyone.
    pub rooms: Vec<Room>,
    /// Rooms whose members are skipped.
    pub except: Vec<Room>,
}

impl Target {
    /// Every member.
    pub fn all() -> Target {
        Target::default()
    }
}

/// Room membership of one namespace.
///
/// # Examples
/// ```
/// use tidewire::rooms::{RoomEvent, RoomIndex, Target};
/// let mut index = RoomIndex::new();
/// let events = index.join(1u64, ["lobby".into()]);
/// assert_eq!(events, vec![RoomEvent::Created("lobby".into()), RoomEvent::Joined { room: "lobby".into(), member: 1 }]);
/// index.join(2, ["lobby".into(), "vip".into()]);
/// let mut reached = Vec::new();
/// index.resolve(&Target { rooms: vec!["lobby".into()], except: vec!["vip".into()] }, |m| reached.push(*m));
/// assert_eq!(reached, vec![1]);
/// ```
#[derive(Debug, Clone)]
pub struct RoomIndex<K> {
    rooms: HashMap<Room, FxHashSet<K>>,
    members: FxHashMap<K, HashSet<Room>>,
}

impl<K> Default for RoomIndex<K> {
    fn default() -> Self {
        RoomIndex { rooms: HashMap::new(), members: FxHashMap::default() }
    }
}

impl<K: Copy + Eq + Hash> RoomIndex<K> {
    /// An empty index.
    pub fn new() -> Self {
        RoomIndex::default()
    }

    /// Registers `member` with no rooms (so that "everyone" reaches it).
    pub fn add_member(&mut self, member: K) {
        self.members.entry(member).or_default();
    }

    /// Adds `member` to each of `rooms` (registering the member if needed).
    /// Rooms it is already in are skipped.
    pub fn join(&mut self, member: K, rooms: impl IntoIterator<Item = Room>) -> Vec<RoomEvent<K>> {
        let mut events = Vec::new();
        let joined = self.members.entry(member).or_default();
        for room in rooms {
            if !joined.insert(room.clone()) {
                continue;
            }
            match self.rooms.entry(room.clone()) {
                Entry::Occupied(mut e) => {
                    e.get_mut().insert(member);
                }
                Entry::Vacant(e) => {
                    e.insert(std::iter::once(member).collect());
                    events.push(RoomEvent::Created(room.clone()));
                }
            }
            events.push(RoomEvent::Joined { room, member });
        }
        events
    }

    /// Removes `member` from `room`.
    pub fn leave(&mut self, member: K, room: &str) -> Vec<RoomEvent<K>> {
        let mut events = Vec::new();
        let Some(joined) = self.members.get_mut(&member) else { return events };
        let Some(room) = joined.take(room) else { return events };
        self.remove_from_room(member, room, &mut events);
        events
    }

    /// Removes `member` from every room and from the index.
    pub fn remove_member(&mut self, member: K) -> Vec<RoomEvent<K>> {
        let mut events = Vec::new();
        if let Some(joined) = self.members.remove(&member) {
            for room in joined {
                self.remove_from_room(member, room, &mut events);
            }
        }
        events
    }

    fn remove_from_room(&mut self, member: K, room: Room, events: &mut Vec<RoomEvent<K>>) {
        if let Entry::Occupied(mut e) = self.rooms.entry(room.clone()) {
            e.get_mut().remove(&member);
            let now_empty = e.get().is_empty();
            if now_empty {
                e.remove();
            }
            events.push(RoomEvent::Left { room: room.clone(), member });
            if now_empty {
                events.push(RoomEvent::Deleted(room));
            }
        }
    }

    /// The rooms `member` is in.
    pub fn rooms_of(&self, member: K) -> impl Iterator<Item = &Room> {
        self.members.get(&member).into_iter().flatten()
    }

    /// Whether `member` is in `room`.
    pub fn contains(&self, member: K, room: &str) -> bool {
        self.members.get(&member).is_some_and(|r| r.contains(room))
    }

    /// The members of `room`.
    pub fn members_of(&self, room: &str) -> impl Iterator<Item = &K> {
        self.rooms.get(room).into_iter().flatten()
    }

    /// Every room with at least one member.
    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.keys()
    }

    /// The number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The number of registered members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Calls `visit` once for each member `target` reaches.
    pub fn resolve(&self, target: &Target, mut visit: impl FnMut(&K)) {
        let excluded: FxHashSet<K> = match target.except.as_slice() {
            [] => FxHashSet::default(),
            rooms => rooms.iter().flat_map(|r| self.members_of(r)).copied().collect(),
        };
        let keep = |m: &&K| !excluded.contains(m);
        match target.rooms.as_slice() {
            [] => self.members.keys().filter(keep).for_each(&mut visit),
            [room] => self.members_of(room).filter(keep).for_each(&mut visit),
            rooms => {
                // A member of several named rooms is reached once.
                let mut seen: FxHashSet<K> = FxHashSet::default();
                for room in rooms {
                    for m in self.members_of(room).filter(keep) {
                        if seen.insert(*m) {
                            visit(m);
                        }
                    }
                }
            }
        }
    }

    /// The number of members `target` reaches.
    pub fn count(&self, target: &Target) -> usize {
        let mut n = 0;
        self.resolve(target, |_| n += 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> Room {
        s.into()
    }

    fn reached(index: &RoomIndex<u32>, rooms: &[&str], except: &[&str]) -> Vec<u32> {
        let target =
            Target { rooms: rooms.iter().map(|r| room(r)).collect(), except: except.iter().map(|r| room(r)).collect() };
        let mut out = Vec::new();
        index.resolve(&target, |m| out.push(*m));
        out.sort_unstable();
        out
    }

    #[test]
    fn lifecycle_events_fire_on_first_join_and_last_leave() {
        let mut index = RoomIndex::new();
        assert_eq!(
            index.join(1, [room("a")]),
            vec![RoomEvent::Created(room("a")), RoomEvent::Joined { room: room("a"), member: 1 }]
        );
        assert_eq!(index.join(2, [room("a")]), vec![RoomEvent::Joined { room: room("a"), member: 2 }]);
        assert_eq!(index.join(2, [room("a")]), vec![], "joining twice does nothing");
        assert_eq!(index.leave(1, "a"), vec![RoomEvent::Left { room: room("a"), member: 1 }]);
        assert_eq!(index.leave(1, "a"), vec![], "leaving twice does nothing");
        assert_eq!(
            index.leave(2, "a"),
            vec![RoomEvent::Left { room: room("a"), member: 2 }, RoomEvent::Deleted(room("a"))]
        );
        assert_eq!(index.room_count(), 0);
        assert_eq!(index.leave(9, "a"), vec![]);
    }

    #[test]
    fn remove_member_leaves_every_room_and_cleans_up() {
        let mut index = RoomIndex::new();
        index.join(1, [room("a"), room("b")]);
        index.join(2, [room("b")]);
        let mut events = index.remove_member(1);
        events.sort_by_key(|e| format!("{e:?}"));
        assert!(events.contains(&RoomEvent::Deleted(room("a"))));
        assert!(events.contains(&RoomEvent::Left { room: room("b"), member: 1 }));
        assert!(!events.contains(&RoomEvent::Deleted(room("b"))));
        assert_eq!(index.member_count(), 1);
        index.remove_member(2);
        assert_eq!((index.room_count(), index.member_count()), (0, 0));
    }

    #[test]
    fn resolution_is_a_union_minus_except_without_duplicates() {
        let mut index = RoomIndex::new();
        index.join(1, [room("a"), room("s1")]);
        index.join(2, [room("a"), room("b"), room("s2")]);
        index.join(3, [room("b"), room("s3")]);
        index.add_member(4);
        assert_eq!(reached(&index, &[], &[]), vec![1, 2, 3, 4]);
        assert_eq!(reached(&index, &["a"], &[]), vec![1, 2]);
        assert_eq!(reached(&index, &["a", "b"], &[]), vec![1, 2, 3]);
        assert_eq!(reached(&index, &["a", "b"], &["s2"]), vec![1, 3]);
        assert_eq!(reached(&index, &[], &["b"]), vec![1, 4]);
        assert_eq!(reached(&index, &["nope"], &[]), Vec::<u32>::new());
        assert_eq!(index.count(&Target { rooms: vec![room("a"), room("b")], except: vec![] }), 3);
    }

    #[test]
    fn queries() {
        let mut index = RoomIndex::new();
        index.join(7u8, [room("x"), room("y")]);
        assert!(index.contains(7, "x"));
        assert!(!index.contains(7, "z"));
        let mut rooms: Vec<_> = index.rooms_of(7).map(|r| r.to_string()).collect();
        rooms.sort();
        assert_eq!(rooms, ["x", "y"]);
        assert_eq!(index.members_of("y").copied().collect::<Vec<_>>(), vec![7]);
    }
}
