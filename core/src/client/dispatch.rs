//! Where app code runs: off the connection's task, so that a slow or
//! blocking listener never delays the heartbeat's answers.
//!
//! Each socket has one [`Dispatch`]: an ordered, bounded queue of jobs
//! (listener calls) and a task that hands them, a batch at a time, to
//! tokio's blocking pool, waiting for each batch before the next. Jobs
//! therefore run one at a time, in the order they were queued, on threads
//! where blocking is allowed.
//!
//! # Overflow
//! When `capacity` jobs wait (listeners slower than the events coming in),
//! a new job is dropped, not queued: [`Dispatch::push`] returns false and
//! the drop is counted ([`Dispatch::dropped`]). The connection is never
//! what pays for a slow listener.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// A call into app code.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Most jobs handed to the blocking pool at once.
const BATCH: usize = 32;

/// An ordered, bounded queue of jobs and the task that runs them.
#[derive(Debug)]
pub(crate) struct Dispatch {
    tx: mpsc::Sender<Job>,
    dropped: AtomicU64,
}

impl Dispatch {
    /// A queue of at most `capacity` waiting jobs, run on `rt`.
    pub(crate) fn new(capacity: usize, rt: &tokio::runtime::Handle) -> Dispatch {
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        rt.spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let jobs = std::mem::take(&mut batch);
                let ran = tokio::task::spawn_blocking(move || {
                    for job in jobs {
                        super::guarded(job);
                    }
                })
                .await;
                if ran.is_err() {
                    // The runtime is shutting down.
                    return;
                }
            }
        });
        Dispatch { tx, dropped: AtomicU64::new(0) }
    }

    /// Queues `job` behind the others; false (and counted) when the queue
    /// is full or stopped.
    pub(crate) fn push(&self, job: Job) -> bool {
        if self.tx.try_send(job).is_ok() {
            return true;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Jobs dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn runs_in_order_off_the_workers_and_drops_beyond_capacity() {
        let d = Dispatch::new(3, &tokio::runtime::Handle::current());
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let ran = Arc::new(Mutex::new(Vec::new()));
        // The first job blocks its thread: the single worker stays free.
        let r = ran.clone();
        assert!(d.push(Box::new(move || {
            let _ = started_tx.send(());
            gate_rx.recv().unwrap();
            r.lock().unwrap().push(0);
        })));
        // It left the queue: the queue holds 3 more.
        tokio::time::timeout(Duration::from_secs(10), started_rx).await.unwrap().unwrap();
        let mut kept = 0;
        for i in 1..=10 {
            let r = ran.clone();
            if d.push(Box::new(move || r.lock().unwrap().push(i))) {
                kept += 1;
            }
        }
        assert_eq!(kept, 3);
        assert_eq!(d.dropped(), 7);
        gate_tx.send(()).unwrap();
        for _ in 0..200 {
            if ran.lock().unwrap().len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*ran.lock().unwrap(), vec![0, 1, 2, 3]);
    }
}
