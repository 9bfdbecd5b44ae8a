//! What a Redis publisher remembers of its channels' subscribers, so that
//! after an outage it publishes again only once they are back.
//!
//! Redis pub/sub keeps nothing: a message published while a node's
//! subscriber has not yet resubscribed after a restart reaches nobody
//! there. So the publisher remembers, per channel it publishes to, how many
//! subscribers Redis counted (`PUBSUB NUMSUB`, asked in the same round trip
//! as a batch of publishes, at most once per [`REFRESH_EVERY`] per channel:
//! not on every batch of the publishing hot path). After a reconnect, a batch goes out only
//! once each of its channels counts at least as many subscribers as before
//! the outage, for at most a deadline; past it the messages go out anyway
//! (delivering to whoever is back), and those that reached fewer
//! subscribers than before are counted.
//!
//!
//! Outside an outage of its own, a publisher also sees another node lose
//! its subscription for a moment (its connection cut, or Redis dropped
//! it): a message reaches fewer subscribers than its channel counted just
//! before. Such messages are held as *shortfalls* of their channel; if the
//! channel counts as many subscribers again within the wait, the missing
//! node was resubscribing and missed them: they are counted. If not, its
//! subscribers left (the room emptied there), and they are forgotten.
//!
//! Pure state: the clock is passed in; the shell (`redis.rs`) asks Redis.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// How often a channel's count of subscribers is asked again while it is
/// published to: a count at most this old is what an outage is measured
/// against.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The memory of one publisher.
#[derive(Debug)]
pub(crate) struct Subscribers {
    /// When each channel's count was last asked (bounded like `counts`).
    asked: HashMap<String, Instant>,
    /// Subscribers counted on each channel at its last publish (channels
    /// counting none are not kept), with when (a sequence number).
    counts: HashMap<String, (usize, u64)>,
    /// Most channels kept; past it the least recently published half is forgotten.
    cap: usize,
    stamp: u64,
    outage: Option<Outage>,
    /// Messages that reached fewer subscribers than their channel counted,
    /// by channel, until its count comes back or `wait` passes.
    shortfalls: HashMap<String, Shortfall>,
    /// How long a shortfall waits for its channel's subscribers.
    wait: Duration,
}

#[derive(Debug)]
struct Shortfall {
    messages: u64,
    /// The channel's count before the first of them.
    before: usize,
    since: Instant,
}

/// How often a channel with a shortfall is counted again (with the
/// batches that go out meanwhile, whatever their channels).
pub(crate) const SHORTFALL_REFRESH: Duration = Duration::from_millis(100);

/// What became of a batch's messages (see [`Subscribers::settle`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Sent after an outage's wait gave up, to fewer subscribers than before it.
    pub(crate) unconfirmed: u64,
    /// Earlier messages now known to have missed a subscriber that was
    /// resubscribing (its channel counts as many as before again).
    pub(crate) missed: u64,
}

#[derive(Debug)]
struct Outage {
    deadline: Instant,
    /// Channels whose subscribers are back (or that had none remembered).
    confirmed: HashSet<String>,
    /// Once the deadline passed: how many of the messages accepted before
    /// it are still to be sent; while any is, remembered counts of channels
    /// not confirmed are kept as they were before the outage (what those
    /// messages are measured against).
    backlog: Option<u64>,
}

/// Whether a batch may go out (see [`Subscribers::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Every channel counts its subscribers of before.
    Ready,
    /// Some do not yet: ask again a little later.
    Again(Vec<String>),
    /// The deadline passed with these channels still short: send anyway.
    GaveUp(Vec<String>),
}

impl Subscribers {
    /// Remembers at most `cap` channels; a shortfall waits at most `wait`
    /// for its channel's subscribers.
    pub(crate) fn new(cap: usize, wait: Duration) -> Subscribers {
        Subscribers {
            asked: HashMap::new(),
            counts: HashMap::new(),
            cap: cap.max(1),
            stamp: 0,
            outage: None,
            shortfalls: HashMap::new(),
            wait,
        }
    }

    /// The subscribers remembered on `channel` (0 when unknown).
    pub(crate) fn remembered(&self, channel: &str) -> usize {
        self.counts.get(channel).map_or(0, |(n, _)| *n)
    }

    /// Whether an outage is being recovered from.
    #[cfg(test)]
    pub(crate) fn recovering(&self) -> bool {
        self.outage.is_some()
    }

    /// A new connection to Redis was made (after an outage, or the first):
    /// from now, batches wait for the subscribers remembered, until `now + wait`.
    pub(crate) fn reconnected(&mut self, now: Instant, wait: Duration) {
        self.outage = (!self.counts.is_empty() && !wait.is_zero()).then(|| Outage {
            deadline: now + wait,
            confirmed: HashSet::new(),
            backlog: None,
        });
    }

    /// Of `channels` (a batch's), those whose subscribers must be counted
    /// before it goes out: remembered, not yet confirmed back, and the
    /// deadline not passed. Each once.
    pub(crate) fn waiting_for<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let Some(outage) = &self.outage else { return Vec::new() };
        if outage.backlog.is_some() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        channels
            .into_iter()
            .filter(|c| self.remembered(c) > 0 && !outage.confirmed.contains(*c) && seen.insert(*c))
            .map(str::to_owned)
            .collect()
    }

    /// Redis counted `counts` (channel, subscribers) at `now`; `unsent` is
    /// how many accepted messages are not yet sent (this batch included).
    pub(crate) fn check(&mut self, now: Instant, counts: &[(String, usize)], unsent: u64) -> Check {
        let Some(outage) = &mut self.outage else { return Check::Ready };
        let mut short = Vec::new();
        for (channel, n) in counts {
            let before = self.counts.get(channel).map_or(0, |(n, _)| *n);
            if *n >= before {
                outage.confirmed.insert(channel.clone());
            } else {
                short.push(channel.clone());
            }
        }
        if short.is_empty() {
            Check::Ready
        } else if now >= outage.deadline {
            outage.backlog = Some(unsent);
            Check::GaveUp(short)
        } else {
            Check::Again(short)
        }
    }

    /// Of `channels` (a batch's), those whose count to ask with the batch
    /// (each once): all of them, except during an outage those whose
    /// subscribers were not confirmed back (their count of before is kept).
    pub(crate) fn to_refresh<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut seen = HashSet::new();
        channels.into_iter().filter(|c| self.confirmed(c) && seen.insert(*c)).map(str::to_owned).collect()
    }

    /// [`to_refresh`](Self::to_refresh), less the channels asked within
    /// [`REFRESH_EVERY`] before `now`; those returned count as asked now.
    pub(crate) fn refresh_due<'a>(&mut self, now: Instant, channels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let due = |asked: &HashMap<String, Instant>, c: &str| {
            asked.get(c).is_none_or(|at| now.saturating_duration_since(*at) >= REFRESH_EVERY)
        };
        let mut refresh = self.to_refresh(channels.into_iter().filter(|c| due(&self.asked, c)));
        // Channels with a shortfall, often, whatever this batch's channels.
        let short_due = |c: &String| {
            !refresh.contains(c)
                && self.asked.get(c).is_none_or(|at| now.saturating_duration_since(*at) >= SHORTFALL_REFRESH)
        };
        let mut shortfalls: Vec<String> = self.shortfalls.keys().filter(|c| short_due(c)).cloned().collect();
        shortfalls.sort();
        refresh.extend(shortfalls);
        if self.asked.len() + refresh.len() > self.cap {
            let stale = now.checked_sub(REFRESH_EVERY);
            self.asked.retain(|_, at| stale.is_some_and(|s| *at > s));
        }
        for c in &refresh {
            self.asked.insert(c.clone(), now);
        }
        refresh
    }

    fn confirmed(&self, channel: &str) -> bool {
        match &self.outage {
            None => true,
            Some(o) => o.confirmed.contains(channel) || self.remembered(channel) == 0,
        }
    }

    /// [`settle`](Self::settle)'s count of unconfirmed messages, at one instant.
    #[cfg(test)]
    pub(crate) fn sent<'a>(
        &mut self,
        delivered: impl IntoIterator<Item = (&'a str, usize)>,
        counts: &[(String, usize)],
    ) -> u64 {
        self.settle(Instant::now(), delivered, counts).unconfirmed
    }

    /// A batch went out at `now`: `delivered` holds, per message, its
    /// channel and how many subscribers Redis delivered it to; `counts`
    /// what was asked with it. Returns how many messages reached fewer
    /// subscribers than remembered from before an outage whose wait gave
    /// up, and how many (of this batch or earlier ones) missed a
    /// subscriber that was resubscribing.
    pub(crate) fn settle<'a>(
        &mut self,
        now: Instant,
        delivered: impl IntoIterator<Item = (&'a str, usize)>,
        counts: &[(String, usize)],
    ) -> Settled {
        let mut short = 0;
        let mut messages = 0;
        for (channel, receivers) in delivered {
            messages += 1;
            let remembered = self.remembered(channel);
            if let Some(outage) = &self.outage
                && outage.backlog.is_some()
                && !outage.confirmed.contains(channel)
            {
                if receivers < remembered {
                    short += 1;
                }
                continue;
            }
            let before = self.shortfalls.get(channel).map_or(remembered, |s| s.before);
            if receivers < before && (self.shortfalls.contains_key(channel) || self.shortfalls.len() < self.cap) {
                let entry =
                    self.shortfalls.entry(channel.to_owned()).or_insert(Shortfall { messages: 0, before, since: now });
                entry.messages += 1;
            }
        }
        let mut missed = 0;
        for (channel, n) in counts {
            if let Some(s) = self.shortfalls.get(channel)
                && *n >= s.before
            {
                missed += s.messages;
                self.shortfalls.remove(channel);
            }
        }
        let wait = self.wait;
        self.shortfalls.retain(|_, s| now.saturating_duration_since(s.since) < wait);
        for (channel, n) in counts {
            self.stamp += 1;
            if let Some(outage) = &mut self.outage {
                outage.confirmed.insert(channel.clone());
            }
            if *n == 0 {
                self.counts.remove(channel);
            } else {
                self.counts.insert(channel.clone(), (*n, self.stamp));
            }
        }
        if self.counts.len() > self.cap {
            // Forget the least recently published half.
            let mut stamps: Vec<u64> = self.counts.values().map(|(_, s)| *s).collect();
            let (_, median, _) = stamps.select_nth_unstable(self.counts.len() / 2);
            let median = *median;
            self.counts.retain(|_, (_, s)| *s >= median);
        }
        if let Some(outage) = &mut self.outage
            && let Some(backlog) = &mut outage.backlog
        {
            *backlog = backlog.saturating_sub(messages);
            if *backlog == 0 {
                self.outage = None;
            }
        }
        Settled { unconfirmed: short, missed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn counts(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
        pairs.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
    }

    #[test]
    fn remembers_counts_from_each_batch_and_forgets_empty_channels() {
        let mut s = Subscribers::new(100, WAIT);
        assert_eq!(s.to_refresh(["a", "b", "a"]), vec!["a", "b"]);
        assert_eq!(s.sent([("a", 2), ("b", 0), ("a", 2)], &counts(&[("a", 2), ("b", 0)])), 0);
        assert_eq!((s.remembered("a"), s.remembered("b")), (2, 0));
        s.sent([("a", 1)], &counts(&[("a", 0)]));
        assert_eq!(s.remembered("a"), 0);
    }

    #[test]
    fn nothing_remembered_nothing_to_wait_for() {
        let mut s = Subscribers::new(100, WAIT);
        let now = Instant::now();
        s.reconnected(now, WAIT);
        assert!(!s.recovering());
        assert!(s.waiting_for(["a"]).is_empty());
    }

    #[test]
    fn after_a_reconnect_a_batch_waits_until_its_channels_count_as_before() {
        let mut s = Subscribers::new(100, WAIT);
        s.sent([("room", 2), ("req", 2)], &counts(&[("room", 2), ("req", 2)]));
        let now = Instant::now();
        s.reconnected(now, WAIT);
        assert!(s.recovering());
        assert_eq!(s.waiting_for(["room", "new", "room", "req"]), vec!["room", "req"]);
        // The publisher's own subscriber is back, the member's is not yet.
        let asked = counts(&[("room", 1), ("req", 2)]);
        assert_eq!(s.check(now + Duration::from_millis(50), &asked, 3), Check::Again(vec!["room".to_owned()]));
        assert_eq!(s.waiting_for(["room", "req"]), vec!["room"]);
        // Unconfirmed channels keep their count of before; the others are refreshed.
        assert_eq!(s.to_refresh(["room", "req", "new"]), vec!["req", "new"]);
        assert_eq!(s.check(now + Duration::from_millis(100), &counts(&[("room", 2)]), 3), Check::Ready);
        assert!(s.waiting_for(["room", "req"]).is_empty());
        assert_eq!(s.sent([("room", 2), ("req", 2)], &counts(&[("room", 2), ("req", 2)])), 0);
        // More subscribers than before is fine too.
        s.reconnected(now, WAIT);
        assert_eq!(s.check(now, &counts(&[("room", 3), ("req", 2)]), 1), Check::Ready);
    }

    #[test]
    fn the_wait_gives_up_at_the_deadline_and_counts_what_reached_fewer() {
        let mut s = Subscribers::new(100, WAIT);
        s.sent([("room", 2)], &counts(&[("room", 2), ("other", 1)]));
        let now = Instant::now();
        s.reconnected(now, WAIT);
        assert_eq!(s.check(now + WAIT, &counts(&[("room", 1)]), 3), Check::GaveUp(vec!["room".to_owned()]));
        // Past the deadline nothing waits.
        assert!(s.waiting_for(["room", "other"]).is_empty());
        // The 3 messages accepted before the deadline are measured against
        // the count of before, in whatever batches they go out.
        assert_eq!(s.to_refresh(["room"]), Vec::<String>::new());
        assert_eq!(s.sent([("room", 1)], &[]), 1);
        assert_eq!(s.sent([("room", 1), ("room", 2)], &[]), 1);
        assert!(!s.recovering(), "the backlog is out");
        // Then the channel's count is the new normal.
        assert_eq!(s.to_refresh(["room"]), vec!["room"]);
        assert_eq!(s.sent([("room", 1)], &counts(&[("room", 1)])), 0);
        assert_eq!(s.remembered("room"), 1);
    }

    #[test]
    fn a_channel_is_counted_again_at_most_once_per_refresh_period() {
        let mut s = Subscribers::new(100, WAIT);
        let now = Instant::now();
        assert_eq!(s.refresh_due(now, ["a", "b", "a"]), vec!["a", "b"]);
        s.sent([("a", 2)], &counts(&[("a", 2), ("b", 0)]));
        // The next batches of the same second ask nothing.
        assert!(s.refresh_due(now + Duration::from_millis(10), ["a", "b"]).is_empty());
        assert_eq!(s.refresh_due(now + Duration::from_millis(10), ["c", "a"]), vec!["c"]);
        assert_eq!(s.refresh_due(now + REFRESH_EVERY, ["a", "b", "c"]), vec!["a", "b"]);
    }

    #[test]
    fn a_zero_wait_never_holds() {
        let mut s = Subscribers::new(100, WAIT);
        s.sent([("room", 2)], &counts(&[("room", 2)]));
        s.reconnected(Instant::now(), Duration::ZERO);
        assert!(s.waiting_for(["room"]).is_empty());
    }

    #[test]
    fn messages_that_missed_a_resubscribing_node_are_counted_once_it_is_back() {
        let mut s = Subscribers::new(100, WAIT);
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        assert_eq!(s.settle(now, [("room", 2)], &counts(&[("room", 2)])), Settled::default());
        // A node's subscriber is cut: two messages reach one of the two.
        assert_eq!(s.settle(at(10), [("room", 1), ("room", 1)], &[]), Settled::default());
        // The channel is counted again with the next batches, whatever their channels.
        assert_eq!(s.refresh_due(at(200), ["other"]), vec!["other", "room"]);
        assert!(s.refresh_due(at(250), ["other"]).is_empty(), "not on every batch");
        // Still one: the count of before stands for the shortfall.
        let still = s.settle(at(200), [("other", 1), ("room", 1)], &counts(&[("other", 1), ("room", 1)]));
        assert_eq!(still, Settled::default());
        // Back: the three are counted, once.
        assert_eq!(s.settle(at(400), [], &counts(&[("room", 2)])), Settled { unconfirmed: 0, missed: 3 });
        assert_eq!(s.settle(at(500), [("room", 2)], &counts(&[("room", 2)])), Settled::default());
        assert!(s.refresh_due(at(700), ["other"]).iter().all(|c| c != "room"), "no shortfall left");
    }

    #[test]
    fn a_room_that_empties_on_a_node_is_not_a_miss() {
        let mut s = Subscribers::new(100, WAIT);
        let now = Instant::now();
        s.settle(now, [("room", 1)], &counts(&[("room", 1)]));
        // Its last member left: nobody there any more.
        s.settle(now + Duration::from_millis(10), [("room", 0)], &counts(&[("room", 0)]));
        assert_eq!(s.remembered("room"), 0);
        // Past the wait the shortfall is forgotten; a member joining later is no miss.
        let expired = now + Duration::from_millis(10) + WAIT;
        s.settle(expired, [], &[]);
        let later = s.settle(expired + Duration::from_millis(10), [("room", 1)], &counts(&[("room", 1)]));
        assert_eq!(later, Settled::default());
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut s = Subscribers::new(10, WAIT);
        for i in 0..100 {
            let c = format!("c{i}");
            s.sent([(c.as_str(), 1)], &counts(&[(c.as_str(), 1)]));
            assert!(s.counts.len() <= 10);
        }
        assert_eq!(s.remembered("c99"), 1, "the latest are kept");
        assert_eq!(s.remembered("c0"), 0);
    }
}
