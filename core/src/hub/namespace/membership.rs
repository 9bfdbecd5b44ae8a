//! Room membership of a namespace's sockets: joining and leaving, the
//! room queries, and the notifications a change makes (room listeners and
//! the adapter).

use std::sync::Arc;

use super::tracking::{Tracked, track};
use super::{Deferred, Namespace, State, TooManyRooms, read, write};
use crate::hub::{RoomChange, Socket};
use crate::rooms::{Room, RoomEvent};

impl Namespace {
    // --- rooms ---------------------------------------------------------------

    pub(crate) fn join(&self, key: u64, rooms: Vec<Room>) -> Result<(), TooManyRooms> {
        self.join_deferred(key, rooms)?.run(self);
        Ok(())
    }

    /// [`join`](Self::join), with the notifications left to the caller.
    pub(crate) fn join_deferred(&self, key: u64, rooms: Vec<Room>) -> Result<Deferred, TooManyRooms> {
        let max = self.hub().map_or(usize::MAX, |h| h.config().max_rooms_per_socket);
        let events = {
            let mut st = write(&self.inner.state);
            if !st.sockets.contains_key(&key) {
                return Ok(Deferred { changes: Vec::new(), presence: Tracked::default() });
            }
            let new = rooms.iter().filter(|r| !st.rooms.contains(key, r)).count();
            if new > 0 && st.rooms.rooms_of(key).count() + new > max {
                return Err(TooManyRooms { max });
            }
            let events = st.rooms.join(key, rooms);
            let diffs = track(&mut st, &events);
            (self.changes(&st, events), diffs)
        };
        let (changes, presence) = events;
        Ok(Deferred { changes, presence })
    }

    pub(crate) fn leave(&self, key: u64, room: &str) {
        let events = {
            let mut st = write(&self.inner.state);
            let events = st.rooms.leave(key, room);
            let diffs = track(&mut st, &events);
            (self.changes(&st, events), diffs)
        };
        let (events, tracked) = events;
        self.notify(&events);
        self.publish_tracked(tracked);
    }

    pub(crate) fn rooms_of(&self, key: u64) -> Vec<Room> {
        read(&self.inner.state).rooms.rooms_of(key).cloned().collect()
    }

    /// Of `rooms`, listened to for a socket that did not end up in them,
    /// those without a member here are no longer listened to. Decided and
    /// told under the namespace's lock: a socket that joins one of them
    /// meanwhile tells the adapter after, and wins.
    pub(crate) fn forget_unused(&self, rooms: Vec<Room>) {
        if rooms.is_empty() {
            return;
        }
        let adapter = self.adapter();
        let st = read(&self.inner.state);
        let unused: Vec<RoomChange> =
            rooms.into_iter().filter(|r| st.rooms.members_of(r).next().is_none()).map(RoomChange::Deleted).collect();
        if !unused.is_empty() {
            adapter.rooms_changed(self.name(), &unused);
        }
    }

    /// Whether `room` has a member on this node.
    pub(crate) fn has_room(&self, room: &str) -> bool {
        read(&self.inner.state).rooms.members_of(room).next().is_some()
    }

    pub(crate) fn in_room(&self, key: u64, room: &str) -> bool {
        read(&self.inner.state).rooms.contains(key, room)
    }

    /// Every room with at least one member on this node.
    pub fn rooms(&self) -> Vec<Room> {
        read(&self.inner.state).rooms.rooms().cloned().collect()
    }

    /// The number of rooms with at least one member on this node (each
    /// socket's own room included).
    pub fn room_count(&self) -> usize {
        read(&self.inner.state).rooms.room_count()
    }

    pub(super) fn changes(&self, st: &State, events: Vec<RoomEvent<u64>>) -> Vec<RoomChange> {
        let id = |k: u64| -> Arc<str> { st.sockets.get(&k).map(Socket::id_arc).unwrap_or_else(|| "".into()) };
        events
            .into_iter()
            .map(|e| match e {
                RoomEvent::Created(r) => RoomChange::Created(r),
                RoomEvent::Deleted(r) => RoomChange::Deleted(r),
                RoomEvent::Joined { room, member } => RoomChange::Joined { room, socket: id(member) },
                RoomEvent::Left { room, member } => RoomChange::Left { room, socket: id(member) },
            })
            .collect()
    }

    pub(super) fn notify(&self, changes: &[RoomChange]) {
        if changes.is_empty() {
            return;
        }
        self.adapter().rooms_changed(self.name(), changes);
        let handlers = self.handlers();
        for l in &handlers.room_listeners {
            for c in changes {
                l.on_room_change(self.name(), c);
            }
        }
    }
}
