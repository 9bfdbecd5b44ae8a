//! Per-event rate limits: the rules ([`RateLimits`]), the state a hub
//! shares ([`RateLimiter`]) and each socket's own cells ([`SocketRates`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Epoch, GcraCell, KeyedLimiter, Limited, Rate};

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
