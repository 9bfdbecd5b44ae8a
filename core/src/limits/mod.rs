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

mod connections;
mod gcra;
mod rates;
mod rules;
mod spec;

pub use connections::{ConnectionCounter, ConnectionLimits, ConnectionRefused, IpPermit, UserPermit};
pub use gcra::{Epoch, GcraCell, KeyedLimiter, Limited, Rate, RateParseError};
pub use rates::{RateLimiter, RateLimits, SocketRates, Verdict};
pub use rules::{EventRule, JsonSchema, PayloadValidator, SchemaError};
pub use spec::{LimitsSpec, parse_optional_rate};

#[cfg(test)]
mod tests;
