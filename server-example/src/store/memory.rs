//! [`MemoryStore`]: the recent messages of the recently used rooms, in
//! memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::{BoxFuture, ChatMessage, MessageStore, NewMessage, SaveError, StoreError, StoreLimits, cost};

/// A store in memory, within [`StoreLimits`]: nothing survives the
/// process. A room whose history is dropped is forgotten entirely (no empty
/// rooms are kept), and so is the start it counted for its user.
#[derive(Debug, Default)]
pub struct MemoryStore {
    limits: StoreLimits,
    state: Mutex<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    rooms: HashMap<String, Room>,
    /// Room ids by last use, least recent first.
    by_use: BTreeMap<u64, String>,
    /// Rooms started per user (users with none are not kept).
    started: HashMap<String, usize>,
    /// Bytes of all the messages kept.
    bytes: usize,
    /// Counts saves: the use order of rooms.
    clock: u64,
    /// The last message id given.
    last_id: i64,
}

#[derive(Debug)]
struct Room {
    /// Oldest first, with what each counts for.
    messages: VecDeque<(ChatMessage, usize)>,
    bytes: usize,
    last_used: u64,
    starter: String,
}

impl Rooms {
    /// Forgets the least recently used room, other than `keep`; whether one was.
    fn evict_one(&mut self, keep: &str) -> bool {
        let Some((&used, id)) = self.by_use.iter().find(|(_, id)| id.as_str() != keep) else { return false };
        let id = id.clone();
        self.by_use.remove(&used);
        if let Some(room) = self.rooms.remove(&id) {
            self.bytes -= room.bytes;
            if let Some(n) = self.started.get_mut(&room.starter) {
                *n -= 1;
                if *n == 0 {
                    self.started.remove(&room.starter);
                }
            }
        }
        true
    }

    fn save(&mut self, limits: &StoreLimits, message: NewMessage) -> Result<ChatMessage, SaveError> {
        let id = message.room_id.clone();
        match self.rooms.get(&id) {
            Some(_) => {}
            None => {
                let starter = &message.sender_id;
                if self.started.get(starter).copied().unwrap_or(0) >= limits.rooms_per_user {
                    return Err(SaveError::TooManyRooms { limit: limits.rooms_per_user });
                }
            }
        }
        self.clock += 1;
        let now = self.clock;
        match self.rooms.get_mut(&id) {
            Some(room) => {
                self.by_use.remove(&room.last_used);
                room.last_used = now;
            }
            None => {
                while self.rooms.len() >= limits.max_rooms.max(1) && self.evict_one(&id) {}
                let starter = message.sender_id.clone();
                *self.started.entry(starter.clone()).or_default() += 1;
                let room = Room { messages: VecDeque::new(), bytes: 0, last_used: now, starter };
                self.rooms.insert(id.clone(), room);
            }
        }
        self.by_use.insert(now, id.clone());
        let added = cost(&message);
        self.last_id += 1;
        let saved = message.with_id(self.last_id);
        let room = self.rooms.get_mut(&id).unwrap_or_else(|| unreachable!("the room was just found or made"));
        room.messages.push_back((saved.clone(), added));
        room.bytes += added;
        self.bytes += added;
        // The room's own bound, then the store's: other rooms go first,
        // least recently used first; the room written to keeps its newest
        // message whatever its size.
        let over_room = room.messages.len().saturating_sub(limits.messages_per_room.max(1));
        self.trim(&id, over_room);
        while self.bytes > limits.max_bytes && self.evict_one(&id) {}
        while self.bytes > limits.max_bytes && self.rooms.get(&id).is_some_and(|r| r.messages.len() > 1) {
            self.trim(&id, 1);
        }
        Ok(saved)
    }

    /// Drops the `n` oldest messages of room `id`.
    fn trim(&mut self, id: &str, n: usize) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        for (_, c) in room.messages.drain(..n.min(room.messages.len())) {
            room.bytes -= c;
            self.bytes -= c;
        }
    }

    fn history(&self, room_id: &str, before: Option<i64>, limit: usize) -> Vec<ChatMessage> {
        let Some(room) = self.rooms.get(room_id) else { return Vec::new() };
        let before = before.unwrap_or(i64::MAX);
        // Ids increase along the deque: the newest below `before`, then oldest first.
        let end = room.messages.partition_point(|(m, _)| id_of(m) < before);
        room.messages.range(end.saturating_sub(limit)..end).map(|(m, _)| m.clone()).collect()
    }
}

fn id_of(m: &ChatMessage) -> i64 {
    m.id.parse().unwrap_or_else(|_| unreachable!("the memory store gives numeric ids"))
}

impl MemoryStore {
    /// An empty store within `limits`.
    pub fn new(limits: StoreLimits) -> MemoryStore {
        MemoryStore { limits, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MessageStore for MemoryStore {
    fn save(&self, message: NewMessage) -> BoxFuture<'_, Result<ChatMessage, SaveError>> {
        let saved = self.lock().save(&self.limits, message);
        Box::pin(async move { saved })
    }

    fn history<'a>(
        &'a self,
        room_id: &'a str,
        before: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        let page = self.lock().history(room_id, before, limit);
        Box::pin(async move { Ok(page) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, sender: &str, content_bytes: usize) -> NewMessage {
        NewMessage::new(room, sender, "x".repeat(content_bytes), "")
    }

    /// Saves and returns the id given.
    fn save(store: &MemoryStore, m: NewMessage) -> Result<String, SaveError> {
        store.lock().save(&store.limits, m).map(|m| m.id)
    }

    /// Room ids kept, with their message ids.
    fn kept(store: &MemoryStore) -> Vec<(String, Vec<String>)> {
        let state = store.lock();
        let mut rooms: Vec<_> = state
            .rooms
            .iter()
            .map(|(id, r)| (id.clone(), r.messages.iter().map(|(m, _)| m.id.clone()).collect()))
            .collect();
        rooms.sort();
        rooms
    }

    fn ids(ids: &[u32]) -> Vec<String> {
        ids.iter().map(u32::to_string).collect()
    }

    /// The store's accounting matches what it holds.
    fn check(store: &MemoryStore) {
        let state = store.lock();
        let bytes: usize = state.rooms.values().flat_map(|r| r.messages.iter()).map(|(_, c)| c).sum();
        assert_eq!(state.bytes, bytes);
        assert_eq!(state.by_use.len(), state.rooms.len());
        assert!(state.rooms.values().all(|r| !r.messages.is_empty()), "no empty rooms");
        let mut started: HashMap<String, usize> = HashMap::new();
        for r in state.rooms.values() {
            *started.entry(r.starter.clone()).or_default() += 1;
        }
        assert_eq!(state.started, started);
    }

    fn limits(messages_per_room: usize, max_bytes: usize, max_rooms: usize, rooms_per_user: usize) -> StoreLimits {
        StoreLimits { messages_per_room, max_bytes, max_rooms, rooms_per_user }
    }

    #[test]
    fn memory_store_keeps_the_last_messages_per_room() {
        let store = MemoryStore::new(limits(2, usize::MAX, 100, 100));
        for _ in 0..3 {
            save(&store, message("r", "u", 1)).unwrap();
        }
        assert_eq!(kept(&store), [("r".into(), ids(&[2, 3]))]);
        check(&store);
    }

    #[test]
    fn past_max_rooms_the_least_recently_used_room_goes() {
        let store = MemoryStore::new(limits(10, usize::MAX, 2, 100));
        save(&store, message("a", "u", 1)).unwrap();
        save(&store, message("b", "v", 1)).unwrap();
        save(&store, message("a", "u", 1)).unwrap(); // a is now the more recent
        save(&store, message("c", "w", 1)).unwrap();
        assert_eq!(kept(&store), [("a".into(), ids(&[1, 3])), ("c".into(), ids(&[4]))]);
        check(&store);
        assert!(!store.lock().started.contains_key("v"), "b's starter no longer counts it");
    }

    #[test]
    fn past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages() {
        let one = cost(&message("a", "u", 1000));
        let store = MemoryStore::new(limits(100, 3 * one, 100, 100));
        save(&store, message("a", "u", 1000)).unwrap();
        save(&store, message("b", "u", 1000)).unwrap();
        save(&store, message("c", "u", 1000)).unwrap();
        save(&store, message("b", "u", 1000)).unwrap(); // over: a, the least recent, goes
        assert_eq!(kept(&store), [("b".into(), ids(&[2, 4])), ("c".into(), ids(&[3]))]);
        check(&store);
        // One room alone over the bound keeps its newest messages.
        for _ in 4..10 {
            save(&store, message("b", "u", 1000)).unwrap();
        }
        assert_eq!(kept(&store), [("b".into(), ids(&[8, 9, 10]))]);
        assert!(store.lock().bytes <= 3 * one);
        // A single message larger than the bound is kept alone.
        save(&store, message("d", "u", 5000)).unwrap();
        assert_eq!(kept(&store), [("d".into(), ids(&[11]))]);
        check(&store);
    }

    #[test]
    fn a_user_may_start_only_so_many_rooms() {
        let store = MemoryStore::new(limits(10, usize::MAX, 100, 2));
        save(&store, message("a", "mallory", 1)).unwrap();
        save(&store, message("b", "mallory", 1)).unwrap();
        assert_eq!(save(&store, message("c", "mallory", 1)), Err(SaveError::TooManyRooms { limit: 2 }));
        save(&store, message("a", "mallory", 1)).unwrap(); // rooms with history are open to everyone
        save(&store, message("c", "alice", 1)).unwrap(); // others start their own
        save(&store, message("c", "mallory", 1)).unwrap();
        assert_eq!(kept(&store).len(), 3);
        check(&store);
    }

    #[test]
    fn a_dropped_room_gives_its_starter_a_start_back() {
        let store = MemoryStore::new(limits(10, usize::MAX, 2, 2));
        save(&store, message("a", "mallory", 1)).unwrap();
        save(&store, message("b", "mallory", 1)).unwrap();
        save(&store, message("c", "alice", 1)).unwrap(); // a goes (max_rooms)
        save(&store, message("d", "mallory", 1)).unwrap(); // so mallory may start d
        assert_eq!(kept(&store).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        check(&store);
    }

    #[test]
    fn the_store_stays_bounded_under_a_flood_of_rooms() {
        let l = limits(1000, 1 << 20, 50, usize::MAX);
        let store = MemoryStore::new(l);
        for i in 0..20_000 {
            save(&store, message(&format!("room-{}", i % 500), &format!("user-{}", i % 7), 8000)).unwrap();
            let state = store.lock();
            assert!(state.bytes <= l.max_bytes && state.rooms.len() <= l.max_rooms);
        }
        check(&store);
    }
}
