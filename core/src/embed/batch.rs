//! Deliveries handed from the engine's threads to a host's one event loop
//! (Python's asyncio loop) in batches: one wake-up per batch instead of one
//! cross-thread call per delivery. Pushes keep their order (so every
//! socket's events stay in order) and nothing pushed is lost: what arrives
//! while the loop drains wakes it again.

use std::sync::{Mutex, PoisonError};

/// A queue with a wake-up flag: `push` says when the consumer must be
/// woken (nothing was pending a wake-up), `take` gives everything pending
/// and re-arms the wake-up.
#[derive(Debug)]
pub struct Batch<T> {
    inner: Mutex<Pending<T>>,
}

#[derive(Debug)]
struct Pending<T> {
    items: Vec<T>,
    woken: bool,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch { inner: Mutex::new(Pending { items: Vec::new(), woken: false }) }
    }
}

impl<T> Batch<T> {
    /// Queues `item`; true when the caller must wake the consumer (the
    /// first push since the last `take`).
    pub fn push(&self, item: T) -> bool {
        let mut p = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        p.items.push(item);
        !std::mem::replace(&mut p.woken, true)
    }

    /// Everything queued, in order; the next `push` wakes again.
    pub fn take(&self) -> Vec<T> {
        let mut p = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        p.woken = false;
        std::mem::take(&mut p.items)
    }
}

#[cfg(test)]
mod tests {
    use super::Batch;

    #[test]
    fn one_wake_up_per_batch_and_order_kept() {
        let b = Batch::default();
        assert!(b.push(1));
        assert!(!b.push(2));
        assert!(!b.push(3));
        assert_eq!(b.take(), vec![1, 2, 3]);
        assert!(b.take().is_empty());
        // Taken: the next push wakes again.
        assert!(b.push(4));
        assert_eq!(b.take(), vec![4]);
    }

    #[test]
    fn pushes_from_many_threads_all_arrive_in_each_threads_order() {
        let b = std::sync::Arc::new(Batch::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|i| b.push((t, *i))).count())
            })
            .collect();
        let wakes: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(wakes, 1, "nothing was taken: one wake-up in all");
        let items = b.take();
        assert_eq!(items.len(), 4000);
        for t in 0..4 {
            let seq: Vec<_> = items.iter().filter(|(x, _)| *x == t).map(|(_, i)| *i).collect();
            assert_eq!(seq, (0..1000).collect::<Vec<_>>());
        }
    }
}
