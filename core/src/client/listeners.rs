//! A socket's listeners: per event (`on`, `once`), for every event
//! (`on_any`), each with an id that removes it (`off`). Pure.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies a registered listener, for [`Socket::off`](super::Socket::off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u64);

struct Entry<L: ?Sized> {
    id: ListenerId,
    once: bool,
    listener: Arc<L>,
}

/// Listener ids, unique in the process: a socket keeps listeners of
/// several kinds in several registries, and `off` looks in each.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Listeners of type `L`, by event name and for any event.
pub(crate) struct Registry<L: ?Sized> {
    by_event: HashMap<String, Vec<Entry<L>>>,
    any: Vec<Entry<L>>,
}

impl<L: ?Sized> Default for Registry<L> {
    fn default() -> Self {
        Registry { by_event: HashMap::new(), any: Vec::new() }
    }
}

impl<L: ?Sized> Registry<L> {
    fn id(&mut self) -> ListenerId {
        ListenerId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }

    /// Adds a listener of `event` (called once when `once`).
    pub(crate) fn on(&mut self, event: &str, listener: Arc<L>, once: bool) -> ListenerId {
        let id = self.id();
        self.by_event.entry(event.to_owned()).or_default().push(Entry { id, once, listener });
        id
    }

    /// Adds a listener of every event.
    pub(crate) fn on_any(&mut self, listener: Arc<L>) -> ListenerId {
        let id = self.id();
        self.any.push(Entry { id, once: false, listener });
        id
    }

    /// Removes listener `id` wherever it is. Returns whether it was there.
    pub(crate) fn remove(&mut self, id: ListenerId) -> bool {
        let mut found = false;
        self.by_event.retain(|_, list| {
            let before = list.len();
            list.retain(|e| e.id != id);
            found |= list.len() != before;
            !list.is_empty()
        });
        let before = self.any.len();
        self.any.retain(|e| e.id != id);
        found || self.any.len() != before
    }

    /// Removes every listener of `event`.
    pub(crate) fn remove_event(&mut self, event: &str) {
        self.by_event.remove(event);
    }

    /// Removes every catch-all listener.
    pub(crate) fn remove_any(&mut self) {
        self.any.clear();
    }

    /// Removes everything.
    pub(crate) fn clear(&mut self) {
        self.by_event.clear();
        self.any.clear();
    }

    /// The catch-all listeners then those of `event`, in registration
    /// order (socket.io-client calls `onAny` listeners first); `once`
    /// listeners are removed.
    pub(crate) fn take_matching(&mut self, event: &str) -> Vec<Arc<L>> {
        let mut out: Vec<Arc<L>> = self.any.iter().map(|e| e.listener.clone()).collect();
        if let Some(list) = self.by_event.get_mut(event) {
            out.extend(list.iter().map(|e| e.listener.clone()));
            list.retain(|e| !e.once);
            if list.is_empty() {
                self.by_event.remove(event);
            }
        }
        out
    }

    /// Every listener of `event` without the catch-all ones (for state
    /// listeners kept under one name).
    pub(crate) fn all(&self) -> Vec<Arc<L>> {
        self.by_event.values().flatten().map(|e| e.listener.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_once_off_and_any() {
        let mut r: Registry<str> = Registry::default();
        let a = r.on("x", Arc::from("a"), false);
        r.on("x", Arc::from("once"), true);
        let any = r.on_any(Arc::from("any"));
        let names = |v: Vec<Arc<str>>| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(names(r.take_matching("x")), ["any", "a", "once"]);
        assert_eq!(names(r.take_matching("x")), ["any", "a"]);
        assert_eq!(names(r.take_matching("y")), ["any"]);
        assert!(r.remove(any));
        assert!(!r.remove(any));
        assert!(r.remove(a));
        assert!(r.take_matching("x").is_empty());
        r.on("x", Arc::from("b"), false);
        // Ids are unique across registries (`off` looks in several).
        let mut other: Registry<str> = Registry::default();
        let o = other.on("x", Arc::from("o"), false);
        assert!(!r.remove(o));
        r.remove_event("x");
        assert!(r.take_matching("x").is_empty());
    }
}
