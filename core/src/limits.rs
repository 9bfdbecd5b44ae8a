//! Rate limits, connection caps and payload limits.
//!
//! # Rate limits
//! Event rates are limited with GCRA (the generic cell rate algorithm), the
//! token bucket expressed as one timestamp per key: the *theoretical arrival
//! time* (TAT) of the next event. A [`Rate`] of `count` per `period` with a
//! `burst` allows `burst` events at once, then one every `period / count`.
//! An event arriving at `now` is allowed when `max(tat, now) + interval - now
//! <= interval * burst`, and then moves the TAT by one interval; otherwise it
//! is refused with the time after which it would be allowed
//! ([`Limited::retry_after`]). A key whose TAT is in the past is equivalent
//! to a fresh one, which is what lets idle keys be swept.
//!
//! A [`GcraCell`] is one atomic word, updated with a compare-and-swap loop:
//! a check never takes a lock, so per-user and per-IP cells shared by many
//! sockets stay cheap under contention. [`KeyedLimiter`] holds cells by key
//! (users, IP addresses) in a sharded map and sweeps idle ones.
//!
//! Time is injected: every check takes `now`, so tests drive a clock by
//! hand. A limiter measures time from its own `epoch`.
//!
//! # Repeated violations
//! Refusals are themselves rate-limited: each socket has a GCRA cell for
//! its violations with a rate of [`RateLimits::max_violations`] per
//! [`RateLimits::violation_window`]; a violation that this cell refuses
//! disconnects the socket. This is a sliding window in 8 bytes.
//!
//! # Connection caps
//! [`ConnectionLimits`] caps concurrent connections per IP address, per
//! user and in total, and handshakes per second per IP address.
//! [`ConnectionCounter`] enforces them and hands out permits that release
//! their slot when dropped (when the connection closes).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
const SWEEP_FLOOR: usize = 1024;

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

/// Per-event rate limits: what a socket, a user and an IP address may send.
///
/// All events of a socket count against [`socket`](Self::socket), of a
/// user (all their sockets on this node) against [`user`](Self::user), of
/// an IP address against [`ip`](Self::ip); an event with its own rule in
/// [`events`](Self::events) also counts against that rule, per socket.
/// The defaults are generous for people and apps, tight for scripts: 100
/// events/s per socket with bursts of 200, 200/s per user (bursts 400),
/// 1,000/s per IP address (bursts 2,000: many users may share one behind a
/// NAT), and 20 violations within 10 s disconnect the socket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RateLimits {
    /// Every event of one socket.
    pub socket: Option<Rate>,
    /// Every event of one user, across their sockets.
    pub user: Option<Rate>,
    /// Every event from one IP address.
    pub ip: Option<Rate>,
    /// Per-socket rules for single events, by event name.
    pub events: Vec<(String, Rate)>,
    /// Violations within [`violation_window`](Self::violation_window) that
    /// disconnect the socket (0: never).
    pub max_violations: u32,
    /// The window over which violations are counted.
    pub violation_window: Duration,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            socket: Some(Rate::per_second(100).burst(200)),
            user: Some(Rate::per_second(200).burst(400)),
            ip: Some(Rate::per_second(1000).burst(2000)),
            events: Vec::new(),
            max_violations: 20,
            violation_window: Duration::from_secs(10),
        }
    }
}

impl RateLimits {
    /// No rate limits at all.
    pub fn none() -> RateLimits {
        RateLimits { socket: None, user: None, ip: None, events: Vec::new(), max_violations: 0, ..Self::default() }
    }

    /// Sets [`socket`](Self::socket).
    pub fn socket(mut self, rate: Option<Rate>) -> Self {
        self.socket = rate;
        self
    }

    /// Sets [`user`](Self::user).
    pub fn user(mut self, rate: Option<Rate>) -> Self {
        self.user = rate;
        self
    }

    /// Sets [`ip`](Self::ip).
    pub fn ip(mut self, rate: Option<Rate>) -> Self {
        self.ip = rate;
        self
    }

    /// Adds (or replaces) the per-socket rule of `event`.
    pub fn event(mut self, event: impl Into<String>, rate: Rate) -> Self {
        let event = event.into();
        self.events.retain(|(e, _)| *e != event);
        self.events.push((event, rate));
        self
    }

    /// Sets [`max_violations`](Self::max_violations) and
    /// [`violation_window`](Self::violation_window).
    pub fn disconnect_after(mut self, violations: u32, window: Duration) -> Self {
        self.max_violations = violations;
        self.violation_window = window;
        self
    }

    /// The index in [`events`](Self::events) of `event`'s rule.
    pub fn event_rule(&self, event: &str) -> Option<usize> {
        self.events.iter().position(|(e, _)| e == event)
    }
}

/// The rate state shared by the sockets of one hub: per-user and per-IP
/// cells, and the rules.
#[derive(Debug)]
pub struct RateLimiter {
    rules: RateLimits,
    /// `max_violations - 1` per window, bursts of as many: the violation
    /// that finds the cell empty is the `max_violations`th (`None` when
    /// every violation, or none, disconnects).
    violations: Option<Rate>,
    epoch: Epoch,
    users: Option<KeyedLimiter<Arc<str>>>,
    ips: Option<KeyedLimiter<IpAddr>>,
}

/// The rate state of one socket: its own cells (no lookup, no sharing).
#[derive(Debug, Default)]
pub struct SocketRates {
    all: GcraCell,
    strikes: GcraCell,
    events: Box<[GcraCell]>,
}

/// The verdict on one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Dispatch it.
    Allow,
    /// Refuse it; the client may retry after the given time.
    Refuse(Limited),
    /// Refuse it and disconnect the socket: too many violations.
    Disconnect(Limited),
}

impl RateLimiter {
    /// A limiter with `rules`, measuring time from `epoch`.
    pub fn new(rules: RateLimits, epoch: Instant) -> RateLimiter {
        let violations = match rules.max_violations {
            0 | 1 => None,
            n => Some(Rate::per(rules.violation_window, n - 1).burst(n - 1)),
        };
        RateLimiter {
            violations,
            users: rules.user.map(|r| KeyedLimiter::new(r, epoch)),
            ips: rules.ip.map(|r| KeyedLimiter::new(r, epoch)),
            epoch: Epoch::new(epoch),
            rules,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &RateLimits {
        &self.rules
    }

    /// Whether any rule is set (when not, the hub skips checks).
    pub fn is_active(&self) -> bool {
        self.rules.socket.is_some() || self.users.is_some() || self.ips.is_some() || !self.rules.events.is_empty()
    }

    /// The per-socket state for a new socket.
    pub fn socket_rates(&self) -> SocketRates {
        SocketRates {
            all: GcraCell::new(),
            strikes: GcraCell::new(),
            events: self.rules.events.iter().map(|_| GcraCell::new()).collect(),
        }
    }

    /// Checks one `event` of a socket (with `rates`), of `user` and from
    /// `ip`, at `now`. The most specific rule is checked first; a refusal
    /// stops there (what earlier rules counted stays counted: a refused
    /// event still cost its sender).
    pub fn check(
        &self,
        rates: &SocketRates,
        event: &str,
        user: Option<&Arc<str>>,
        ip: IpAddr,
        now: Instant,
    ) -> Verdict {
        match self.check_rules(rates, event, user, ip, now) {
            Ok(()) => Verdict::Allow,
            Err(limited) => match (&self.violations, self.rules.max_violations) {
                (_, 0) => Verdict::Refuse(limited),
                (Some(rate), _) if rates.strikes.check(rate, self.epoch.nanos(now)).is_ok() => Verdict::Refuse(limited),
                _ => Verdict::Disconnect(limited),
            },
        }
    }

    fn check_rules(
        &self,
        rates: &SocketRates,
        event: &str,
        user: Option<&Arc<str>>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Limited> {
        let nanos = self.epoch.nanos(now);
        if let Some(i) = self.rules.event_rule(event)
            && let Some(cell) = rates.events.get(i)
        {
            cell.check(&self.rules.events[i].1, nanos)?;
        }
        if let Some(rate) = &self.rules.socket {
            rates.all.check(rate, nanos)?;
        }
        if let (Some(users), Some(user)) = (&self.users, user) {
            users.check(user, now)?;
        }
        if let Some(ips) = &self.ips {
            ips.check(&ip, now)?;
        }
        Ok(())
    }
}

/// Caps on concurrent connections and on handshakes.
///
/// Defaults: 1,000 concurrent connections per IP address (many users may
/// share one address behind a NAT), 20 per user, 100,000 in total, and 50
/// handshakes per second per IP address with bursts of 100. The client's
/// address is the socket's peer unless [`trusted_proxies`] is set.
///
/// [`trusted_proxies`]: Self::trusted_proxies
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Concurrent connections from one IP address.
    pub per_ip: Option<u32>,
    /// Concurrent connections of one user (counted once per connection,
    /// whatever its namespaces).
    pub per_user: Option<u32>,
    /// Concurrent connections in total.
    pub global: Option<u32>,
    /// New connections per IP address.
    pub handshakes_per_ip: Option<Rate>,
    /// How many reverse proxies in front of the server append to
    /// `X-Forwarded-For`: with `n > 0`, the client's address is the `n`th
    /// address from the right of that header. 0 (the default) ignores the
    /// header, which clients can forge.
    pub trusted_proxies: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            per_ip: Some(1000),
            per_user: Some(20),
            global: Some(100_000),
            handshakes_per_ip: Some(Rate::per_second(50).burst(100)),
            trusted_proxies: 0,
        }
    }
}

impl ConnectionLimits {
    /// No caps at all.
    pub fn none() -> ConnectionLimits {
        ConnectionLimits { per_ip: None, per_user: None, global: None, handshakes_per_ip: None, trusted_proxies: 0 }
    }

    /// Sets [`per_ip`](Self::per_ip).
    pub fn per_ip(mut self, n: Option<u32>) -> Self {
        self.per_ip = n;
        self
    }

    /// Sets [`per_user`](Self::per_user).
    pub fn per_user(mut self, n: Option<u32>) -> Self {
        self.per_user = n;
        self
    }

    /// Sets [`global`](Self::global).
    pub fn global(mut self, n: Option<u32>) -> Self {
        self.global = n;
        self
    }

    /// Sets [`handshakes_per_ip`](Self::handshakes_per_ip).
    pub fn handshakes_per_ip(mut self, rate: Option<Rate>) -> Self {
        self.handshakes_per_ip = rate;
        self
    }

    /// Sets [`trusted_proxies`](Self::trusted_proxies).
    pub fn trusted_proxies(mut self, n: usize) -> Self {
        self.trusted_proxies = n;
        self
    }

    /// The client's address: the peer's, or with trusted proxies the
    /// `trusted_proxies`th entry from the right of `x_forwarded_for` (the
    /// leftmost entry when there are fewer; the peer's when none parse).
    pub fn client_ip(&self, peer: IpAddr, x_forwarded_for: Option<&str>) -> IpAddr {
        if self.trusted_proxies == 0 {
            return peer;
        }
        let Some(header) = x_forwarded_for else { return peer };
        let hops: Vec<&str> = header.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let index = hops.len().saturating_sub(self.trusted_proxies);
        hops.get(index).and_then(|h| h.parse().ok()).unwrap_or(peer)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionRefused {
    /// Too many concurrent connections from this IP address.
    #[error("too many connections from this address")]
    PerIp,
    /// Too many concurrent connections of this user.
    #[error("too many connections for this user")]
    PerUser,
    /// The server holds as many connections as it may.
    #[error("server at connection capacity")]
    Global,
    /// Too many new connections from this IP address.
    #[error("too many connection attempts, retry in {} ms", .0.retry_after.as_millis())]
    HandshakeRate(Limited),
}

impl ConnectionRefused {
    /// A machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectionRefused::HandshakeRate(_) => "rate_limited",
            _ => "too_many_connections",
        }
    }

    /// When a retry may succeed, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectionRefused::HandshakeRate(l) => Some(l.retry_after),
            _ => None,
        }
    }
}

/// Counts connections against [`ConnectionLimits`].
#[derive(Debug)]
pub struct ConnectionCounter {
    limits: ConnectionLimits,
    state: Arc<Counts>,
    handshakes: Option<KeyedLimiter<IpAddr>>,
}

#[derive(Debug, Default)]
struct Counts {
    global: AtomicUsize,
    // Entries are removed at zero: the maps hold only addresses and users
    // with live connections.
    ips: Mutex<IpCounts>,
    users: Mutex<HashMap<Arc<str>, u32>>,
}

/// Connections per address, IPv4 keyed by 32 bits so an entry takes 8
/// bytes (a server with many clients holds one entry per address).
#[derive(Debug, Default)]
struct IpCounts {
    v4: HashMap<u32, u32>,
    v6: HashMap<u128, u32>,
}

impl IpCounts {
    /// Counts one more connection of `ip` unless it has `cap` already.
    fn acquire(&mut self, ip: IpAddr, cap: u32) -> bool {
        fn take<K: Eq + Hash>(map: &mut HashMap<K, u32>, key: K, cap: u32) -> bool {
            let n = map.entry(key).or_insert(0);
            if *n >= cap {
                return false;
            }
            *n += 1;
            true
        }
        // A refusal at cap 0 leaves an entry of 0 behind: remove it.
        let taken = match ip {
            IpAddr::V4(a) => take(&mut self.v4, a.to_bits(), cap),
            IpAddr::V6(a) => take(&mut self.v6, a.to_bits(), cap),
        };
        if !taken && self.get(ip) == 0 {
            self.release(ip);
        }
        taken
    }

    fn release(&mut self, ip: IpAddr) {
        fn give<K: Eq + Hash>(map: &mut HashMap<K, u32>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        match ip {
            IpAddr::V4(a) => give(&mut self.v4, &a.to_bits()),
            IpAddr::V6(a) => give(&mut self.v6, &a.to_bits()),
        }
    }

    fn get(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => self.v4.get(&a.to_bits()).copied().unwrap_or(0),
            IpAddr::V6(a) => self.v6.get(&a.to_bits()).copied().unwrap_or(0),
        }
    }
}

/// A connection slot of one IP address; released when dropped.
#[derive(Debug)]
pub struct IpPermit {
    state: Arc<Counts>,
    ip: IpAddr,
    counted_ip: bool,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        self.state.global.fetch_sub(1, Ordering::AcqRel);
        if self.counted_ip {
            self.state.ips.lock().unwrap_or_else(PoisonError::into_inner).release(self.ip);
        }
    }
}

/// A connection slot of one user; released when dropped.
#[derive(Debug)]
pub struct UserPermit {
    state: Arc<Counts>,
    user: Arc<str>,
}

impl UserPermit {
    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        release(&self.state.users, &self.user);
    }
}

fn release<K: Eq + Hash>(map: &Mutex<HashMap<K, u32>>, key: &K) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl ConnectionCounter {
    /// A counter enforcing `limits`, measuring time from `epoch`.
    pub fn new(limits: ConnectionLimits, epoch: Instant) -> ConnectionCounter {
        ConnectionCounter {
            handshakes: limits.handshakes_per_ip.map(|r| KeyedLimiter::new(r, epoch)),
            limits,
            state: Arc::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Takes a connection slot for `ip` at `now`.
    ///
    /// # Errors
    /// [`ConnectionRefused`] when the handshake rate, the address's cap or
    /// the global cap is reached.
    pub fn acquire_ip(&self, ip: IpAddr, now: Instant) -> Result<IpPermit, ConnectionRefused> {
        if let Some(h) = &self.handshakes {
            h.check(&ip, now).map_err(ConnectionRefused::HandshakeRate)?;
        }
        let max = self.limits.global.map_or(usize::MAX, |g| g as usize);
        let taken = self.state.global.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            return Err(ConnectionRefused::Global);
        }
        // From here the permit owns the global slot: dropping it on a
        // refusal gives the slot back.
        let mut permit = IpPermit { state: self.state.clone(), ip, counted_ip: false };
        if let Some(cap) = self.limits.per_ip {
            if !self.state.ips.lock().unwrap_or_else(PoisonError::into_inner).acquire(ip, cap) {
                return Err(ConnectionRefused::PerIp);
            }
            permit.counted_ip = true;
        }
        Ok(permit)
    }

    /// Takes a connection slot for `user`.
    ///
    /// # Errors
    /// [`ConnectionRefused::PerUser`] when the user is at their cap.
    pub fn acquire_user(&self, user: &Arc<str>) -> Result<Option<UserPermit>, ConnectionRefused> {
        let Some(cap) = self.limits.per_user else { return Ok(None) };
        let mut users = self.state.users.lock().unwrap_or_else(PoisonError::into_inner);
        let n = users.entry(user.clone()).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                users.remove(user);
            }
            return Err(ConnectionRefused::PerUser);
        }
        *n += 1;
        Ok(Some(UserPermit { state: self.state.clone(), user: user.clone() }))
    }

    /// Connections counted now.
    pub fn connections(&self) -> usize {
        self.state.global.load(Ordering::Acquire)
    }

    /// Connections counted now for `ip`.
    pub fn connections_of_ip(&self, ip: IpAddr) -> u32 {
        self.state.ips.lock().unwrap_or_else(PoisonError::into_inner).get(ip)
    }

    /// Connections counted now for `user`.
    pub fn connections_of_user(&self, user: &str) -> u32 {
        self.state.users.lock().unwrap_or_else(PoisonError::into_inner).get(user).copied().unwrap_or(0)
    }
}

/// Limits as text, the way configuration files, command lines and the
/// language bindings give them: every field optional (`None` keeps what it
/// is applied to), rates as `COUNT/UNIT[:BURST]` or `off`, caps as numbers
/// (0: no cap). Field names are camelCase in JSON.
///
/// # Examples
/// ```
/// use tidewire::limits::{ConnectionLimits, LimitsSpec, RateLimits};
/// let spec: LimitsSpec = serde_json::from_str(
///     r#"{"rateSocket": "20/s:40", "events": {"chat:message": "10/s:20"}, "maxConnPerIp": 50, "rateIp": "off"}"#,
/// ).unwrap();
/// let (rates, conns) = spec.apply(RateLimits::default(), ConnectionLimits::default()).unwrap();
/// assert_eq!(rates.socket, Some("20/s:40".parse().unwrap()));
/// assert_eq!(rates.ip, None);
/// assert_eq!(conns.per_ip, Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsSpec {
    /// [`RateLimits::socket`].
    pub rate_socket: Option<String>,
    /// [`RateLimits::user`].
    pub rate_user: Option<String>,
    /// [`RateLimits::ip`].
    pub rate_ip: Option<String>,
    /// [`RateLimits::events`], by event name.
    #[serde(default)]
    pub events: std::collections::BTreeMap<String, String>,
    /// [`RateLimits::max_violations`] (within the current window).
    pub max_violations: Option<u32>,
    /// [`ConnectionLimits::per_ip`].
    pub max_conn_per_ip: Option<u32>,
    /// [`ConnectionLimits::per_user`].
    pub max_conn_per_user: Option<u32>,
    /// [`ConnectionLimits::global`].
    pub max_connections: Option<u32>,
    /// [`ConnectionLimits::handshakes_per_ip`].
    pub handshakes_per_ip: Option<String>,
    /// [`ConnectionLimits::trusted_proxies`].
    pub trusted_proxies: Option<usize>,
}

/// `off` (or `0`) or a [`Rate`].
///
/// # Errors
/// [`RateParseError`] for anything else.
pub fn parse_optional_rate(text: &str) -> Result<Option<Rate>, RateParseError> {
    match text.trim() {
        "off" | "0" => Ok(None),
        other => other.parse().map(Some),
    }
}

impl LimitsSpec {
    /// `rates` and `conns` with the fields this spec sets replaced.
    ///
    /// # Errors
    /// A message naming the field whose rate does not parse.
    pub fn apply(
        &self,
        mut rates: RateLimits,
        mut conns: ConnectionLimits,
    ) -> Result<(RateLimits, ConnectionLimits), String> {
        let rate = |field: &str, text: &str| parse_optional_rate(text).map_err(|e| format!("{field}: {e}"));
        if let Some(t) = &self.rate_socket {
            rates = rates.socket(rate("rateSocket", t)?);
        }
        if let Some(t) = &self.rate_user {
            rates = rates.user(rate("rateUser", t)?);
        }
        if let Some(t) = &self.rate_ip {
            rates = rates.ip(rate("rateIp", t)?);
        }
        for (event, t) in &self.events {
            match rate(&format!("events.{event}"), t)? {
                Some(r) => rates = rates.event(event.clone(), r),
                None => rates.events.retain(|(e, _)| e != event),
            }
        }
        if let Some(n) = self.max_violations {
            let window = rates.violation_window;
            rates = rates.disconnect_after(n, window);
        }
        let cap = |n: u32| (n > 0).then_some(n);
        if let Some(n) = self.max_conn_per_ip {
            conns = conns.per_ip(cap(n));
        }
        if let Some(n) = self.max_conn_per_user {
            conns = conns.per_user(cap(n));
        }
        if let Some(n) = self.max_connections {
            conns = conns.global(cap(n));
        }
        if let Some(t) = &self.handshakes_per_ip {
            conns = conns.handshakes_per_ip(rate("handshakesPerIp", t)?);
        }
        if let Some(n) = self.trusted_proxies {
            conns = conns.trusted_proxies(n);
        }
        Ok((rates, conns))
    }
}

/// Checks an event's arguments before its handler sees them.
///
/// Implemented by [`JsonSchema`]; an application may implement it for any
/// other check. Called on the socket's reading path: keep it quick.
pub trait PayloadValidator: Send + Sync + 'static {
    /// Checks `args`, the event's arguments as a JSON array (binary
    /// attachments appear as `{"_placeholder": true, "num": i}`).
    ///
    /// # Errors
    /// A message for the client saying what is wrong.
    fn validate(&self, args: &serde_json::Value) -> Result<(), String>;
}

/// A [`PayloadValidator`] from a JSON Schema (drafts 4 to 2020-12, through
/// the `jsonschema` crate; no remote references are fetched).
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tidewire::limits::{JsonSchema, PayloadValidator};
/// let message = JsonSchema::first_arg(&json!({
///     "type": "object",
///     "properties": { "roomId": { "type": "string" }, "text": { "type": "string", "maxLength": 2000 } },
///     "required": ["roomId", "text"],
/// }))
/// .unwrap();
/// assert!(message.validate(&json!([{ "roomId": "r1", "text": "hi" }])).is_ok());
/// assert!(message.validate(&json!([{ "roomId": "r1" }])).is_err());
/// assert!(message.validate(&json!([])).is_err());
/// ```
pub struct JsonSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema").finish_non_exhaustive()
    }
}

/// A schema that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON schema: {0}")]
pub struct SchemaError(String);

impl JsonSchema {
    /// A validator of the whole arguments array against `schema`.
    ///
    /// # Errors
    /// [`SchemaError`] when `schema` is not a valid schema.
    pub fn args(schema: &serde_json::Value) -> Result<JsonSchema, SchemaError> {
        let validator = jsonschema::validator_for(schema).map_err(|e| SchemaError(e.to_string()))?;
        Ok(JsonSchema { validator })
    }

    /// A validator of events that carry exactly one argument matching
    /// `schema` (the common case: one object per event).
    ///
    /// # Errors
    /// [`SchemaError`] when `schema` is not a valid schema.
    pub fn first_arg(schema: &serde_json::Value) -> Result<JsonSchema, SchemaError> {
        JsonSchema::args(&serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "prefixItems": [schema],
        }))
    }
}

impl PayloadValidator for JsonSchema {
    fn validate(&self, args: &serde_json::Value) -> Result<(), String> {
        self.validator.validate(args).map_err(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() { e.to_string() } else { format!("{path}: {e}") }
        })
    }
}

/// Limits on one event: its size and a validator of its arguments. Set on
/// a namespace with [`Namespace::limit_event`](crate::hub::Namespace::limit_event).
#[derive(Clone, Default)]
pub struct EventRule {
    /// The largest accepted packet, attachments included, in bytes.
    pub max_bytes: Option<usize>,
    /// Checks the arguments.
    pub validator: Option<Arc<dyn PayloadValidator>>,
}

impl std::fmt::Debug for EventRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRule")
            .field("max_bytes", &self.max_bytes)
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

impl EventRule {
    /// No limit yet.
    pub fn new() -> EventRule {
        EventRule::default()
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets the [`validator`](Self::validator).
    pub fn validator(mut self, validator: impl PayloadValidator) -> Self {
        self.validator = Some(Arc::new(validator));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn gcra_allows_burst_then_steady_rate() {
        let rate = Rate::per_second(10).burst(3);
        let cell = GcraCell::new();
        let t0 = 1_000_000_000u64;
        for _ in 0..3 {
            assert!(cell.check(&rate, t0).is_ok());
        }
        let refused = cell.check(&rate, t0).unwrap_err();
        assert_eq!(refused.retry_after, ms(100));
        // A refusal records nothing: one interval later exactly one fits.
        let t1 = t0 + 100_000_000;
        assert!(cell.check(&rate, t1).is_ok());
        assert!(cell.check(&rate, t1).is_err());
        // After a long pause the full burst is available again, not more.
        let t2 = t1 + 10_000_000_000;
        assert!(cell.is_idle(t2));
        for _ in 0..3 {
            assert!(cell.check(&rate, t2).is_ok());
        }
        assert!(cell.check(&rate, t2).is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!("10/s".parse::<Rate>().unwrap(), Rate::per_second(10));
        assert_eq!("10/s:20".parse::<Rate>().unwrap(), Rate::per_second(10).burst(20));
        assert_eq!("600/m:50".parse::<Rate>().unwrap(), Rate::per(Duration::from_secs(60), 600).burst(50));
        for bad in ["", "10", "0/s", "10/s:0", "10/d", "-1/s", "x/s", "10/s:", "99999999999/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gcra_long_run_rate_matches() {
        // 1,000 events offered at 100/s against a 10/s limit: about 10/s
        // pass, plus the burst.
        let rate = Rate::per_second(10).burst(5);
        let cell = GcraCell::new();
        let mut passed = 0;
        for i in 0..1000u64 {
            if cell.check(&rate, 1 + i * 10_000_000).is_ok() {
                passed += 1;
            }
        }
        // 10 s of traffic: 100 steady + the burst of 5, minus one interval.
        assert!((104..=105).contains(&passed), "passed {passed}");
    }

    #[test]
    fn gcra_is_exact_under_contention() {
        let rate = Rate::per(Duration::from_secs(3600), 1000);
        let cell = Arc::new(GcraCell::new());
        let passed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cell, passed) = (cell.clone(), passed.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if cell.check(&rate, 5).is_ok() {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(Ordering::Relaxed), 1000, "exactly the burst passes");
    }

    #[test]
    fn keyed_limiter_separates_keys_and_sweeps_idle_ones() {
        let start = Instant::now();
        let limiter = KeyedLimiter::new(Rate::per_second(1), start);
        assert!(limiter.check(&"a", start).is_ok());
        assert!(limiter.check(&"a", start).is_err());
        assert!(limiter.check(&"b", start).is_ok());
        assert_eq!(limiter.len(), 2);
        limiter.sweep(start + ms(500));
        assert_eq!(limiter.len(), 2, "still within their interval");
        limiter.sweep(start + ms(1000));
        assert!(limiter.is_empty());
        // Growth triggers sweeps: 10k keys, each idle by the time the map doubles.
        for i in 0..10_000u32 {
            let _ = limiter.check(&"x", start);
            let key: &'static str = Box::leak(i.to_string().into_boxed_str());
            let _ = limiter.check(&key, start + Duration::from_secs(u64::from(i) * 2));
        }
        assert!(limiter.len() < 2 * SWEEP_FLOOR, "len {}", limiter.len());
    }

    #[test]
    fn limiter_checks_event_rule_socket_user_ip() {
        let t = Instant::now();
        let rules = RateLimits::none()
            .socket(Some(Rate::per_second(100)))
            .user(Some(Rate::per_second(3)))
            .event("chat", Rate::per_second(1))
            .disconnect_after(3, Duration::from_secs(10));
        let limiter = RateLimiter::new(rules, t);
        let a = limiter.socket_rates();
        let b = limiter.socket_rates();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let alice: Arc<str> = "alice".into();
        assert_eq!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Allow);
        assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Refuse(_)));
        // The per-event rule is per socket; the user rule spans sockets.
        assert_eq!(limiter.check(&b, "chat", Some(&alice), ip, t), Verdict::Allow);
        assert_eq!(limiter.check(&b, "other", Some(&alice), ip, t), Verdict::Allow);
        assert!(matches!(limiter.check(&b, "other", Some(&alice), ip, t), Verdict::Refuse(_)));
        // Anonymous sockets skip the user rule.
        assert_eq!(limiter.check(&b, "other", None, ip, t), Verdict::Allow);
        // The third violation of socket `a` disconnects it.
        assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Refuse(_)));
        assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Disconnect(_)));
    }

    #[test]
    fn violations_disconnect_only_when_dense() {
        let t = Instant::now();
        let rules = RateLimits::none()
            .event("e", Rate::per(Duration::from_secs(3600), 1))
            .disconnect_after(3, Duration::from_secs(10));
        let limiter = RateLimiter::new(rules, t);
        let s = limiter.socket_rates();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limiter.check(&s, "e", None, ip, t), Verdict::Allow);
        // One violation every 6 s: the window never holds three.
        for i in 0..10u64 {
            let at = t + Duration::from_secs(6 * i);
            assert!(matches!(limiter.check(&s, "e", None, ip, at), Verdict::Refuse(_)), "violation {i}");
        }
        // Three within a moment: the third disconnects.
        let later = t + Duration::from_secs(600);
        assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Refuse(_)));
        assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Refuse(_)));
        assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Disconnect(_)));
        // With a limit of one, the first violation disconnects; with none, never.
        let one = RateLimiter::new(
            RateLimits::none().socket(Some(Rate::per_second(1))).disconnect_after(1, Duration::from_secs(1)),
            t,
        );
        let s1 = one.socket_rates();
        assert_eq!(one.check(&s1, "x", None, ip, t), Verdict::Allow);
        assert!(matches!(one.check(&s1, "x", None, ip, t), Verdict::Disconnect(_)));
    }

    #[test]
    fn connection_caps_and_permits() {
        let t = Instant::now();
        let limits = ConnectionLimits::none().per_ip(Some(2)).global(Some(3)).per_user(Some(1));
        let counter = ConnectionCounter::new(limits, t);
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let p1 = counter.acquire_ip(x, t).unwrap();
        let _p2 = counter.acquire_ip(x, t).unwrap();
        assert_eq!(counter.acquire_ip(x, t).unwrap_err(), ConnectionRefused::PerIp);
        assert_eq!(counter.connections(), 2, "a refused attempt holds no slot");
        let p3 = counter.acquire_ip(y, t).unwrap();
        assert_eq!(counter.acquire_ip(y, t).unwrap_err(), ConnectionRefused::Global);
        drop(p1);
        assert_eq!(counter.connections_of_ip(x), 1);
        let _p4 = counter.acquire_ip(x, t).unwrap();
        drop(p3);
        assert_eq!(counter.connections_of_ip(y), 0);
        let bob: Arc<str> = "bob".into();
        let u = counter.acquire_user(&bob).unwrap();
        assert_eq!(counter.acquire_user(&bob).unwrap_err(), ConnectionRefused::PerUser);
        drop(u);
        assert!(counter.acquire_user(&bob).unwrap().is_some());
    }

    #[test]
    fn handshake_rate_per_ip() {
        let t = Instant::now();
        let counter =
            ConnectionCounter::new(ConnectionLimits::none().handshakes_per_ip(Some(Rate::per_second(2).burst(2))), t);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let _a = counter.acquire_ip(ip, t).unwrap();
        let _b = counter.acquire_ip(ip, t).unwrap();
        let refused = counter.acquire_ip(ip, t).unwrap_err();
        assert_eq!(refused.code(), "rate_limited");
        assert_eq!(refused.retry_after(), Some(ms(500)));
        assert!(counter.acquire_ip("192.0.2.10".parse().unwrap(), t).is_ok());
    }

    #[test]
    fn json_schema_reports_where_and_what() {
        let v = JsonSchema::first_arg(&serde_json::json!({
            "type": "object",
            "properties": { "text": { "type": "string", "maxLength": 3 } },
            "required": ["text"],
        }))
        .unwrap();
        assert_eq!(v.validate(&serde_json::json!([{ "text": "abc" }])), Ok(()));
        let err = v.validate(&serde_json::json!([{ "text": "abcd" }])).unwrap_err();
        assert!(err.starts_with("/0/text: "), "{err}");
        assert!(v.validate(&serde_json::json!([{ "text": "a" }, 2])).is_err(), "one argument only");
        assert!(JsonSchema::args(&serde_json::json!({ "type": 12 })).is_err());
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let xff = Some("203.0.113.9, 198.51.100.2");
        assert_eq!(ConnectionLimits::none().client_ip(peer, xff), peer, "untrusted header ignored");
        let one = ConnectionLimits::none().trusted_proxies(1);
        assert_eq!(one.client_ip(peer, xff), "198.51.100.2".parse::<IpAddr>().unwrap());
        let two = ConnectionLimits::none().trusted_proxies(2);
        assert_eq!(two.client_ip(peer, xff), "203.0.113.9".parse::<IpAddr>().unwrap());
        let five = ConnectionLimits::none().trusted_proxies(5);
        assert_eq!(five.client_ip(peer, xff), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(one.client_ip(peer, Some("garbage")), peer);
        assert_eq!(one.client_ip(peer, None), peer);
    }
}
