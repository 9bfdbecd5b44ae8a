//! GCRA: [`Rate`], the atomic [`GcraCell`], its clock origin [`Epoch`], and
//! cells by key in a [`KeyedLimiter`].

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A rate: `count` events per `period`, with bursts of up to `burst`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tidewire::limits::Rate;
/// let chat = Rate::per_second(10).burst(20);
/// assert_eq!(chat.interval(), Duration::from_millis(100));
/// let logins = Rate::per(Duration::from_secs(60), 5);
/// assert_eq!(logins.interval(), Duration::from_secs(12));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events per period (at least 1).
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// How many events may arrive at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `count` events per second, bursts of `count`.
    pub fn per_second(count: u32) -> Rate {
        Rate::per(Duration::from_secs(1), count)
    }

    /// `count` events per `period`, bursts of `count`.
    pub fn per(period: Duration, count: u32) -> Rate {
        let count = count.max(1);
        Rate { count, period, burst: count }
    }

    /// Sets [`burst`](Self::burst).
    pub fn burst(mut self, burst: u32) -> Rate {
        self.burst = burst.max(1);
        self
    }

    /// The steady-state time between two events.
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }

    fn interval_nanos(&self) -> u64 {
        u64::try_from(self.interval().as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn limit_nanos(&self) -> u64 {
        self.interval_nanos().saturating_mul(u64::from(self.burst.max(1)))
    }
}

/// A [`Rate`] that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {0:?}: expected COUNT/UNIT[:BURST] with UNIT s, m or h (e.g. 10/s:20)")]
pub struct RateParseError(String);

impl std::str::FromStr for Rate {
    type Err = RateParseError;

    /// Parses `COUNT/UNIT[:BURST]`: `10/s`, `10/s:20`, `600/m:50`, `5/h`.
    fn from_str(s: &str) -> Result<Rate, RateParseError> {
        let err = || RateParseError(s.to_owned());
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b.trim().parse::<u32>().map_err(|_| err())?)),
            None => (s, None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(err()),
        };
        if count == 0 || burst == Some(0) {
            return Err(err());
        }
        let rate = Rate::per(period, count);
        Ok(burst.map_or(rate, |b| rate.burst(b)))
    }
}

/// A refused event: how long until the same event would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The time after which a retry would be allowed.
    pub retry_after: Duration,
}

/// The GCRA state of one key: its theoretical arrival time, in nanoseconds
/// since the owning limiter's epoch (0: never used).
#[derive(Debug, Default)]
pub struct GcraCell(AtomicU64);

impl GcraCell {
    /// A fresh cell.
    pub fn new() -> GcraCell {
        GcraCell::default()
    }

    /// Checks one event against `rate` at `now` (nanoseconds since the
    /// epoch the caller measures from) and, when allowed, records it.
    ///
    /// # Errors
    /// [`Limited`] when the event exceeds the rate; nothing is recorded.
    pub fn check(&self, rate: &Rate, now: u64) -> Result<(), Limited> {
        let interval = rate.interval_nanos();
        let limit = rate.limit_nanos();
        let mut tat = self.0.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(interval);
            let ahead = next - now;
            if ahead > limit {
                return Err(Limited { retry_after: Duration::from_nanos(ahead - limit) });
            }
            match self.0.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Whether the cell's state has expired at `now` (it then behaves like
    /// a fresh cell, so it can be dropped).
    pub fn is_idle(&self, now: u64) -> bool {
        self.0.load(Ordering::Acquire) <= now
    }
}

/// A clock origin: converts [`Instant`]s to the nanosecond counts cells use.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch at `start`. Instants before it count as the epoch itself.
    pub fn new(start: Instant) -> Epoch {
        Epoch(start)
    }

    /// `now` in nanoseconds since the epoch, plus one (so that a used cell
    /// is never mistaken for a fresh one at the epoch itself).
    pub fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// GCRA cells by key (users, IP addresses), in a sharded map. Idle cells
/// are swept as the map grows, so it holds only keys active within one
/// burst's worth of time.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use tidewire::limits::{KeyedLimiter, Rate};
/// let start = Instant::now();
/// let per_ip = KeyedLimiter::new(Rate::per_second(2), start);
/// let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
/// assert!(per_ip.check(&ip, start).is_ok());
/// assert!(per_ip.check(&ip, start).is_ok());
/// let refused = per_ip.check(&ip, start).unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_millis(500));
/// assert!(per_ip.check(&ip, start + Duration::from_millis(500)).is_ok());
/// ```
#[derive(Debug)]
pub struct KeyedLimiter<K: Eq + Hash> {
    rate: Rate,
    epoch: Epoch,
    cells: DashMap<K, GcraCell>,
    /// The map's size after the last sweep: the next sweep runs once it
    /// has doubled (amortised O(1) per new key).
    swept_at: AtomicUsize,
}

/// Below this many keys a limiter never sweeps.
pub(super) const SWEEP_FLOOR: usize = 1024;

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// A limiter applying `rate` to each key, measuring time from `epoch`.
    pub fn new(rate: Rate, epoch: Instant) -> KeyedLimiter<K> {
        KeyedLimiter { rate, epoch: Epoch::new(epoch), cells: DashMap::new(), swept_at: AtomicUsize::new(0) }
    }

    /// The rate applied.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Checks one event of `key` at `now`.
    ///
    /// # Errors
    /// [`Limited`] when `key` is over its rate.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let now = self.epoch.nanos(now);
        if let Some(cell) = self.cells.get(key) {
            return cell.check(&self.rate, now);
        }
        let result = self.cells.entry(key.clone()).or_default().check(&self.rate, now);
        let len = self.cells.len();
        if len >= SWEEP_FLOOR && len >= 2 * self.swept_at.load(Ordering::Relaxed) {
            self.sweep_nanos(now);
        }
        result
    }

    /// Drops the cells that are idle at `now`.
    pub fn sweep(&self, now: Instant) {
        self.sweep_nanos(self.epoch.nanos(now));
    }

    fn sweep_nanos(&self, now: u64) {
        self.cells.retain(|_, cell| !cell.is_idle(now));
        // Give back the capacity a burst of keys left behind.
        self.cells.shrink_to_fit();
        self.swept_at.store(self.cells.len(), Ordering::Relaxed);
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}
