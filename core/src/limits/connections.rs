//! Connection caps: [`ConnectionLimits`] and the [`ConnectionCounter`] that
//! enforces them with permits released on drop.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Epoch, GcraCell, KeyedLimiter, Limited, Rate};

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
    /// New connections per second in total, from all addresses: bounds
    /// the CPU a flood from many addresses (or a whole fleet reconnecting
    /// at once) takes from established clients. Refused with `503` and a
    /// retry time. Off by default (size it to what the server can open a
    /// second beside its steady load).
    pub handshakes_total: Option<Rate>,
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
            handshakes_total: None,
            trusted_proxies: 0,
        }
    }
}

impl ConnectionLimits {
    /// No caps at all.
    pub fn none() -> ConnectionLimits {
        ConnectionLimits {
            per_ip: None,
            per_user: None,
            global: None,
            handshakes_per_ip: None,
            handshakes_total: None,
            trusted_proxies: 0,
        }
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

    /// Sets [`handshakes_total`](Self::handshakes_total).
    pub fn handshakes_total(mut self, rate: Option<Rate>) -> Self {
        self.handshakes_total = rate;
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
    ///
    /// A request that carries `X-Forwarded-For` while no proxy is trusted
    /// is counted as its peer, and logged (a warning at most once a minute):
    /// behind a proxy every client would share the proxy's address and its
    /// caps.
    pub fn client_ip(&self, peer: IpAddr, x_forwarded_for: Option<&str>) -> IpAddr {
        if self.trusted_proxies == 0 {
            if x_forwarded_for.is_some() {
                warn_untrusted_forwarded(peer);
            }
            return peer;
        }
        let Some(header) = x_forwarded_for else { return peer };
        let hops: Vec<&str> = header.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let index = hops.len().saturating_sub(self.trusted_proxies);
        hops.get(index).and_then(|h| h.parse().ok()).unwrap_or(peer)
    }
}

/// Logs, at most once a minute, that `X-Forwarded-For` arrived while no
/// proxy is trusted.
fn warn_untrusted_forwarded(peer: IpAddr) {
    static NEXT: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let now = std::time::Instant::now();
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if next.is_some_and(|at| now < at) {
        return;
    }
    *next = Some(now + std::time::Duration::from_secs(60));
    drop(next);
    tracing::warn!(
        %peer,
        "requests carry X-Forwarded-For but no proxy is trusted: every client behind the proxy is counted as the \
         proxy's address by the per-IP limits; set the trusted proxy hops (ConnectionLimits::trusted_proxies, \
         --trusted-proxies / TIDEWIRE_TRUSTED_PROXIES) to the number of proxies in front of the server"
    );
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
    /// Too many new connections in total (from all addresses).
    #[error("server busy opening connections, retry in {} ms", .0.retry_after.as_millis())]
    HandshakeRateTotal(Limited),
}

impl ConnectionRefused {
    /// A machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectionRefused::HandshakeRate(_) => "rate_limited",
            ConnectionRefused::HandshakeRateTotal(_) => "server_busy",
            _ => "too_many_connections",
        }
    }

    /// When a retry may succeed, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectionRefused::HandshakeRate(l) | ConnectionRefused::HandshakeRateTotal(l) => Some(l.retry_after),
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
    handshakes_total: Option<(Rate, GcraCell, Epoch)>,
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
            handshakes_total: limits.handshakes_total.map(|r| (r, GcraCell::new(), Epoch::new(epoch))),
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
        // After the address's own rate: one address's flood is refused as
        // such and takes nothing from the others' share.
        if let Some((rate, cell, epoch)) = &self.handshakes_total {
            cell.check(rate, epoch.nanos(now)).map_err(ConnectionRefused::HandshakeRateTotal)?;
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
