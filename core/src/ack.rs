//! Acknowledgement bookkeeping, pure: no I/O, no clock of its own.
//!
//! * [`AckTable`]: acks the server awaits from one client: id allocation
//!   (ids stay below 2^53 so JavaScript clients read them exactly), a bound
//!   on how many may be pending, resolution by id.
//! * [`AckCollector`]: the answers to one broadcast with ack, from every
//!   recipient (local now; remote nodes add to the expected count later),
//!   and which recipients never answered.
//! * [`InboundAcks`]: the ack ids a client recently used, so that a client
//!   that retries an event with the same ack id (socket.io-client's
//!   `retries`) is not processed twice: a retry of an answered event gets
//!   the same answer again, a retry of one still running is dropped.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;

use crate::protocol::socketio::MAX_ACK_ID;

/// The ack table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many pending acknowledgements (limit {limit})")]
pub struct TooManyPending {
    /// The limit that was reached.
    pub limit: usize,
}

/// Allocates ack ids from a shared counter, wrapping below 2^53 so that
/// JavaScript clients read every id exactly. socket.io numbers acks per
/// namespace, so that one broadcast with ack uses one id for every
/// recipient and is encoded once.
pub fn next_ack_id(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (MAX_ACK_ID + 1)
}

/// Acks awaited from one client, each holding a `T` (e.g. a channel).
///
/// # Examples
/// ```
/// use tidewire::ack::AckTable;
/// let mut table = AckTable::new(2);
/// table.insert(1, "a").unwrap();
/// table.insert(2, "b").unwrap();
/// assert!(table.insert(3, "c").is_err());
/// assert_eq!(table.resolve(2), Some("b"));
/// assert_eq!(table.resolve(2), None, "an id resolves once");
/// assert_eq!(table.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct AckTable<T> {
    limit: usize,
    pending: FxHashMap<u64, T>,
}

impl<T> AckTable<T> {
    /// A table holding at most `limit` pending acks.
    pub fn new(limit: usize) -> Self {
        AckTable { limit, pending: FxHashMap::default() }
    }

    /// Registers the pending ack `id` (replacing one with the same id).
    ///
    /// # Errors
    /// [`TooManyPending`] when `limit` acks are already pending.
    pub fn insert(&mut self, id: u64, value: T) -> Result<(), TooManyPending> {
        if self.pending.len() >= self.limit && !self.pending.contains_key(&id) {
            return Err(TooManyPending { limit: self.limit });
        }
        self.pending.insert(id, value);
        Ok(())
    }

    /// Takes the pending ack `id`, if it is still pending.
    pub fn resolve(&mut self, id: u64) -> Option<T> {
        self.pending.remove(&id)
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// The number of pending acks.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes every pending ack (the client went away).
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.pending.drain()
    }
}

/// The answers to one broadcast with ack.
///
/// # Examples
/// ```
/// use tidewire::ack::AckCollector;
/// let mut acks = AckCollector::new(["a".to_string(), "b".to_string()]);
/// assert!(!acks.respond("a", 1));
/// assert!(!acks.respond("a", 2), "a second answer from one recipient is ignored");
/// assert!(!acks.respond("zz", 3), "answers from strangers are ignored");
/// let report = acks.finish();
/// assert_eq!(report.responses, vec![("a".to_string(), 1)]);
/// assert_eq!(report.timed_out, vec!["b".to_string()]);
/// ```
#[derive(Debug, Clone)]
pub struct AckCollector<T> {
    waiting: HashMap<String, ()>,
    extra_expected: usize,
    responses: Vec<(String, T)>,
    disconnected: Vec<String>,
}

/// What came back from a broadcast with ack.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AckReport<T> {
    /// Each recipient's answer, in arrival order.
    pub responses: Vec<(String, T)>,
    /// Recipients that did not answer in time.
    pub timed_out: Vec<String>,
    /// Recipients that disconnected before answering.
    pub disconnected: Vec<String>,
    /// Answers expected from other nodes that did not arrive.
    pub missing_remote: usize,
    /// Other nodes that did not say how many sockets they reached (their
    /// answers are not counted in [`missing_remote`](Self::missing_remote)).
    pub missing_nodes: usize,
}

impl<T> AckCollector<T> {
    /// Expects one answer from each recipient id.
    pub fn new(recipients: impl IntoIterator<Item = String>) -> Self {
        AckCollector {
            waiting: recipients.into_iter().map(|r| (r, ())).collect(),
            extra_expected: 0,
            responses: Vec::new(),
            disconnected: Vec::new(),
        }
    }

    /// Expects `n` more answers from recipients on other nodes.
    pub fn expect_remote(&mut self, n: usize) {
        self.extra_expected += n;
    }

    /// Records `recipient`'s answer. Returns true once every expected
    /// answer is in.
    pub fn respond(&mut self, recipient: &str, answer: T) -> bool {
        if self.waiting.remove(recipient).is_some() {
            self.responses.push((recipient.to_owned(), answer));
        }
        self.is_complete()
    }

    /// Records an answer from another node's recipient.
    pub fn respond_remote(&mut self, recipient: String, answer: T) -> bool {
        if self.extra_expected > 0 {
            self.extra_expected -= 1;
            self.responses.push((recipient, answer));
        }
        self.is_complete()
    }

    /// Gives up on `recipient`, which disconnected. Returns true once every
    /// expected answer is in or given up on.
    pub fn disconnected(&mut self, recipient: &str) -> bool {
        if self.waiting.remove(recipient).is_some() {
            self.disconnected.push(recipient.to_owned());
        }
        self.is_complete()
    }

    /// Whether every expected answer is in.
    pub fn is_complete(&self) -> bool {
        self.waiting.is_empty() && self.extra_expected == 0
    }

    /// The number of answers still expected.
    pub fn outstanding(&self) -> usize {
        self.waiting.len() + self.extra_expected
    }

    /// Ends collection: the answers, and who did not answer.
    pub fn finish(self) -> AckReport<T> {
        let mut timed_out: Vec<String> = self.waiting.into_keys().collect();
        timed_out.sort_unstable();
        AckReport {
            responses: self.responses,
            timed_out,
            disconnected: self.disconnected,
            missing_remote: self.extra_expected,
            missing_nodes: 0,
        }
    }
}

/// What to do with an event whose ack id a client has used before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<T> {
    /// A new ack id: process the event.
    New,
    /// A retry of an event still being processed: drop it.
    InProgress,
    /// A retry of an answered event: send this answer again.
    Answered(T),
}

/// The ack ids a client used recently (at most `window` of them).
#[derive(Debug, Clone)]
pub struct InboundAcks<T> {
    window: usize,
    order: VecDeque<u64>,
    // Fx: at most `window` keys, so client-chosen ids cannot degrade it far.
    state: FxHashMap<u64, Slot<T>>,
}

/// Where one inbound ack id stands.
#[derive(Debug, Clone)]
enum Slot<T> {
    /// Being processed.
    Running,
    /// Its handler let go of it without answering.
    Abandoned,
    /// Answered with this.
    Answered(T),
}

impl<T: Clone> InboundAcks<T> {
    /// Remembers the last `window` ack ids.
    pub fn new(window: usize) -> Self {
        InboundAcks { window: window.max(1), order: VecDeque::new(), state: FxHashMap::default() }
    }

    /// Called for each event carrying ack id `id`.
    ///
    /// # Examples
    /// ```
    /// use tidewire::ack::{Inbound, InboundAcks};
    /// let mut seen = InboundAcks::new(16);
    /// assert_eq!(seen.begin(7), Inbound::New);
    /// assert_eq!(seen.begin(7), Inbound::<&str>::InProgress);
    /// seen.answered(7, "ok");
    /// assert_eq!(seen.begin(7), Inbound::Answered("ok"));
    /// ```
    pub fn begin(&mut self, id: u64) -> Inbound<T> {
        match self.state.get(&id) {
            Some(Slot::Answered(answer)) => return Inbound::Answered(answer.clone()),
            // An abandoned event stays unanswered, as when it was running.
            Some(Slot::Running | Slot::Abandoned) => return Inbound::InProgress,
            None => {}
        }
        if self.order.len() == self.window
            && let Some(old) = self.order.pop_front()
        {
            self.state.remove(&old);
        }
        self.order.push_back(id);
        self.state.insert(id, Slot::Running);
        Inbound::New
    }

    /// Records the answer sent for `id` (kept for retries while `id` is in
    /// the window).
    pub fn answered(&mut self, id: u64, answer: T) {
        if let Some(slot) = self.state.get_mut(&id) {
            *slot = Slot::Answered(answer);
        }
    }

    /// Records that `id` will not be answered: whoever held its answer let
    /// go of it (a handler that dropped its responder, or panicked).
    ///
    /// # Examples
    /// ```
    /// use tidewire::ack::InboundAcks;
    /// let mut seen = InboundAcks::<&str>::new(16);
    /// seen.begin(7);
    /// assert!(!seen.is_abandoned(7));
    /// seen.abandoned(7);
    /// assert!(seen.is_abandoned(7));
    /// seen.answered(7, "error");
    /// assert!(!seen.is_abandoned(7));
    /// ```
    pub fn abandoned(&mut self, id: u64) {
        if let Some(slot @ Slot::Running) = self.state.get_mut(&id) {
            *slot = Slot::Abandoned;
        }
    }

    /// Whether `id` was [`abandoned`](Self::abandoned) and not answered since.
    pub fn is_abandoned(&self, id: u64) -> bool {
        matches!(self.state.get(&id), Some(Slot::Abandoned))
    }

    /// The number of ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wrap_below_2_pow_53() {
        let counter = std::sync::atomic::AtomicU64::new(MAX_ACK_ID);
        assert_eq!(next_ack_id(&counter), MAX_ACK_ID);
        assert_eq!(next_ack_id(&counter), 0);
        assert_eq!(next_ack_id(&counter), 1);
    }

    #[test]
    fn limit_is_enforced_and_freed_by_resolution() {
        let mut table = AckTable::new(1);
        table.insert(5, ()).unwrap();
        assert_eq!(table.insert(6, ()), Err(TooManyPending { limit: 1 }));
        assert!(table.insert(5, ()).is_ok(), "replacing a pending id is not growth");
        assert!(table.contains(5));
        table.resolve(5);
        assert!(table.insert(6, ()).is_ok());
        assert_eq!(table.drain().count(), 1);
        assert!(table.is_empty());
    }

    #[test]
    fn collector_reports_disconnected_recipients_without_waiting() {
        let mut acks = AckCollector::new(["a".to_string(), "b".to_string(), "c".to_string()]);
        assert!(!acks.respond("a", 1));
        assert!(!acks.disconnected("b"));
        assert!(!acks.disconnected("a"), "an answered recipient is not disconnected");
        let report = acks.finish();
        assert_eq!(report.responses, vec![("a".to_string(), 1)]);
        assert_eq!(report.disconnected, vec!["b".to_string()]);
        assert_eq!(report.timed_out, vec!["c".to_string()]);
    }

    #[test]
    fn collector_completes_with_local_and_remote_answers() {
        let mut acks = AckCollector::new(["a".to_string()]);
        acks.expect_remote(2);
        assert_eq!(acks.outstanding(), 3);
        assert!(!acks.respond("a", 'x'));
        assert!(!acks.respond_remote("r1".into(), 'y'));
        assert!(acks.respond_remote("r2".into(), 'z'));
        assert!(acks.respond_remote("r3".into(), 'w'), "still complete");
        let report = acks.finish();
        assert_eq!(report.responses.len(), 3);
        assert!(report.timed_out.is_empty());
        assert_eq!(report.missing_remote, 0);
    }

    #[test]
    fn collector_with_no_recipients_is_complete_at_once() {
        let acks = AckCollector::<()>::new(Vec::new());
        assert!(acks.is_complete());
        assert_eq!(acks.finish(), AckReport::default());
    }

    #[test]
    fn inbound_window_forgets_old_ids() {
        let mut seen = InboundAcks::new(2);
        assert_eq!(seen.begin(1), Inbound::New);
        seen.answered(1, "one");
        assert_eq!(seen.begin(2), Inbound::New);
        assert_eq!(seen.begin(3), Inbound::New);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.begin(1), Inbound::New, "1 left the window");
        assert_eq!(seen.begin(3), Inbound::InProgress);
        seen.answered(99, "never begun");
        assert_eq!(seen.begin(99), Inbound::New);
    }
}
