//! New connections wait behind the sessions already open.
//!
//! Tokio runs ready tasks in turn, first come first served, and polls for
//! I/O only between them. A burst of new connections (a reconnect storm
//! after another node drained: thousands at once) put thousands of ready
//! tasks, each reading a request, answering it and opening a session, ahead
//! of the established sessions' reads and writes, and every open session
//! waited for the whole burst: the healthy clients' p99 went from about
//! 1 ms to 15-28 ms during a storm of 10,000 (issue 22, `loadgen abuse`).
//!
//! [`Admission`] is a lane for that work. The accept loop and each new
//! HTTP connection until a request of it has been answered (other than
//! with an error; for a WebSocket, its handshake up to the `101`) run
//! through it. (A new WebSocket's session opens outside it: through the
//! lane, the opening steps of many connections interleaved, and each idle
//! connection ended up holding 1.4 KiB more, for no gain in the storm.)
//!
//! - **Behind the sessions.** One step (one poll) at a time per lane, and
//!   each only once the runtime has polled for I/O again (`yield_now`): the
//!   sessions whose I/O became ready meanwhile go first. An open session
//!   waits for at most one admission step instead of the whole burst.
//! - **A share of the time, when asked for.** With
//!   [`ServerBuilder::admission_share`](super::ServerBuilder::admission_share)
//!   below 1, admission takes at most that share of the workers' time while
//!   busy: a storm cannot crowd the open sessions off the cores either
//!   (on a machine where other processes want them too). What waits
//!   meanwhile waits in the kernel's accept backlog, at no cost, and a
//!   storm's clients come back at the pace admission keeps. Off by
//!   default: it caps how fast a listener takes connections even when
//!   nothing else wants the time.
//!
//! Nothing is held while a connection waits for its client: a slow client
//! costs the lane nothing between its bytes.

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::PollSemaphore;

/// The share of [`ServerBuilder::admission_share`](super::ServerBuilder::admission_share)
/// the abuse campaign's server sets (`--admission-share`): an eighth of the
/// workers' time, a quarter of a core on two.
pub const RECOMMENDED_ADMISSION_SHARE: f64 = 0.125;

/// Workers per admission lane (at least one lane).
const WORKERS_PER_LANE: usize = 4;

/// The most admission may run back to back before its share applies.
const BURST: Duration = Duration::from_millis(2);

/// The admission lane of one listener. Clones share it.
#[derive(Clone)]
pub(crate) struct Admission {
    lanes: PollSemaphore,
    /// `None`: no pacing (a share of 1 or more).
    pace: Option<Arc<Mutex<Pace>>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

/// Admission's time: credit accrues at `rate` seconds per second (the
/// share times the workers), up to `BURST`; each step spends what it took.
#[derive(Debug)]
struct Pace {
    rate: f64,
    credit: f64,
    at: Instant,
}

impl Pace {
    fn new(rate: f64, now: Instant) -> Pace {
        Pace { rate, credit: BURST.as_secs_f64(), at: now }
    }

    /// How long the next step waits for its share.
    fn wait(&mut self, now: Instant) -> Duration {
        self.credit = (self.credit + now.duration_since(self.at).as_secs_f64() * self.rate).min(BURST.as_secs_f64());
        self.at = now;
        if self.credit >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.credit / self.rate) }
    }

    fn spend(&mut self, took: Duration) {
        self.credit -= took.as_secs_f64();
    }
}

impl Admission {
    /// The lane of a listener on a runtime of `workers` workers, where
    /// admission takes at most `share` of their time (1 or more: no limit).
    pub(crate) fn new(workers: usize, share: f64) -> Admission {
        let workers = workers.max(1);
        let lanes = workers.div_ceil(WORKERS_PER_LANE);
        let pace = (share < 1.0).then(|| Arc::new(Mutex::new(Pace::new(share * workers as f64, Instant::now()))));
        Admission { lanes: PollSemaphore::new(Arc::new(Semaphore::new(lanes))), pace }
    }

    /// Runs `fut` through the lane until `admitted` (when given) is set,
    /// then as any other future; without `admitted`, through the lane to
    /// its end.
    pub(crate) async fn run<F: Future>(&self, fut: F, admitted: Option<&AtomicBool>) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut lanes = self.lanes.clone();
        loop {
            if admitted.is_some_and(|a| a.load(Ordering::Acquire)) {
                return fut.await;
            }
            // `None` only once the semaphore is closed, which it never is.
            let lane = poll_fn(|cx| lanes.poll_acquire(cx)).await;
            // Behind whatever the runtime's next poll for I/O wakes.
            tokio::task::yield_now().await;
            if let Some(pace) = &self.pace {
                let wait = pace.lock().unwrap_or_else(PoisonError::into_inner).wait(Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let started = Instant::now();
            let polled = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if let Some(pace) = &self.pace {
                pace.lock().unwrap_or_else(PoisonError::into_inner).spend(started.elapsed());
            }
            drop(lane);
            if let Poll::Ready(out) = polled {
                return out;
            }
            // The future waits for something (its client, a timer): queue
            // again only once that wakes this task.
            let mut waited = false;
            poll_fn(|_| if std::mem::replace(&mut waited, true) { Poll::Ready(()) } else { Poll::Pending }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// What ran, in order: admission steps and the session's reads.
    type Log = Rc<RefCell<Vec<&'static str>>>;

    /// 100 new connections are ready at once; the first of them wakes an
    /// open session (as a client's message would). Run plainly, the
    /// session waits behind all 99 others (first come, first served);
    /// through the lane it runs before the next admission step.
    async fn burst(through_lane: bool) -> Vec<&'static str> {
        let log: Log = Rc::default();
        let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel::<()>();
        let session = {
            let log = log.clone();
            tokio::task::spawn_local(async move {
                while woken.recv().await.is_some() {
                    log.borrow_mut().push("session");
                }
            })
        };
        tokio::task::yield_now().await;
        let lane = Admission::new(1, 1.0);
        let mut steps = Vec::new();
        for i in 0..100 {
            let (log, wake, lane) = (log.clone(), wake.clone(), lane.clone());
            let step = async move {
                if i == 0 {
                    wake.send(()).unwrap();
                }
                log.borrow_mut().push("admission");
            };
            steps.push(tokio::task::spawn_local(async move {
                if through_lane { lane.run(step, None).await } else { step.await }
            }));
        }
        for s in steps {
            s.await.unwrap();
        }
        drop(wake);
        session.await.unwrap();
        Rc::try_unwrap(log).unwrap().into_inner()
    }

    fn session_after(log: &[&str]) -> usize {
        log.iter().position(|e| *e == "session").unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_open_session_runs_before_the_rest_of_a_burst_of_admissions() {
        let local = tokio::task::LocalSet::new();
        let plain = local.run_until(burst(false)).await;
        let laned = local.run_until(burst(true)).await;
        assert_eq!(plain.len(), 101);
        assert_eq!(laned.len(), 101);
        // First come, first served: behind the whole burst.
        assert_eq!(session_after(&plain), 100, "{plain:?}");
        // Through the lane: right after the step that woke it.
        assert!(session_after(&laned) <= 2, "{laned:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_step_at_a_time_per_lane_and_output_passes_through() {
        // Two workers: one lane.
        let lane = Admission::new(2, 1.0);
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20u32 {
            let (lane, inside, most) = (lane.clone(), inside.clone(), most.clone());
            tasks.spawn(async move {
                lane.run(
                    async move {
                        for _ in 0..3 {
                            // A step: work within one poll...
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            inside.fetch_sub(1, Ordering::SeqCst);
                            // ...then a wait, which holds nothing.
                            tokio::task::yield_now().await;
                        }
                        i * 2
                    },
                    None,
                )
                .await
            });
        }
        let mut outs: Vec<u32> = tasks.join_all().await;
        outs.sort_unstable();
        assert_eq!(outs, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 1, "two steps ran at once on one lane");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn once_admitted_a_connection_leaves_the_lane() {
        let lane = Admission::new(1, 1.0);
        let admitted = AtomicBool::new(true);
        // The lane's only permit is taken: a future already admitted runs
        // anyway; one not admitted waits.
        let held = lane.lanes.clone_inner().acquire_owned().await.unwrap();
        assert_eq!(lane.run(async { 7 }, Some(&admitted)).await, 7);
        let waiting = AtomicBool::new(false);
        let r = tokio::time::timeout(Duration::from_millis(50), lane.run(async { 8 }, Some(&waiting))).await;
        assert!(r.is_err(), "a connection not yet admitted waits for the lane");
        drop(held);
        assert_eq!(lane.run(async { 9 }, Some(&waiting)).await, 9);
    }

    #[test]
    fn the_share_paces_admission_once_its_burst_is_spent() {
        let t0 = Instant::now();
        // A quarter of a core: 2 ms of credit to start with.
        let mut pace = Pace::new(0.25, t0);
        assert_eq!(pace.wait(t0), Duration::ZERO);
        pace.spend(Duration::from_millis(2));
        assert_eq!(pace.wait(t0), Duration::ZERO, "the burst is spent, not overdrawn");
        pace.spend(Duration::from_millis(1));
        // 1 ms overdrawn at a quarter: 4 ms to wait.
        assert_eq!(pace.wait(t0), Duration::from_millis(4));
        // 4 ms later, even again; credit never exceeds the burst.
        assert_eq!(pace.wait(t0 + Duration::from_millis(4)), Duration::ZERO);
        assert_eq!(pace.wait(t0 + Duration::from_secs(60)), Duration::ZERO);
        assert!((pace.credit - BURST.as_secs_f64()).abs() < 1e-9);
    }

    #[test]
    fn lanes_and_rate_grow_with_the_workers() {
        let one = Admission::new(2, RECOMMENDED_ADMISSION_SHARE);
        assert_eq!(one.lanes.available_permits(), 1);
        assert!((one.pace.as_ref().unwrap().lock().unwrap().rate - 0.25).abs() < 1e-9);
        let many = Admission::new(16, RECOMMENDED_ADMISSION_SHARE);
        assert_eq!(many.lanes.available_permits(), 4);
        assert!((many.pace.as_ref().unwrap().lock().unwrap().rate - 2.0).abs() < 1e-9);
        assert!(Admission::new(2, 1.0).pace.is_none(), "a share of 1: no pacing");
    }
}
