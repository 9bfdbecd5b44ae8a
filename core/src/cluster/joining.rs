//! Rooms this node just asked the others to join.
//!
//! A node listens to a room's own channel only once it holds a member
//! there (interest subscriptions). After `io.in(a).socketsJoin(b)`, the
//! nodes that had nobody in `b` subscribe to its channel as they apply the
//! request, which takes a moment: a broadcast to `b` published on `b`'s
//! channel right after (`io.to(b).emit(...)`, the usual next line) would
//! miss them, where the official classic adapter, which listens to every
//! room of its namespaces, delivers it. So for a while after such a
//! request, this node publishes broadcasts to those rooms on the
//! namespace's channel, which every node listens to (official ones too),
//! and which keeps the order: one publisher connection, one subscriber
//! connection, request first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::hub::lock;

/// How many rooms are remembered at most (the oldest forgotten first).
const MAX_ROOMS: usize = 4096;

/// Rooms asked to be joined, by namespace, until when.
#[derive(Debug, Default)]
pub(super) struct Joining {
    any: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, HashMap<String, Instant>>,
    len: usize,
    /// When every entry will have expired.
    last: Option<Instant>,
}

impl Joining {
    /// This node asked the others to join `rooms` of `nsp`: remembered for `window`.
    pub(super) fn asked(&self, nsp: &str, rooms: &[String], window: Duration) {
        let now = Instant::now();
        let until = now + window;
        let mut s = lock(&self.state);
        if s.len + rooms.len() > MAX_ROOMS {
            for map in s.rooms.values_mut() {
                map.retain(|_, t| *t > now);
            }
            s.rooms.retain(|_, map| !map.is_empty());
            s.len = s.rooms.values().map(HashMap::len).sum();
        }
        for room in rooms {
            if s.len >= MAX_ROOMS {
                break;
            }
            if s.rooms.entry(nsp.to_owned()).or_default().insert(room.clone(), until).is_none() {
                s.len += 1;
            }
        }
        s.last = Some(until);
        self.any.store(s.len > 0, Ordering::Release);
    }

    /// Whether a broadcast to `rooms` of `nsp` must go to the namespace's
    /// channel: one of them was asked to be joined within its window.
    pub(super) fn recent(&self, nsp: &str, rooms: &[String]) -> bool {
        if rooms.is_empty() || !self.any.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        let mut s = lock(&self.state);
        if s.last.is_none_or(|last| last <= now) {
            // Everything expired: forgotten at once.
            *s = State::default();
            self.any.store(false, Ordering::Release);
            return false;
        }
        let Some(map) = s.rooms.get(nsp) else { return false };
        rooms.iter().any(|r| map.get(r).is_some_and(|t| *t > now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remembered_for_the_window_then_forgotten() {
        let j = Joining::default();
        let rooms = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(!j.recent("/", &rooms(&["b"])));
        j.asked("/", &rooms(&["b", "c"]), Duration::from_secs(5));
        assert!(j.recent("/", &rooms(&["b"])));
        assert!(j.recent("/", &rooms(&["x", "c"])));
        assert!(!j.recent("/chat", &rooms(&["b"])), "per namespace");
        assert!(!j.recent("/", &[]), "everyone: the namespace's channel anyway");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!j.recent("/", &rooms(&["b"])));
        assert!(!j.any.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let j = Joining::default();
        for i in 0..(MAX_ROOMS + 10) {
            j.asked("/", &[format!("r{i}")], Duration::from_secs(5));
        }
        assert_eq!(lock(&j.state).len, MAX_ROOMS, "the rest is not remembered");
        assert!(!j.recent("/", &[format!("r{}", MAX_ROOMS + 9)]));
        // Expired entries make room.
        tokio::time::advance(Duration::from_secs(6)).await;
        j.asked("/", &["late".to_owned()], Duration::from_secs(5));
        assert_eq!(lock(&j.state).len, 1);
        assert!(j.recent("/", &["late".to_owned()]));
    }
}
